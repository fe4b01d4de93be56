"""Per-label XGBoost stacker over the selected OOF columns (DESIGN step 6).

For each label an XGBoost model learns from the selected base columns' OOF predictions
(for all labels) with K-fold CV on the OOF rows; a small grid over eta x max_depth x
min_child_weight, each with early stopping, is chosen by the CV F-beta at the best
threshold. The K fold models of the chosen grid point are kept and averaged at predict
time, so the stacked OOF predictions (``oof_``) and the test predictions come from models
that never saw the rows they predict.

Leakage rule: inside a CV fold, early stopping watches rows carved from that fold's
training rows only (:func:`make_cv_splits`), never its validation rows; otherwise a row's
own label would choose how many trees predict it, and the CV score (hence the grid choice
and the thresholds fitted later on ``oof_``) would be optimistic.

The (label, grid point) tasks, or with ``search="halving"`` the per-label searches, are
independent and run through pure functions of ``pipeline.ensemble.stack_cv`` (:func:`fit_grid_point`,
:func:`search_label`), locally with joblib or on a Dask cluster, so both paths produce the
same models. Each XGBoost model uses one thread (``nthread=1``) and a fixed seed, so
results do not depend on how many tasks run at once.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_array, check_is_fitted

from pipeline.artifacts import atomic_dir
from pipeline.ensemble.stack_cv import (
    FitPlan,
    GridResult,
    GridTask,
    SearchTask,
    derived_seed,
    fit_grid_point,
    make_cv_splits,
    run_plans,
    search_label,
    xgb_params,
)
from pipeline.metrics import check_labels, fbeta_score

log = logging.getLogger(__name__)

META_FILE = "meta.json"
FORMAT_VERSION = 1
GRID_KEYS = ("eta", "max_depth", "min_child_weight")
SEARCHES = ("grid", "halving")


def _as_tuple(value: Any) -> tuple:
    """A grid axis: a scalar becomes a one-point axis."""
    return tuple(value) if isinstance(value, list | tuple | np.ndarray) else (value,)


class PerLabelXGBStacker(ClassifierMixin, BaseEstimator):
    """Per-label XGBoost stacker: K-fold CV grid search with leak-free early stopping.

    Multi-label like ``OneVsRestClassifier``: ``y`` is (n, L) with 1/0/NaN, ``predict_proba``
    returns (n, L) positive-class probabilities and ``classes_`` are the label indices.
    ``predict`` thresholds them at each label's best CV threshold (``thresholds_``) and
    ``score`` is the macro F-beta of that, so ``cross_val_predict``, ``GridSearchCV`` and
    pipelines work; the thresholds stage refines the thresholds on ``oof_`` (sample/micro
    averaging). sklearn's ``cross_val_predict`` label-encodes ``y`` and so needs it fully
    known (no NaN); ``fit`` itself handles NaN.

    Args:
        features_per_label: per label, the indices of its feature columns in X (see
            ``pipeline.ensemble.select.feature_indices``); None = every label uses every column.
        eta, max_depth, min_child_weight: grid axes (tuples; a scalar is a one-point axis).
        n_estimators: the most boosting rounds; early stopping picks fewer.
        early_stopping_rounds: rounds without early-stop logloss gain before stopping.
        n_folds: K of the stacker's CV (on the OOF rows; not the CNN folds).
        beta: F-beta's beta for choosing the grid point.
        threshold_step: threshold grid step of the CV F-beta.
        seed: seeds CV splits, early-stopping splits and XGBoost.
        n_jobs: (label, grid point) tasks run at once locally (joblib); every XGBoost fit
            itself uses one thread, so results do not depend on ``n_jobs``.
        client: a ``dask.distributed.Client`` to run the tasks on instead of joblib; the
            results are identical. Not a model hyperparameter: ``clone`` deep-copies
            parameters and a live Client cannot be copied, so clone with ``client=None``
            and ``set_params(client=...)`` afterwards.
        early_stopping_fraction: share of each CV fold's training rows held back for early
            stopping.
        search: ``"grid"`` CV-fits every grid point on all of a label's rows (one task per
            (label, point)); ``"halving"`` runs successive halving per label
            (:func:`search_label`, one task per label): the same winner whenever the
            exhaustive grid's best point survives to the last rung, for a fraction of the fits.
        halving_factor: halving keeps the best 1/factor of the points per rung.
        halving_min_rows: the smallest row sample a rung uses.
        max_bin: XGBoost's histogram bins per feature.

    Attributes:
        best_params_: per label, the chosen ``{"eta", "max_depth", "min_child_weight"}``.
        cv_scores_: per label, ``{(eta, max_depth, min_child_weight): CV F-beta}`` (with
            halving: each point's score on the last rung it reached).
        search_rungs_: per label, halving's rungs (``rows``, ``points``, ``scores``); empty
            lists for the grid search.
        best_score_: (L,) the chosen grid points' CV F-beta.
        thresholds_: (L,) the thresholds at which ``best_score_`` is reached on ``oof_``.
        oof_: (n, L) CV predictions of the chosen grid points; NaN where ``y`` is NaN.
        models_: per label, the K ``xgboost.Booster`` of the chosen point (cut to their
            best iteration).
        n_trees_: per label, the K models' numbers of trees.
        features_: per label, the resolved feature index arrays.
        classes_: ``arange(L)``; n_features_in_: number of columns of X.
    """

    def __init__(
        self,
        features_per_label: Sequence[Sequence[int]] | None = None,
        eta: float | Sequence[float] = (0.05, 0.1),
        max_depth: int | Sequence[int] = (2, 3),
        min_child_weight: float | Sequence[float] = (1, 3),
        n_estimators: int = 400,
        early_stopping_rounds: int = 30,
        n_folds: int = 5,
        beta: float = 2.0,
        threshold_step: float = 0.01,
        seed: int = 0,
        n_jobs: int = 1,
        client: Any = None,
        early_stopping_fraction: float = 0.15,
        search: str = "grid",
        halving_factor: int = 3,
        halving_min_rows: int = 2000,
        max_bin: int = 256,
    ) -> None:
        self.features_per_label = features_per_label
        self.eta = eta
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.n_folds = n_folds
        self.beta = beta
        self.threshold_step = threshold_step
        self.seed = seed
        self.n_jobs = n_jobs
        self.client = client
        self.early_stopping_fraction = early_stopping_fraction
        self.search = search
        self.halving_factor = halving_factor
        self.halving_min_rows = halving_min_rows
        self.max_bin = max_bin

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # XGBoost routes missing features
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.classifier_tags.multi_label = True
        return tags

    def grid(self) -> list[tuple[float, int, float]]:
        """The grid points (eta, max_depth, min_child_weight), in the order ties are broken."""
        return list(
            itertools.product(
                _as_tuple(self.eta), _as_tuple(self.max_depth), _as_tuple(self.min_child_weight)
            )
        )

    def _resolve_features(self, n_features: int, n_labels: int) -> list[np.ndarray]:
        if self.features_per_label is None:
            return [np.arange(n_features) for _ in range(n_labels)]
        if len(self.features_per_label) != n_labels:
            raise ValueError(
                f"features_per_label has {len(self.features_per_label)} entries, y has {n_labels} labels"
            )
        features = []
        for j, cols in enumerate(self.features_per_label):
            cols = np.asarray(cols, dtype=np.int64).ravel()
            if cols.size == 0 or cols.min() < 0 or cols.max() >= n_features:
                raise ValueError(
                    f"features_per_label[{j}] must be non-empty indices in 0..{n_features - 1}"
                )
            features.append(cols)
        return features

    def fit(self, X: np.ndarray, y: np.ndarray) -> PerLabelXGBStacker:
        """Grid-search and CV-fit one XGBoost model set per label.

        Args:
            X: (n, F) features (the flattened OOF columns); NaN allowed.
            y: (n, L) labels 1/0/NaN; a label's NaN rows are left out of its model.

        Raises:
            ValueError: shapes disagree, or a label has too few known rows for CV or no
                known positive or negative (nothing to learn; fix or drop the label).
        """
        plan = self.plan_fit(X, y)
        return self.adopt(plan, run_plans([plan], self.n_jobs, self.client)[0])

    def plan_fit(self, X: np.ndarray, y: np.ndarray) -> FitPlan:
        """Check the inputs and make every task of ``fit(X, y)`` without running them; run
        with :func:`run_plans` (alone or pooled with other fits), then :meth:`adopt`."""
        X = check_array(X, dtype=np.float32, ensure_all_finite="allow-nan")
        y = check_labels(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows, y has {y.shape[0]}")
        n_labels = y.shape[1]
        features = self._resolve_features(X.shape[1], n_labels)
        grid = self.grid()

        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {self.search!r}")
        grid_params = [
            xgb_params(eta, depth, mcw, self.seed, self.max_bin) for eta, depth, mcw in grid
        ]
        common = dict(
            n_estimators=int(self.n_estimators),
            early_stopping_rounds=int(self.early_stopping_rounds),
            beta=float(self.beta),
            threshold_step=float(self.threshold_step),
        )
        tasks: list[GridTask | SearchTask] = []
        rows_per_label = []
        for j in range(n_labels):
            rows = np.flatnonzero(~np.isnan(y[:, j]))
            rows_per_label.append(rows)
            y_j = y[rows, j]
            n_pos = int(y_j.sum())
            if n_pos == 0 or n_pos == len(y_j):
                raise ValueError(
                    f"label {j} has {n_pos} known positive(s) of {len(y_j)} known rows: "
                    "nothing to stack; fix labels.csv or drop the label"
                )
            try:
                splits = make_cv_splits(
                    y_j, self.n_folds, derived_seed(self.seed, j), self.early_stopping_fraction
                )
            except ValueError as err:
                raise ValueError(f"label {j}: {err}") from err
            shared = dict(
                label=j, rows=rows, features=np.arange(len(features[j])), y=y_j, splits=splits
            )
            if self.search == "halving":
                tasks.append(
                    SearchTask(
                        grid=grid_params,
                        n_folds=int(self.n_folds),
                        early_stopping_fraction=float(self.early_stopping_fraction),
                        factor=int(self.halving_factor),
                        min_rows=int(self.halving_min_rows),
                        seed=int(self.seed),
                        **shared,
                        **common,
                    )
                )
            else:
                tasks.extend(
                    GridTask(point=g, params=params, **shared, **common)
                    for g, params in enumerate(grid_params)
                )

        # each label's task reads only its own columns: a slice, not all of X, is shipped
        # to the workers (a 55k x 1,664 OOF matrix is 366 MB; a label's 78 columns, 17 MB)
        return FitPlan(
            search_label if self.search == "halving" else fit_grid_point,
            [np.ascontiguousarray(X[:, f]) for f in features],
            tasks,
            features,
            grid,
            rows_per_label,
            y.shape,
            X.shape[1],
        )

    def adopt(self, plan: FitPlan, results: list) -> PerLabelXGBStacker:
        """Keep the plan's outcome: per label the best grid point's models, OOF, scores."""
        features, grid, rows_per_label = plan.features, plan.grid, plan.rows_per_label
        n_labels = plan.y_shape[1]

        best_of: dict[int, GridResult] = {}
        self.cv_scores_, self.search_rungs_ = [], []
        if self.search == "halving":
            for j, result in enumerate(results):
                best_of[j] = result.best
                self.cv_scores_.append({grid[g]: result.scores[g] for g in sorted(result.scores)})
                self.search_rungs_.append(result.rungs)
        else:
            by_label: dict[int, list[GridResult]] = {j: [] for j in range(n_labels)}
            for result in results:
                by_label[result.label].append(result)
            for j in range(n_labels):
                ranked = sorted(by_label[j], key=lambda r: r.point)
                best = ranked[0]
                for result in ranked[1:]:
                    if result.score > best.score:  # strict: ties keep the earlier grid point
                        best = result
                best_of[j] = best
                self.cv_scores_.append({grid[r.point]: float(r.score) for r in ranked})
        self.best_params_, self.models_, self.n_trees_ = [], [], []
        self.best_score_ = np.zeros(n_labels)
        self.thresholds_ = np.zeros(n_labels)
        self.oof_ = np.full(plan.y_shape, np.nan)
        for j in range(n_labels):
            best = best_of[j]
            self.best_params_.append(dict(zip(GRID_KEYS, grid[best.point], strict=True)))
            self.best_score_[j] = best.score
            self.thresholds_[j] = best.threshold
            self.oof_[rows_per_label[j], j] = best.oof
            self.models_.append(best.boosters)
            self.n_trees_.append(best.n_trees)
            log.info(
                "label %d: eta=%g max_depth=%d min_child_weight=%g trees=%s CV F%g=%.4f",
                j,
                *grid[best.point],
                best.n_trees,
                self.beta,
                best.score,
            )
        self.features_ = features
        self.classes_ = np.arange(n_labels)
        self.n_features_in_ = plan.n_features
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, L) probabilities: per label, the mean of its K fold models."""
        check_is_fitted(self, "models_")
        X = check_array(X, dtype=np.float32, ensure_all_finite="allow-nan")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, the stacker was fit on {self.n_features_in_}"
            )
        proba = np.empty((X.shape[0], len(self.models_)))
        for j, (boosters, cols) in enumerate(zip(self.models_, self.features_, strict=True)):
            data = X[:, cols]
            proba[:, j] = np.mean([b.inplace_predict(data) for b in boosters], axis=0)
        return proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, L) 0/1 predictions at each label's best CV threshold (``p >= threshold``)."""
        return (self.predict_proba(X) >= self.thresholds_).astype(np.int64)

    def score(self, X: np.ndarray, y: np.ndarray, sample_weight: None = None) -> float:
        """Macro F-beta of :meth:`predict` over the known cells of ``y`` (higher is better)."""
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported")
        return fbeta_score(check_labels(y), self.predict(X), beta=self.beta, average="macro")

    def save(self, path: str | Path, labels: Sequence[str] | None = None) -> None:
        """Write the fitted stacker to directory ``path``: XGBoost JSON models + ``meta.json``.

        No pickles: ``label<j>.fold<k>.json`` per model, ``oof.npy`` for ``oof_``, and the
        parameters, features, choices and CV scores in ``meta.json`` (with ``labels``, if
        given, for people reading it). Written to a temporary directory beside ``path`` and
        renamed into place, so a killed write leaves no half stacker.
        """
        check_is_fitted(self, "models_")
        path = Path(path)
        if labels is not None and len(labels) != len(self.models_):
            raise ValueError(f"{len(labels)} label names for {len(self.models_)} labels")
        params = {k: jsonable(v) for k, v in self.get_params(deep=False).items() if k != "client"}
        grid = self.grid()
        meta = {
            "format": FORMAT_VERSION,
            "labels": list(labels) if labels is not None else None,
            "n_features_in": int(self.n_features_in_),
            "params": params,
            "features_per_label": [cols.tolist() for cols in self.features_],
            "best_params": self.best_params_,
            "best_score": self.best_score_.tolist(),
            "thresholds": self.thresholds_.tolist(),
            "n_trees": self.n_trees_,
            "cv_scores": [
                [dict(zip(GRID_KEYS, point, strict=True), fbeta=scores[point]) for point in grid]
                for scores in self.cv_scores_
            ],
            "search_rungs": getattr(self, "search_rungs_", []),
        }
        with atomic_dir(path) as tmp:
            for j, boosters in enumerate(self.models_):
                for k, booster in enumerate(boosters):
                    booster.save_model(str(tmp / f"label{j}.fold{k}.json"))
            np.save(tmp / "oof.npy", self.oof_, allow_pickle=False)
            (tmp / META_FILE).write_text(json.dumps(jsonable(meta), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> PerLabelXGBStacker:
        """Read a stacker written by :meth:`save`; it predicts exactly as the saved one."""
        import xgboost as xgb

        path = Path(path)
        meta = load_meta(path)
        params = dict(meta["params"])
        for key in GRID_KEYS:
            if isinstance(params[key], list):
                params[key] = tuple(params[key])
        stacker = cls(**params)
        grid = stacker.grid()
        stacker.features_ = [np.asarray(c, dtype=np.int64) for c in meta["features_per_label"]]
        stacker.best_params_ = [dict(p) for p in meta["best_params"]]
        stacker.best_score_ = np.asarray(meta["best_score"], dtype=np.float64)
        stacker.thresholds_ = np.asarray(meta["thresholds"], dtype=np.float64)
        stacker.n_trees_ = [list(n) for n in meta["n_trees"]]
        stacker.cv_scores_ = [
            {point: float(entry["fbeta"]) for point, entry in zip(grid, entries, strict=True)}
            for entries in meta["cv_scores"]
        ]
        stacker.search_rungs_ = list(meta.get("search_rungs", []))
        stacker.models_ = []
        for j, n_trees in enumerate(stacker.n_trees_):
            boosters = []
            for k in range(len(n_trees)):
                model_file = path / f"label{j}.fold{k}.json"
                if not model_file.is_file():
                    raise FileNotFoundError(f"{model_file} is missing; re-run `make stack`")
                booster = xgb.Booster(params={"nthread": 1})
                booster.load_model(str(model_file))
                boosters.append(booster)
            stacker.models_.append(boosters)
        stacker.oof_ = np.load(path / "oof.npy", allow_pickle=False)
        stacker.classes_ = np.arange(len(stacker.models_))
        stacker.n_features_in_ = int(meta["n_features_in"])
        return stacker


def load_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a saved stacker (labels, features, choices, CV scores)."""
    meta_file = Path(path) / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file} does not exist; run `make stack` first")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_file}: format {meta.get('format')!r} is not {FORMAT_VERSION}; re-run `make stack`"
        )
    return meta


def jsonable(value: Any) -> Any:
    """Plain JSON types from tuples, NumPy scalars and arrays."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
