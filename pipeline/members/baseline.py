"""The scikit-learn baseline: per-label logistic regression on one backbone's embeddings.

What a careful user without this pipeline would do: take a trained CNN's pooled features
and fit a linear model per label. It follows the Two-Flow protocol, so it is out of fold
too: fold k's regressions are fit on fold k's own checkpoint embeddings of the rows
outside fold k, and score fold k's rows and the test set. Unknown label cells (NaN) are
left out of that label's fit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

log = logging.getLogger(__name__)

NAME = "sklearn_lr"


class PerLabelLogistic(ClassifierMixin, BaseEstimator):
    """Standardise, then one ``LogisticRegression(class_weight="balanced")`` per label.

    A label with one class among its known training rows predicts that class's rate.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> PerLabelLogistic:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.models_ = []
        for j in range(y.shape[1]):
            known = ~np.isnan(y[:, j])
            yj = y[known, j].astype(int)
            if len(np.unique(yj)) < 2:
                self.models_.append(float(yj.mean()) if len(yj) else 0.0)
                continue
            m = make_pipeline(
                StandardScaler(),
                LogisticRegression(C=self.C, class_weight="balanced", max_iter=self.max_iter),
            )
            self.models_.append(m.fit(X[known], yj))
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, L) positive-class probabilities."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty((len(X), len(self.models_)))
        for j, m in enumerate(self.models_):
            out[:, j] = m if isinstance(m, float) else m.predict_proba(X)[:, 1]
        return out


def run_baseline_fold(
    cfg,
    backbone: str,
    fold: int,
    folds_csv: str | Path,
    embedding: str | Path,
    out_path: str | Path,
    C: float = 1.0,
) -> None:
    """Fit fold ``fold``'s regressions on the other folds' rows of ``embedding`` (fold
    ``fold``'s checkpoint embeddings, `make embed-cnn`); write OOF + test predictions (the
    CNN file format)."""
    from pipeline.artifacts import save_single_epoch_predictions
    from pipeline.models.cnn_embed import fold_features

    rows, deep, _ = fold_features(cfg, backbone, fold, folds_csv, embedding)
    model = PerLabelLogistic(C=C).fit(deep["fit"], rows.fit_y)
    oof, test = model.predict_proba(deep["val"]), model.predict_proba(deep["test"])
    save_single_epoch_predictions(out_path, rows.labels, rows.val_ids, rows.test_ids, oof, test)
    log.info("%s on %s fold %d: wrote %s", NAME, backbone, fold, Path(out_path))
