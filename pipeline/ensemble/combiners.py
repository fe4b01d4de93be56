"""Second-level combiners: scikit-learn estimators over the base models' OOF columns.

Every combiner takes the same input, a cube ``P`` of base probabilities (n, C, L) — C
columns (one per (member, epoch)), L labels — and ``y`` (n, L) with 1/0/NaN, and learns one
way to turn label j's columns into one probability per image:

- :class:`MeanCombiner` — the plain mean: of the top-N selected columns (``pool="selected"``,
  DESIGN step 5's selection) or of every member's best epoch (``pool="members"``).
- :class:`CaruanaCombiner` — greedy ensemble selection with replacement and bagging
  (Caruana et al. 2004; AutoGluon's WeightedEnsemble): integer weights per label that sum
  to 1.
- :class:`LogisticCombiner` — per-label L2 logistic regression on the logits of the
  selected columns, of the label itself (``scope="own"``) or of every label (``"all"``, as
  Planet's first ridge level).
- :class:`XGBCombiner` — the per-label XGBoost stacker of ``pipeline.ensemble.stack``.

Leakage rule: the column selection uses labels, so it is redone inside every ``fit`` on the
rows that fit sees — a nested CV over these estimators never lets a row's own label choose
the columns that predict it. Each combiner also keeps ``oof_`` (n, L): predictions of its
fit rows by models that did not see them (an inner K-fold), for fitting thresholds. The
XGBoost stacker's ``oof_`` comes from its own CV (its column selection is on all fit rows).

State is plain arrays (``get_state`` / ``from_state``; XGBoost: its JSON models), so a
fitted second level is saved without pickles and read back by the predictor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from pipeline.ensemble.select import Column, select_columns
from pipeline.metrics import check_labels, fbeta_from_counts, threshold_counts_unchecked
from pipeline.runtime.ops import (
    logistic_combiner_proba,
    logit,
    weighted_mean_proba,
)


def check_cube(P: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """``P`` as float64 (n, C, L), matching ``y`` (n, L) when given."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 3:
        raise ValueError(f"base predictions must be an (n, C, L) cube, got shape {P.shape}")
    if y is not None and (P.shape[0] != y.shape[0] or P.shape[2] != y.shape[1]):
        raise ValueError(f"base predictions {P.shape} do not match labels {y.shape}")
    if not np.isfinite(P).all():
        raise ValueError("base predictions hold NaN/inf; re-run the member that wrote them")
    return P


def row_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold of every row: multi-label iterative stratification (unknown cells as 0).

    Why stratified: a rare label's few positives must spread over the folds, or a fold
    scores on none and its threshold is fitted on none.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y = check_labels(y)
    if y.shape[0] < 2 * n_folds:
        raise ValueError(f"{y.shape[0]} rows are too few for {n_folds}-fold CV")
    folds = np.empty(y.shape[0], dtype=np.int64)
    cv = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, valid) in enumerate(cv.split(np.zeros(len(y)), np.nan_to_num(y))):
        folds[valid] = k
    return folds


class Combiner(BaseEstimator):
    """Common part: per-label column selection in ``fit``, inner-CV ``oof_``, the state.

    Args (shared by every combiner):
        columns: (member, epoch) of the C columns (needed for "one epoch per member").
        top_n, corr_threshold: the selection rule of ``pipeline.ensemble.select.select_columns``.
        beta, step: F-beta and threshold grid used to rank columns (and by Caruana).
        inner_folds: K of the inner CV that gives ``oof_``; 0 skips it (``oof_`` = None).
        seed: seeds the inner folds (and bagging).

    Attributes:
        selection_: the ``Selection`` made on the fit rows.
        oof_: (n, L) inner-CV predictions of the fit rows, or None.
        used_columns_: sorted column indices the fitted model reads.
    """

    kind = "base"

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, P: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, P: np.ndarray, y: np.ndarray) -> Combiner:
        P, y = self._select(P, y)
        self._fit(P, y)
        return self._finish(P, y)

    def _select(self, P: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Check the inputs and select the columns on these rows (the first part of fit)."""
        y = check_labels(y)
        P = check_cube(P, y)
        if len(self.columns) != P.shape[1]:
            raise ValueError(f"{len(self.columns)} column names for {P.shape[1]} columns")
        self.selection_ = select_columns(
            P, y, self.columns, self.beta, self.top_n, self.corr_threshold, self.step
        )
        return P, y

    def _finish(self, P: np.ndarray, y: np.ndarray) -> Combiner:
        """The fitted model's shapes and inner-CV ``oof_`` (the last part of fit)."""
        self.n_labels_ = y.shape[1]
        self.n_columns_ = P.shape[1]
        self.oof_ = self._inner_oof(P, y) if self.inner_folds else None
        return self

    def _inner_oof(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        folds = row_folds(y, self.inner_folds, self.seed)
        oof = np.empty(y.shape)
        inner = clone(self).set_params(inner_folds=0)
        for k in range(self.inner_folds):
            valid = folds == k
            oof[valid] = inner.fit(P[~valid], y[~valid]).predict_proba(P[valid])
        return oof

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        """(n, L) probabilities of the positive class."""
        P = check_cube(P)
        if P.shape[1:] != (self.n_columns_, self.n_labels_):
            raise ValueError(
                f"base predictions have {P.shape[1:]} (columns, labels), the combiner was fit "
                f"on {(self.n_columns_, self.n_labels_)}"
            )
        return np.clip(self._predict(P), 0.0, 1.0)

    def _best_epoch_per_member(self, j: int) -> np.ndarray:
        """Label j's best column (by selection score) of every member, in column order."""
        scores = self.selection_.scores[:, j]
        best: dict[str, int] = {}
        for c, (member, _) in enumerate(self.selection_.columns):
            if member not in best or scores[c] > scores[best[member]]:
                best[member] = c
        return np.array(sorted(best.values()), dtype=np.int64)


class _WeightedMean(Combiner):
    """A per-label weighted mean of columns: ``weights_`` (L, C), each row summing to 1."""

    def _predict(self, P: np.ndarray) -> np.ndarray:
        return weighted_mean_proba(self.weights_, P)

    @property
    def used_columns_(self) -> np.ndarray:
        return np.flatnonzero(self.weights_.any(axis=0))

    def get_state(self) -> dict[str, Any]:
        return {"weights": self.weights_.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)


class MeanCombiner(_WeightedMean):
    """The mean of label j's selected columns (``pool="selected"``: top-N mean) or of every
    member's best epoch for label j (``pool="members"``: the plain member average)."""

    kind = "mean"

    def __init__(
        self,
        columns: Sequence[Column] = (),
        pool: str = "selected",
        top_n: int = 6,
        corr_threshold: float = 0.9,
        beta: float = 2.0,
        step: float = 0.01,
        inner_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.columns = columns
        self.pool = pool
        self.top_n = top_n
        self.corr_threshold = corr_threshold
        self.beta = beta
        self.step = step
        self.inner_folds = inner_folds
        self.seed = seed

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        if self.pool not in ("selected", "members"):
            raise ValueError(f"pool must be 'selected' or 'members', got {self.pool!r}")
        self.weights_ = np.zeros((y.shape[1], P.shape[1]))
        for j in range(y.shape[1]):
            cols = (
                self.selection_.indices[j]
                if self.pool == "selected"
                else self._best_epoch_per_member(j)
            )
            self.weights_[j, cols] = 1.0 / len(cols)


def ensemble_selection(
    p: np.ndarray,
    y: np.ndarray,
    size: int = 25,
    beta: float = 2.0,
    step: float = 0.01,
) -> np.ndarray:
    """Caruana et al. (2004) greedy forward selection with replacement, for one label.

    Starts from the best single column, then ``size - 1`` times adds (again, possibly) the
    column whose addition gives the best F-beta at its best threshold; ties go to the
    lower column index. Returns (C,) weights = pick counts / size (they sum to 1).

    Args:
        p: (m, C) the label's column probabilities on rows with a known label.
        y: (m,) 0/1 labels.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_cols = p.shape[1]
    counts = np.zeros(n_cols, dtype=np.int64)
    total = np.zeros(len(y))
    y_rep = check_labels(np.repeat(y[:, None], n_cols, axis=1))
    for step_i in range(size):
        # every candidate addition scored in one vectorised threshold pass (inputs checked
        # once above: a mean of probabilities is one)
        cand = (total[:, None] + p) / (step_i + 1)
        curves = fbeta_from_counts(
            *threshold_counts_unchecked(y_rep, np.clip(cand, 0.0, 1.0), step), beta
        )
        best_c = int(np.argmax(curves.max(axis=0) + 1e-12 * -np.arange(n_cols)))
        counts[best_c] += 1
        total += p[:, best_c]
    return counts / size


class CaruanaCombiner(_WeightedMean):
    """Greedy ensemble selection with replacement (``ensemble_size`` picks) per label over
    every member's best epoch, bagged: ``n_bags`` runs, each over a random ``bag_fraction``
    of those columns, averaged (Caruana 2004, section 5: bagging keeps the greedy search
    from over-fitting the hill-climbing rows)."""

    kind = "caruana"

    def __init__(
        self,
        columns: Sequence[Column] = (),
        ensemble_size: int = 25,
        n_bags: int = 10,
        bag_fraction: float = 0.5,
        top_n: int = 6,
        corr_threshold: float = 0.9,
        beta: float = 2.0,
        step: float = 0.01,
        inner_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.columns = columns
        self.ensemble_size = ensemble_size
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.top_n = top_n
        self.corr_threshold = corr_threshold
        self.beta = beta
        self.step = step
        self.inner_folds = inner_folds
        self.seed = seed

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        if self.ensemble_size < 1 or self.n_bags < 1 or not 0 < self.bag_fraction <= 1:
            raise ValueError("ensemble_size and n_bags must be >= 1, bag_fraction in (0, 1]")
        rng = np.random.default_rng(self.seed)
        self.weights_ = np.zeros((y.shape[1], P.shape[1]))
        for j in range(y.shape[1]):
            pool = self._best_epoch_per_member(j)
            known = ~np.isnan(y[:, j])
            pj, yj = P[known][:, pool, j], y[known, j]
            n_take = max(1, int(round(self.bag_fraction * len(pool))))
            w = np.zeros(len(pool))
            for _ in range(self.n_bags):
                bag = np.sort(rng.choice(len(pool), n_take, replace=False))
                if self.n_bags == 1 and self.bag_fraction == 1:
                    bag = np.arange(len(pool))
                w[bag] += ensemble_selection(
                    pj[:, bag], yj, self.ensemble_size, self.beta, self.step
                )
            self.weights_[j, pool] = w / self.n_bags


class LogisticCombiner(Combiner):
    """Per-label L2 logistic regression on standardised logits of the selected columns:
    of label j only (``scope="own"``) or of all L labels (``scope="all"``)."""

    kind = "logistic"

    def __init__(
        self,
        columns: Sequence[Column] = (),
        scope: str = "own",
        C: float = 1.0,
        top_n: int = 6,
        corr_threshold: float = 0.9,
        beta: float = 2.0,
        step: float = 0.01,
        inner_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.columns = columns
        self.scope = scope
        self.C = C
        self.top_n = top_n
        self.corr_threshold = corr_threshold
        self.beta = beta
        self.step = step
        self.inner_folds = inner_folds
        self.seed = seed

    def _features(self, P: np.ndarray, j: int) -> np.ndarray:
        cols = self.selection_.indices[j]
        block = P[:, cols, j] if self.scope == "own" else P[:, cols, :].reshape(len(P), -1)
        return logit(block)

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        if self.scope not in ("own", "all"):
            raise ValueError(f"scope must be 'own' or 'all', got {self.scope!r}")
        self.models_ = []
        for j in range(y.shape[1]):
            known = ~np.isnan(y[:, j])
            X = self._features(P[known], j)
            yj = y[known, j].astype(int)
            mean, scale = X.mean(axis=0), X.std(axis=0)
            scale = np.where(scale > 1e-12, scale, 1.0)
            if len(np.unique(yj)) < 2:
                coef, icpt = np.zeros(X.shape[1]), float(logit(np.array([yj.mean()]))[0])
            else:
                lr = LogisticRegression(C=self.C, max_iter=1000).fit((X - mean) / scale, yj)
                coef, icpt = lr.coef_[0], float(lr.intercept_[0])
            self.models_.append(
                {
                    "columns": self.selection_.indices[j].tolist(),
                    "mean": mean.tolist(),
                    "scale": scale.tolist(),
                    "coef": coef.tolist(),
                    "intercept": icpt,
                }
            )

    def _predict(self, P: np.ndarray) -> np.ndarray:
        return logistic_combiner_proba(self.models_, self.scope, P)

    @property
    def used_columns_(self) -> np.ndarray:
        return np.unique(np.concatenate([np.asarray(m["columns"]) for m in self.models_]))

    def get_state(self) -> dict[str, Any]:
        return {"models": self.models_}

    def set_state(self, state: dict[str, Any]) -> None:
        self.models_ = [dict(m) for m in state["models"]]
        self.selection_ = None


class XGBCombiner(Combiner):
    """The per-label XGBoost stacker (``pipeline.ensemble.stack.PerLabelXGBStacker``) on the
    selected columns' predictions of all labels (DESIGN step 6). ``stacker`` holds its
    parameters; ``oof_`` is the stacker's own CV prediction."""

    kind = "xgb"

    def __init__(
        self,
        columns: Sequence[Column] = (),
        stacker: Any = None,
        top_n: int = 6,
        corr_threshold: float = 0.9,
        beta: float = 2.0,
        step: float = 0.01,
        inner_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.columns = columns
        self.stacker = stacker
        self.top_n = top_n
        self.corr_threshold = corr_threshold
        self.beta = beta
        self.step = step
        self.inner_folds = inner_folds
        self.seed = seed

    def fit(self, P: np.ndarray, y: np.ndarray, client: Any = None) -> XGBCombiner:
        """As every combiner's ``fit``; ``client``: a Dask client for the stacker's grid (not
        a parameter: a live client cannot be cloned)."""
        self._client = client
        try:
            return super().fit(P, y)
        finally:
            self._client = None

    def _new_stacker(self, n_labels: int, client: Any = None):
        """An unfitted stacker on the selected columns of every label."""
        from pipeline.ensemble.select import feature_indices
        from pipeline.ensemble.stack import PerLabelXGBStacker

        base = self.stacker if self.stacker is not None else PerLabelXGBStacker()
        features = feature_indices(self.selection_.indices, n_labels)
        return PerLabelXGBStacker(
            **{**base.get_params(deep=False), "features_per_label": features, "client": client}
        )

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        n, n_cols, n_labels = P.shape
        self.stacker_ = self._new_stacker(n_labels, getattr(self, "_client", None))
        self.stacker_.fit(P.reshape(n, n_cols * n_labels), y)
        self.stacker_.set_params(client=None)

    def _inner_oof(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(self.stacker_.oof_), 0.0, self.stacker_.oof_)

    def _predict(self, P: np.ndarray) -> np.ndarray:
        n, n_cols, n_labels = P.shape
        return self.stacker_.predict_proba(P.reshape(n, n_cols * n_labels))

    @property
    def used_columns_(self) -> np.ndarray:
        n_labels = self.n_labels_
        cols = np.concatenate([np.asarray(f) // n_labels for f in self.stacker_.features_])
        return np.unique(cols)

    def get_state(self) -> dict[str, Any]:
        return {"models_dir": "xgb"}

    def set_state(self, state: dict[str, Any]) -> None:  # the stacker is loaded by the saver
        self.selection_ = None


def fit_combiners(
    jobs: Iterable[tuple[Combiner, np.ndarray, np.ndarray]], client: Any = None
) -> list[Combiner]:
    """``combiner.fit(P, y)`` for every (combiner, P, y); the XGBoost combiners' stackers
    all in one task pool (``pipeline.ensemble.stack_cv.run_plans``), so one stacker's slowest label
    does not leave the other workers idle. The same fitted combiners as fitting them one
    after another. ``jobs`` is consumed one at a time (pass a generator to hold one job's
    rows at once): an XGBoost job keeps only its labels' selected columns until the pool
    runs."""
    from pipeline.ensemble.stack_cv import run_plans

    out: list[Combiner] = []
    pending, plans = [], []
    for est, P, y in jobs:
        if not isinstance(est, XGBCombiner):
            out.append(est.fit(P, y))
            continue
        P, y = est._select(P, y)
        n, n_cols, n_labels = P.shape
        est.stacker_ = est._new_stacker(n_labels)
        plans.append(est.stacker_.plan_fit(P.reshape(n, n_cols * n_labels), y))
        pending.append((len(out), n_cols, y))
        out.append(est)
    if plans:
        n_jobs = int(out[pending[0][0]].stacker_.n_jobs)
        for (i, n_cols, y), plan, results in zip(
            pending, plans, run_plans(plans, n_jobs, client), strict=True
        ):
            est = out[i]
            est.stacker_.adopt(plan, results)
            # _finish reads only P's shape for XGBoost (its inner OOF is the stacker's own)
            est._finish(np.empty((0, n_cols, y.shape[1]), dtype=np.float32), y)
    return out
