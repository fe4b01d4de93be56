"""Cross-validated XGBoost fits for the stacker: CV splits with leak-free early stopping,
one grid point's K fits (:func:`fit_grid_point`) and a label's successive-halving search
over the whole grid (:func:`search_label`).

Pure functions of (feature matrix, task): joblib and Dask run exactly the same computation
(:func:`run_plans` runs the tasks of one or several stacker fits in one pool;
``pipeline.ensemble.stack.PerLabelXGBStacker`` builds the tasks and keeps the results).
Leakage rule: inside a CV fold, early stopping watches rows carved from that fold's
training rows only, never its validation rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit
from tqdm.auto import tqdm

from pipeline.metrics import best_threshold_fbeta

#: CV folds of halving's early rungs: each row of the rung's sample is scored once either
#: way, and 2 folds cost 2 fits per point instead of K.
EARLY_RUNG_FOLDS = 2
#: Early rungs rank points, they do not make the final models, so they stop sooner: at
#: most this early-stopping patience (the last rung uses the configured one). Every tree
#: past a fit's best iteration is paid for and thrown away; on the JD grid's early rungs
#: (best iterations ~70-150) a patience of 30 adds 20-40% trees.
EARLY_RUNG_PATIENCE = 10


class FoldSplit(NamedTuple):
    """One CV fold, as positions into a label's known rows.

    ``fit`` and ``early_stop`` partition the fold's training rows; ``valid`` is the held-out
    fold, disjoint from both.
    """

    fit: np.ndarray
    early_stop: np.ndarray
    valid: np.ndarray


def derived_seed(*keys: int) -> int:
    """A 32-bit seed derived from ``keys``: independent streams per label and fold."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def early_stopping_split(
    y_train: np.ndarray, fraction: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training rows into (fit, early-stop) positions, stratified when possible.

    Stratified so a rare label's early-stopping rows hold positives; when a class has fewer
    than 2 rows, stratification is impossible and a plain shuffled split is used.
    """
    y_train = np.asarray(y_train)
    if not 0 < fraction < 1:
        raise ValueError(f"early-stopping fraction must be in (0, 1), got {fraction!r}")
    if len(y_train) < 2:
        raise ValueError(f"{len(y_train)} training row(s) cannot be split for early stopping")
    _, counts = np.unique(y_train, return_counts=True)
    n_es = max(1, int(round(fraction * len(y_train))))
    stratify = (
        len(counts) > 1 and counts.min() >= 2 and len(counts) <= n_es <= len(y_train) - len(counts)
    )
    splitter = (
        StratifiedShuffleSplit(n_splits=1, test_size=n_es, random_state=seed)
        if stratify
        else ShuffleSplit(n_splits=1, test_size=n_es, random_state=seed)
    )
    fit, early_stop = next(splitter.split(np.zeros(len(y_train)), y_train))
    return np.sort(fit), np.sort(early_stop)


def make_cv_splits(
    y_col: np.ndarray, n_folds: int = 5, seed: int = 0, early_stopping_fraction: float = 0.15
) -> list[FoldSplit]:
    """K-fold CV splits of one label's known rows, each with its own early-stopping rows.

    StratifiedKFold (shuffled, seeded) keeps the label's positives spread over folds. When
    the label has fewer positives (or negatives) than folds, stratification cannot put one
    in every fold and sklearn would warn; a shuffled KFold is used instead, and some folds
    then score on no positive at all — the concatenated OOF score is still well defined.

    Args:
        y_col: (m,) 0/1 labels of the known rows.
        n_folds: K.
        seed: seeds the fold assignment and every fold's early-stopping split.
        early_stopping_fraction: share of a fold's training rows held back for early stopping.
    """
    y_col = np.asarray(y_col)
    if len(y_col) < 2 * n_folds:
        raise ValueError(f"{len(y_col)} known rows are too few for {n_folds}-fold CV")
    n_pos = int(np.count_nonzero(y_col == 1))
    rare = min(n_pos, len(y_col) - n_pos)
    cv = (
        StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=derived_seed(seed, 0))
        if rare >= n_folds
        else KFold(n_splits=n_folds, shuffle=True, random_state=derived_seed(seed, 0))
    )
    splits = []
    for k, (train, valid) in enumerate(cv.split(np.zeros(len(y_col)), y_col)):
        fit, es = early_stopping_split(
            y_col[train], early_stopping_fraction, derived_seed(seed, 1, k)
        )
        splits.append(FoldSplit(fit=train[fit], early_stop=train[es], valid=np.sort(valid)))
    return splits


@dataclass(frozen=True)
class GridTask:
    """Everything one (label, grid point) fit needs besides the shared feature matrix."""

    label: int
    point: int
    params: dict[str, Any]
    rows: np.ndarray  # the label's known rows in X
    features: np.ndarray  # the label's feature columns in X
    y: np.ndarray  # (len(rows),) 0/1 labels of those rows
    splits: list[FoldSplit]
    n_estimators: int
    early_stopping_rounds: int
    beta: float
    threshold_step: float


@dataclass(frozen=True)
class GridResult:
    """One grid point's CV outcome for one label."""

    label: int
    point: int
    score: float
    threshold: float
    oof: np.ndarray  # (len(rows),) CV predictions
    boosters: list[Any]  # K xgboost.Booster, each cut to its best iteration
    n_trees: list[int]


def xgb_params(
    eta: float, max_depth: int, min_child_weight: float, seed: int, max_bin: int = 256
) -> dict[str, Any]:
    """XGBoost training parameters: one thread and hist, so a fit is reproducible anywhere."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "eta": float(eta),
        "max_depth": int(max_depth),
        "min_child_weight": float(min_child_weight),
        "max_bin": int(max_bin),
        "seed": int(seed),
        "nthread": 1,
        "verbosity": 0,
    }


class _Fold(NamedTuple):
    """One CV fold's XGBoost data: built once, shared by every grid point fitted on it
    (a DMatrix keeps its quantised histogram index, so later fits skip the sketch)."""

    fit: Any  # xgboost.DMatrix
    early_stop: Any  # xgboost.DMatrix
    valid: np.ndarray  # the validation rows' features


def _fold_data(data: np.ndarray, y: np.ndarray, splits: Sequence[FoldSplit]) -> list[_Fold]:
    import xgboost as xgb

    return [
        _Fold(
            xgb.DMatrix(data[s.fit], label=y[s.fit], nthread=1),
            xgb.DMatrix(data[s.early_stop], label=y[s.early_stop], nthread=1),
            data[s.valid],
        )
        for s in splits
    ]


def _cv_point(
    params: dict[str, Any],
    folds: Sequence[_Fold],
    y: np.ndarray,
    splits: Sequence[FoldSplit],
    n_estimators: int,
    early_stopping_rounds: int,
    beta: float,
    threshold_step: float,
) -> tuple[float, float, np.ndarray, list[Any], list[int]]:
    """K fits of one grid point (early stopping on each fold's own early-stop rows):
    (CV F-beta, its threshold, OOF predictions, the K boosters, their tree counts)."""
    import xgboost as xgb

    oof = np.full(len(y), np.nan)
    boosters, n_trees = [], []
    for fold, split in zip(folds, splits, strict=True):
        booster = xgb.train(
            params,
            fold.fit,
            num_boost_round=n_estimators,
            evals=[(fold.early_stop, "early_stop")],
            early_stopping_rounds=early_stopping_rounds,
            verbose_eval=False,
        )
        booster = booster[: booster.best_iteration + 1]
        oof[split.valid] = booster.inplace_predict(fold.valid)
        boosters.append(booster)
        n_trees.append(booster.num_boosted_rounds())
    score, threshold = best_threshold_fbeta(y, oof, beta=beta, step=threshold_step)
    return score, threshold, oof, boosters, n_trees


def fit_grid_point(X: np.ndarray, task: GridTask) -> GridResult:
    """CV-fit one grid point for one label: K models with early stopping, and their OOF score.

    Pure (inputs in, result out), so joblib and Dask run exactly the same computation.
    Early stopping of fold k watches ``splits[k].early_stop`` only, a part of fold k's
    training rows; fold k's validation rows are only predicted.
    """
    data = X[np.ix_(task.rows, task.features)]
    folds = _fold_data(data, task.y, task.splits)
    score, threshold, oof, boosters, n_trees = _cv_point(
        task.params,
        folds,
        task.y,
        task.splits,
        task.n_estimators,
        task.early_stopping_rounds,
        task.beta,
        task.threshold_step,
    )
    return GridResult(task.label, task.point, score, threshold, oof, boosters, n_trees)


@dataclass(frozen=True)
class SearchTask:
    """One label's successive-halving search over the whole grid (``search="halving"``)."""

    label: int
    grid: list[dict[str, Any]]  # XGBoost params per grid point, in grid order
    rows: np.ndarray
    features: np.ndarray
    y: np.ndarray
    splits: list[FoldSplit]  # the full rows' CV splits (the exhaustive grid's)
    n_folds: int
    early_stopping_fraction: float
    n_estimators: int
    early_stopping_rounds: int
    beta: float
    threshold_step: float
    factor: int
    min_rows: int
    seed: int


@dataclass(frozen=True)
class SearchResult:
    """A label's halving outcome: the winner (as the exhaustive grid would have fitted it),
    every point's score at the last rung it reached, and the rungs."""

    best: GridResult
    scores: dict[int, float]
    rungs: list[dict[str, Any]]


def halving_schedule(
    n_rows: int, n_points: int, factor: int = 3, min_rows: int = 2000
) -> list[tuple[int, int]]:
    """The rungs of successive halving: (points evaluated, rows used) per rung.

    Points shrink by ``factor`` per rung down to at most ``factor``, which are fitted on all
    ``n_rows`` exactly as the exhaustive grid fits them (so whenever the exhaustive best
    reaches the last rung, halving picks it too); rows grow by ``factor`` per rung back from
    there, never below ``min_rows``. Rungs that
    would use the same rows are merged (the same points on the same rows tell nothing new),
    so the first rung may prune harder than ``factor``.

    >>> halving_schedule(44000, 180, 3, 2000)
    [(180, 2000), (20, 4889), (7, 14667), (3, 44000)]
    """
    counts = [n_points]
    while counts[-1] > factor:
        counts.append(-(-counts[-1] // factor))
    last = len(counts) - 1
    rows = [
        min(n_rows, max(min_rows, round(n_rows / factor ** (last - r)))) for r in range(len(counts))
    ]
    rows[-1] = n_rows
    rungs: list[tuple[int, int]] = []
    for count, m in zip(counts, rows, strict=True):
        if rungs and rungs[-1][1] == m:
            continue  # same rows as the rung before: that rung keeps fewer points instead
        rungs.append((count, m))
    return rungs


def _rung_sample(y: np.ndarray, m: int, seed: int, min_minority: int = 100) -> np.ndarray:
    """``m`` of a label's rows, nested in ``m`` for one seed (a bigger rung holds the smaller
    one's rows), keeping the minority class at its share but at least ``min_minority`` rows
    (all, if fewer), so a rare label's early rungs still score on positives."""
    if m >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
    minority, majority = (pos, neg) if len(pos) <= len(neg) else (neg, pos)
    minority, majority = rng.permutation(minority), rng.permutation(majority)
    n_min = min(len(minority), max(round(m * len(minority) / len(y)), min_minority))
    n_maj = min(len(majority), m - n_min)
    return np.sort(np.concatenate([minority[:n_min], majority[:n_maj]]))


def search_label(X: np.ndarray, task: SearchTask) -> SearchResult:
    """Successive halving over the grid for one label.

    Every rung CV-fits its points on a row sample (its own seeded 2-fold CV: every sampled
    row is scored once, at 2 fits per point instead of K; early stopping inside each fold's
    training rows as always) and keeps the best by CV F-beta; the last
    rung uses all rows and the exhaustive grid's own splits, so its scores (and the winner's
    models and OOF) are exactly what ``search="grid"`` computes for those points. A rung's
    data are quantised once and shared by all its points. Ties keep the earlier grid point.
    """
    data = X[np.ix_(task.rows, task.features)]
    schedule = halving_schedule(len(task.rows), len(task.grid), task.factor, task.min_rows)
    alive = list(range(len(task.grid)))
    scores: dict[int, float] = {}
    rungs: list[dict[str, Any]] = []
    best: GridResult | None = None
    for r, (_, m) in enumerate(schedule):
        final = r == len(schedule) - 1
        patience = task.early_stopping_rounds
        if final:
            sub, y_sub, splits = np.arange(len(task.rows)), task.y, task.splits
        else:
            sub = _rung_sample(task.y, m, derived_seed(task.seed, task.label, 100 + r))
            y_sub = task.y[sub]
            splits = make_cv_splits(
                y_sub,
                min(task.n_folds, EARLY_RUNG_FOLDS),
                derived_seed(task.seed, task.label, 200 + r),
                task.early_stopping_fraction,
            )
            patience = min(patience, EARLY_RUNG_PATIENCE)
        folds = _fold_data(data[sub], y_sub, splits)
        results = {}
        for g in alive:
            fitted = _cv_point(
                task.grid[g],
                folds,
                y_sub,
                splits,
                task.n_estimators,
                patience,
                task.beta,
                task.threshold_step,
            )
            scores[g] = float(fitted[0])
            if final:
                results[g] = fitted
        rungs.append(
            {"rows": int(len(sub)), "points": list(alive), "scores": [scores[g] for g in alive]}
        )
        ranked = sorted(alive, key=lambda g: (-scores[g], g))
        if final:
            g = ranked[0]
            score, threshold, oof, boosters, n_trees = results[g]
            best = GridResult(task.label, g, score, threshold, oof, boosters, n_trees)
        else:
            alive = sorted(ranked[: schedule[r + 1][0]])
    assert best is not None
    return SearchResult(best, scores, rungs)


class FitPlan(NamedTuple):
    """One stacker fit, made but not run: its tasks and what reading the results needs."""

    fn: Callable  # fit_grid_point or search_label
    X_per_label: list[np.ndarray]  # label j's feature columns, every row
    tasks: list  # GridTask | SearchTask, each indexing X_per_label[task.label]
    features: list[np.ndarray]
    grid: list[tuple[float, int, float]]
    rows_per_label: list[np.ndarray]
    y_shape: tuple[int, int]
    n_features: int


def run_plans(plans: Sequence[FitPlan], n_jobs: int = 1, client: Any = None) -> list[list]:
    """Run the tasks of several stacker fits in one pool (joblib, or the Dask ``client``);
    per plan, its results in task order.

    One pool for all of them, so a worker that finishes its share of one fit starts on the
    next fit's tasks instead of waiting for the slowest label (the nested CV fits the
    stacker once per outer fold and once on all rows: pooled, a 2-worker run waits once,
    not at every fit). The biggest tasks (most rows) go first. Each task is a pure function
    of its data, so the results do not depend on the order or the pool.
    """
    order = sorted(
        ((i, t) for i, plan in enumerate(plans) for t in range(len(plan.tasks))),
        key=lambda it: -len(plans[it[0]].tasks[it[1]].rows),
    )
    results: list[list] = [[None] * len(plan.tasks) for plan in plans]
    if client is not None:
        from distributed import as_completed

        X_futures = [
            [client.scatter(x, broadcast=True) for x in plan.X_per_label] for plan in plans
        ]
        futures = {}
        for i, t in order:
            task = plans[i].tasks[t]
            fut = client.submit(plans[i].fn, X_futures[i][task.label], task, pure=False)
            futures[fut] = (i, t)
        for fut in tqdm(as_completed(futures), total=len(futures), desc="stack (dask)"):
            i, t = futures[fut]
            results[i][t] = fut.result()
        return results
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    jobs = parallel(
        delayed(plans[i].fn)(plans[i].X_per_label[plans[i].tasks[t].label], plans[i].tasks[t])
        for i, t in order
    )
    for (i, t), result in zip(order, tqdm(jobs, total=len(order), desc="stack"), strict=True):
        results[i][t] = result
    return results
