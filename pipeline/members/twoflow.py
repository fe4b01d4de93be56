"""Two-Flow base model: random projections of raw pixels + CNN embeddings -> random forests.

DESIGN "Beyond the seeds" (seed 001): flow 1 is a random projection of downsampled raw
pixels (colour and layout, which a CNN trained for a few epochs may still miss), flow 2 the
pooled embedding of a trained backbone (shape and texture). The two are concatenated, the
``top_features`` most important by random-forest impurity are kept (most projected pixel
dimensions are noise for any one label, and a forest on fewer, better features is both
faster and stronger), and one random forest per label gives the probabilities.

Why it is a *base model* and not a stacker: for CNN fold k it uses only that fold's
checkpoint (which never saw fold k) and fits only on rows outside fold k, so its fold-k
predictions are honest out-of-fold predictions. :func:`run_twoflow_fold` writes them in the
CNN prediction-file format (one "epoch"), so selection and stacking take it like any other
backbone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from tqdm import tqdm

from pipeline.metrics import check_labels
from pipeline.models.inference import downsample_pixels

if TYPE_CHECKING:
    from pipeline.data.image_cache import ImageCache

log = logging.getLogger(__name__)


class TwoFlowModel(BaseEstimator):
    """Random projection of pixels + deep features -> RF feature selection -> per-label RF.

    scikit-learn conventions: ``__init__`` only stores parameters (so ``get_params``,
    ``set_params`` and ``clone`` work); ``fit`` returns ``self``; learned state ends in ``_``.
    ``fit`` takes two feature blocks instead of one ``X`` because the pixel block is
    projected and the deep block is not.

    Args:
        n_components: random-projection dimensions of the pixel flow (capped at the pixel
            count).
        pixel_size: side of the pixel thumbnail (pixel_size x pixel_size x 3 values).
        n_trees: trees per label forest.
        top_features: features kept by importance (all when there are fewer).
        selector_trees: trees of the selection forest.
        projection: ``"gaussian"`` or ``"sparse"`` random projection.
        n_jobs: forests' worker threads (1 keeps Make ``-j`` jobs from oversubscribing).
        seed: seeds the projection and every forest, so a refit gives the same model.

    Attributes:
        projection_: the fitted random projection.
        n_deep_: width of the deep block seen in ``fit`` (0 without one).
        importances_: (n_components + n_deep_,) impurity importances of the selection forest.
        selected_: sorted indices of the kept features.
        forests_: per label, a fitted ``RandomForestClassifier`` or ``None`` (one class).
        constant_: (L,) the prevalence predicted for labels with ``None`` forests (NaN else).
        n_labels_: L.
    """

    def __init__(
        self,
        n_components: int = 256,
        pixel_size: int = 16,
        n_trees: int = 200,
        top_features: int = 200,
        selector_trees: int = 100,
        projection: str = "gaussian",
        n_jobs: int = 1,
        seed: int = 0,
    ) -> None:
        self.n_components = n_components
        self.pixel_size = pixel_size
        self.n_trees = n_trees
        self.top_features = top_features
        self.selector_trees = selector_trees
        self.projection = projection
        self.n_jobs = n_jobs
        self.seed = seed

    def _features(self, X_pixels, X_deep) -> np.ndarray:
        pixels = downsample_pixels(X_pixels, self.pixel_size)
        flow1 = self.projection_.transform(pixels).astype(np.float32)
        if X_deep is None:
            if self.n_deep_:
                raise ValueError(f"the model was fit with {self.n_deep_} deep features; pass them")
            return flow1
        deep = np.asarray(X_deep, dtype=np.float32)
        if deep.ndim != 2 or len(deep) != len(flow1):
            raise ValueError(
                f"X_deep must be (n, D) with n = {len(flow1)} (the pixel rows), got {deep.shape}"
            )
        if deep.shape[1] != self.n_deep_:
            raise ValueError(
                f"X_deep has {deep.shape[1]} columns, the model was fit with {self.n_deep_}"
            )
        if not np.isfinite(deep).all():
            raise ValueError("X_deep holds NaN/inf; re-embed the images")
        return np.concatenate([flow1, deep], axis=1)

    def fit(self, X_pixels, X_deep: np.ndarray | None, y: np.ndarray) -> TwoFlowModel:
        """Fit on pixels (paths, images or flat thumbnails), deep features (n, D) and y (n, L).

        ``y`` holds 1, 0 or NaN (unknown): a NaN cell drops that row from that label's
        forest only, and counts as "no information" in the feature selection.
        """
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
        from sklearn.random_projection import (
            GaussianRandomProjection,
            SparseRandomProjection,
        )

        if self.projection not in ("gaussian", "sparse"):
            raise ValueError(f"projection must be 'gaussian' or 'sparse', got {self.projection!r}")
        if min(self.n_components, self.n_trees, self.top_features, self.selector_trees) < 1:
            raise ValueError("n_components, n_trees, top_features and selector_trees must be >= 1")
        y = check_labels(y)
        pixels = downsample_pixels(X_pixels, self.pixel_size)
        if len(pixels) != len(y):
            raise ValueError(f"{len(pixels)} pixel rows but {len(y)} label rows")
        n_comp = min(self.n_components, pixels.shape[1])
        proj_cls = (
            GaussianRandomProjection if self.projection == "gaussian" else SparseRandomProjection
        )
        self.projection_ = proj_cls(n_components=n_comp, random_state=self.seed).fit(pixels)
        self.n_deep_ = 0 if X_deep is None else int(np.asarray(X_deep).shape[1])
        features = self._features(pixels, X_deep)
        n_labels = y.shape[1]
        known = ~np.isnan(y)

        # Selection: one multi-output regression forest on standardised labels, so every
        # label weighs the same in the importances however rare it is (raw 0/1 targets would
        # let common labels pick all the features); an unknown cell becomes 0 = the mean,
        # which adds no impurity. MSE on 0/1 targets is Gini impurity up to a factor.
        mean = np.array(
            [y[known[:, j], j].mean() if known[:, j].any() else 0.0 for j in range(n_labels)]
        )
        std = np.array(
            [y[known[:, j], j].std() if known[:, j].any() else 0.0 for j in range(n_labels)]
        )
        z = np.where(known, (np.nan_to_num(y) - mean) / np.where(std > 0, std, 1.0), 0.0)
        n_features = features.shape[1]
        if self.top_features >= n_features or not (std > 0).any():
            self.importances_ = np.full(n_features, 1.0 / n_features)
            self.selected_ = np.arange(n_features)
        else:
            selector = RandomForestRegressor(
                n_estimators=self.selector_trees,
                max_features="sqrt",
                min_samples_leaf=2,
                random_state=self.seed,
                n_jobs=self.n_jobs,
            ).fit(features, z[:, std > 0])
            self.importances_ = selector.feature_importances_
            order = np.argsort(-self.importances_, kind="stable")
            self.selected_ = np.sort(order[: self.top_features])
        kept = features[:, self.selected_]
        n_pixel_kept = int((self.selected_ < n_comp).sum())
        log.info(
            "two-flow: %d rows, %d features (%d pixel projections + %d deep) -> kept %d "
            "(%d pixel, %d deep)",
            len(kept),
            n_features,
            n_comp,
            self.n_deep_,
            len(self.selected_),
            n_pixel_kept,
            len(self.selected_) - n_pixel_kept,
        )

        self.forests_: list[Any] = []
        self._packed_forests = None  # see _packed
        self.constant_ = np.full(n_labels, np.nan)
        for j in tqdm(range(n_labels), desc="two-flow forests", unit="label", leave=False):
            rows = known[:, j]
            yj = y[rows, j].astype(np.int64)
            if len(np.unique(yj)) < 2:
                self.constant_[j] = float(yj.mean()) if len(yj) else 0.0
                self.forests_.append(None)
                log.warning(
                    "two-flow: label %d has one class in its %d known rows; it predicts %.1f",
                    j,
                    len(yj),
                    self.constant_[j],
                )
                continue
            forest = RandomForestClassifier(
                n_estimators=self.n_trees,
                random_state=self.seed + 1 + j,
                n_jobs=self.n_jobs,
            )
            self.forests_.append(forest.fit(kept[rows], yj))
        self.n_labels_ = n_labels
        return self

    def predict_proba(self, X_pixels, X_deep: np.ndarray | None = None) -> np.ndarray:
        """Per-label positive probabilities (n, L) float32."""
        check_is_fitted(self, "forests_")
        kept = self._features(X_pixels, X_deep)[:, self.selected_]
        out = np.empty((len(kept), self.n_labels_), dtype=np.float32)
        fitted = [j for j, forest in enumerate(self.forests_) if forest is not None]
        for j in set(range(self.n_labels_)) - set(fitted):
            out[:, j] = self.constant_[j]
        if fitted:
            out[:, fitted] = self._packed().predict_positive(kept)
        return out

    def _packed(self):
        """The label forests as one ``ForestArrays`` (made once; equal to scikit-learn's
        ``predict_proba`` bit for bit, without its per-tree overhead)."""
        from pipeline.runtime.forest_arrays import ForestArrays

        if getattr(self, "_packed_forests", None) is None:
            self._packed_forests = ForestArrays([f for f in self.forests_ if f is not None])
        return self._packed_forests

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_packed_forests", None)  # derived from forests_: not saved
        return state


def save_model_atomic(model: TwoFlowModel, path: str | Path) -> None:
    """joblib-dump a fitted model (compressed) to a temp file, then rename onto ``path``."""
    import joblib

    from pipeline.artifacts import write_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: joblib.dump(model, tmp, compress=3))


def load_model(path: str | Path) -> TwoFlowModel:
    """A model saved by :func:`save_model_atomic` (only load files this pipeline wrote)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `make twoflow` first")
    return joblib.load(path)


def person_product_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy of a worn-by-a-person (1) vs product-only (0) decision, unknown cells ignored.

    Why accuracy and not F-beta: the person label is balanced-ish and a routing decision
    (which model to apply) costs the same for both kinds of error.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape[0]} values, y_pred {y_pred.shape[0]}")
    known = ~np.isnan(y_true)
    if not known.any():
        raise ValueError("y_true has no known value: accuracy is undefined")
    if not np.isin(y_pred[known], (0, 1)).all():
        raise ValueError("y_pred must be binary 0/1; threshold probabilities first")
    return float(np.mean(y_true[known] == y_pred[known]))


def run_twoflow_fold(
    cfg,
    backbone: str,
    fold: int,
    folds_csv: str | Path,
    embedding: str | Path,
    out_path: str | Path,
    model: TwoFlowModel | None = None,
    model_out: str | Path | None = None,
    cache: ImageCache | None = None,
) -> dict[str, Any]:
    """Fit the Two-Flow model for one CNN fold; write its OOF + test predictions file.

    The deep flow is fold ``fold``'s own final checkpoint's embeddings, read from
    ``embedding`` (`make embed-cnn`, ``pipeline.models.cnn_embed``); that checkpoint was trained
    without fold ``fold``'s rows, and the forests are fit on rows outside fold ``fold``
    only: the fold-``fold`` predictions are out of fold, like a CNN's.

    Output ``out_path`` (.npz, the CNN format of ``pipeline.train.fold.train_fold``):
    ``labels``, ``val_ids``, ``test_ids``, ``epochs`` = [1], ``oof`` (1, n_val, L),
    ``test`` (1, n_test, L), ``loss`` = [nan]; written atomically. With ``model_out``, the
    fitted model is also saved there (joblib) so ``pipeline.predict`` can score new images.
    Pixels are read from ``cache``, the decode cache, when given.

    Returns:
        ``fit_paths`` / ``val_paths`` / ``val_ids`` (the images fit on and predicted),
        ``checkpoint`` (the embeddings' source) and the fitted ``model``, so callers (and
        the leakage test) can check what was trained on what.
    """
    from pipeline.artifacts import save_single_epoch_predictions
    from pipeline.models.cnn_embed import fold_features

    rows, deep, ckpt = fold_features(cfg, backbone, fold, folds_csv, embedding)
    if model is None:
        model = TwoFlowModel(seed=cfg.train.fold_seed(fold))
    pixels = {
        part: downsample_pixels(rows.paths(part), model.pixel_size, cache)
        for part in ("fit", "val", "test")
    }
    model.fit(pixels["fit"], deep["fit"], rows.fit_y)
    oof = model.predict_proba(pixels["val"], deep["val"])
    test = model.predict_proba(pixels["test"], deep["test"])
    save_single_epoch_predictions(out_path, rows.labels, rows.val_ids, rows.test_ids, oof, test)
    if model_out is not None:
        save_model_atomic(model, model_out)
    log.info("two-flow %s fold %d: wrote %s", backbone, fold, out_path)
    return {
        "fit_paths": [str(p) for p in rows.fit_paths],
        "val_paths": [str(p) for p in rows.val_paths],
        "val_ids": np.asarray(rows.val_ids).astype(str),
        "checkpoint": ckpt,
        "model": model,
    }
