"""The two checks of ``make bench-scale`` that are not a size's stage run (see
``benchmarks.bench_scale``): the halving search against the exhaustive grid where the grid
is affordable (:func:`agreement`), and the exhaustive grid's cost at the largest size,
extrapolated from timed samples (:func:`full_grid_estimate`)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.scale_data import JD_GRID, SCALE_STACK, ScaleSpec, generate

log = logging.getLogger("benchmarks.bench_scale")


def agreement(n: int = 4000, seed: int = 0, n_jobs: int = 2, grid: dict | None = None) -> dict:
    """Halving vs the exhaustive grid on a subset where the grid is affordable."""
    from pipeline.ensemble.select import feature_indices, select_columns
    from pipeline.ensemble.stack import PerLabelXGBStacker

    with tempfile.TemporaryDirectory() as tmp:
        generate(ScaleSpec(n_train=n, seed=seed), Path(tmp))
        from pipeline.data.contract import read_labels, read_test_truth
        from pipeline.ensemble.select import group_pred_files, load_base_predictions

        table = read_labels(Path(tmp) / "data" / "train", "image", check_images=False)
        base = load_base_predictions(
            group_pred_files(sorted((Path(tmp) / "preds").glob("*.npz"))), table.ids
        )
        truth = read_test_truth(
            Path(tmp) / "data" / "test_truth.csv", base.labels, "image", base.test_ids
        )
    sel = select_columns(base.oof, table.y, base.columns, 2.0, 6, 0.9, 0.01)
    n_rows, n_cols, n_labels = base.oof.shape
    X = base.oof.reshape(n_rows, n_cols * n_labels)
    grid = grid or {
        "eta": (0.05, 0.1, 0.2),
        "max_depth": (2, 4, 6, 8),
        "min_child_weight": (1, 4, 16),
    }
    params = dict(
        features_per_label=feature_indices(sel.indices, n_labels),
        n_estimators=300,
        early_stopping_rounds=30,
        seed=11,
        n_jobs=n_jobs,
        halving_min_rows=500,
        **grid,
    )
    t0 = time.perf_counter()
    full = PerLabelXGBStacker(**params, search="grid").fit(X, table.y)
    t_grid = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = PerLabelXGBStacker(**params, search="halving").fit(X, table.y)
    t_halving = time.perf_counter() - t0
    from pipeline.metrics import fbeta_score

    y_test = truth.to_numpy(dtype=float)
    X_test = base.test.mean(axis=0).reshape(len(y_test), n_cols * n_labels)
    test_f2 = {
        name: float(fbeta_score(y_test, est.predict(X_test), beta=2.0, average="macro"))
        for name, est in (("grid", full), ("halving", fast))
    }
    gaps = []
    for j in range(n_labels):
        chosen = tuple(fast.best_params_[j].values())
        gaps.append(float(full.best_score_[j] - full.cv_scores_[j][chosen]))
    within = [g <= 0.002 + 1e-12 for g in gaps]
    return {
        "n_train": n,
        "grid_points": len(full.grid()),
        "halving_agreement": float(np.mean(within)),
        "gap_per_label": [round(g, 4) for g in gaps],
        "same_choice": int(
            sum(f == g for f, g in zip(fast.best_params_, full.best_params_, strict=True))
        ),
        "held_out_macro_f2": test_f2,
        "grid_s": round(t_grid, 1),
        "halving_s": round(t_halving, 1),
        "rungs": [[r["rows"], len(r["points"])] for r in fast.search_rungs_[0]],
    }


def full_grid_estimate(base: Path, n_samples: int = 8, seed: int = 0) -> dict:
    """Time ``n_samples`` exhaustive (label, grid point) CV fits on the largest size's
    features and extrapolate to every label x 180 points x (outer folds + refit)."""
    from pipeline.config.schema import load_config
    from pipeline.data.contract import read_labels
    from pipeline.ensemble.select import (
        feature_indices,
        group_pred_files,
        load_base_predictions,
        select_columns,
    )
    from pipeline.ensemble.stack_cv import (
        GridTask,
        derived_seed,
        fit_grid_point,
        make_cv_splits,
        xgb_params,
    )

    cfg = load_config(base / "config.toml")
    table = read_labels(cfg.data.train_dir, "image", check_images=False)
    preds = group_pred_files(sorted((base / "preds").glob("*.npz")))
    b = load_base_predictions(preds, table.ids)
    sel = select_columns(b.oof, table.y, b.columns, 2.0, 6, 0.9, 0.01)
    n, n_cols, n_labels = b.oof.shape
    X = b.oof.reshape(n, n_cols * n_labels)
    features = feature_indices(sel.indices, n_labels)
    rng = np.random.default_rng(seed)
    points = [(e, d, m) for e in JD_GRID["eta"] for d in JD_GRID["max_depth"]
              for m in JD_GRID["min_child_weight"]]  # fmt: skip
    # the nested CV fits the stacker on (outer - 1) / outer of the rows, the refit on all
    outer = SCALE_STACK["outer_folds"]
    rows_all = np.arange(n)
    samples = []
    for _ in range(n_samples):
        j = int(rng.integers(n_labels))
        g = int(rng.integers(len(points)))
        rows = rng.choice(rows_all, round(n * (outer - 1) / outer), replace=False)
        rows.sort()
        y_j = table.y[rows, j]
        splits = make_cv_splits(y_j, 5, derived_seed(11, j))
        task = GridTask(j, g, xgb_params(*points[g], 11), rows, features[j], y_j, splits,
                        400, 30, 2.0, 0.01)  # fmt: skip
        t0 = time.perf_counter()
        fit_grid_point(X, task)
        samples.append({"label": j, "point": points[g], "s": round(time.perf_counter() - t0, 2)})
        log.info("full grid sample: label %d point %s %.1f s", j, points[g], samples[-1]["s"])
    mean = float(np.mean([s["s"] for s in samples]))
    one_core = mean * len(points) * n_labels * (outer + 1)
    return {
        "n_train": n,
        "samples": samples,
        "mean_fit_s": round(mean, 2),
        "full_grid_estimate_s": round(one_core / 2, 0),  # two cores
        "full_grid_estimate_one_core_s": round(one_core, 0),
    }
