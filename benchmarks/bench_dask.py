"""Benchmark: the stacker's XGBoost grid serial vs on a 2-worker Dask cluster.

    python -m benchmarks.bench_dask --out build/bench/dask.json
    python -m benchmarks.bench_dask --xgb-dask --cnn-jobs 4 --out build/bench/dask.json

A synthetic stand-in for the demo OOF (3000 rows x 15 labels, 12 base columns, the top 6
per label selected, grid 2x2x2 = 120 (label, grid point) tasks of 5 CV fits each) is
stacked twice: serially (``client=None, n_jobs=1``) and through a real local cluster
(``dask scheduler`` + 2 ``dask worker`` processes, 1 thread each, started by
stages.cluster; start-up is not timed). The run fails unless both give identical
stacked OOF. Writes ``{"serial": s, "cluster": s, "ratio": serial/cluster, ...}``
atomically and prints one line.

``--xgb-dask`` also times one label's grid with ``xgboost.dask`` (each model trained
data-parallel across both workers) against plain task submission of the same fits.
``--cnn-jobs N`` also times N tiny ``train_cnn`` jobs: one after another in fresh
processes (``make -j1``) vs N concurrent submissions (``make -j N`` with DASK_SCHEDULER).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_json_atomic
from pipeline.cluster import ROOT, free_port, start_cluster, stop_cluster
from pipeline.distributed import connect, run_remote
from pipeline.ensemble.select import feature_indices
from pipeline.ensemble.stack import PerLabelXGBStacker
from pipeline.ensemble.stack_cv import fit_grid_point, make_cv_splits, xgb_params

log = logging.getLogger("benchmarks.bench_dask")

GRID = {"eta": (0.05, 0.1), "max_depth": (2, 3), "min_child_weight": (1, 3)}


def make_oof(
    n: int, n_labels: int, n_cols: int, top_n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Flattened base OOF (n, n_cols*L), labels (n, L) and per-label feature indices.

    Like the demo: imbalanced labels (a few under 2%), each base column a noisy CNN-like
    probability for every label, ``top_n`` columns selected per label.
    """
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.4, 0.015, n_labels)
    y = (rng.random((n, n_labels)) < prevalence).astype(np.float64)
    strength = rng.uniform(1.0, 3.0, (n_cols, 1, n_labels))
    logits = strength * (2 * y[None] - 1) + rng.normal(0, 1.2, (n_cols, n, n_labels)) - 1.5
    base = 1 / (1 + np.exp(-logits))  # (C, n, L)
    X = base.transpose(1, 0, 2).reshape(n, n_cols * n_labels).astype(np.float32)
    chosen = [np.sort(rng.choice(n_cols, top_n, replace=False)) for _ in range(n_labels)]
    return X, y, feature_indices(chosen, n_labels)


def warm_up(client) -> None:
    """Import the stacker's modules here and on every worker before timing.

    A cluster started by ``make cluster-up`` lives across many ``make stack`` runs, so the
    workers' one-off imports (xgboost, sklearn: seconds on a busy machine) are start-up,
    not per-run cost; the serial side gets the same treatment.
    """
    import importlib

    for module in ("xgboost", "pipeline.ensemble.stack"):
        importlib.import_module(module)
        client.run(importlib.import_module, module)


def bench_grid(X, y, features, client, n_estimators: int) -> tuple[dict, float, float]:
    """Time the stacker fit serially and on ``client``; check identical results."""
    params = dict(GRID, features_per_label=features, n_estimators=n_estimators, n_folds=5)
    warm_up(client)
    t0 = time.perf_counter()
    serial = PerLabelXGBStacker(**params, n_jobs=1).fit(X, y)
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    dist = PerLabelXGBStacker(**params, client=client).fit(X, y)
    t_cluster = time.perf_counter() - t0
    if not np.array_equal(serial.oof_, dist.oof_, equal_nan=True):
        raise RuntimeError("serial and cluster stackers differ; the grid is not deterministic")
    n_tasks = y.shape[1] * len(serial.grid())
    return {"n_tasks": n_tasks}, t_serial, t_cluster


def bench_xgb_dask(X, y, features, client, n_estimators: int, label: int = 0) -> dict:
    """One label's grid: ``xgboost.dask`` per (grid point, fold) vs plain task submission.

    xgboost.dask parallelises *inside* one model (rows split over workers, histograms
    all-reduced every tree); plain submission runs whole independent fits side by side.
    """
    import dask.array as da
    from xgboost import dask as dxgb

    from pipeline.ensemble.stack_cv import GridTask

    rows = np.flatnonzero(~np.isnan(y[:, label]))
    y_j = y[rows, label]
    cols = features[label]
    splits = make_cv_splits(y_j, 5, seed=label)
    grid = [
        (e, d, m) for e in GRID["eta"] for d in GRID["max_depth"] for m in GRID["min_child_weight"]
    ]
    tasks = [
        GridTask(
            label,
            g,
            xgb_params(*point, seed=0),
            rows,
            cols,
            y_j,
            splits,
            n_estimators,
            30,
            2.0,
            0.01,
        )
        for g, point in enumerate(grid)
    ]
    t0 = time.perf_counter()
    X_future = client.scatter(X, broadcast=True)
    client.gather([client.submit(fit_grid_point, X_future, t, pure=False) for t in tasks])
    t_tasks = time.perf_counter() - t0

    data = X[np.ix_(rows, cols)]
    n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
    t0 = time.perf_counter()
    for point in grid:
        for split in splits:
            parts = []
            for idx in (split.fit, split.early_stop, split.valid):
                chunk = -(-len(idx) // n_workers)
                parts.append(
                    (
                        da.from_array(data[idx], chunks=(chunk, -1)),
                        da.from_array(y_j[idx], chunks=chunk),
                    )
                )
            dfit = dxgb.DaskDMatrix(client, *parts[0])
            des = dxgb.DaskDMatrix(client, *parts[1])
            out = dxgb.train(
                client,
                xgb_params(*point, seed=0),
                dfit,
                num_boost_round=n_estimators,
                evals=[(des, "early_stop")],
                early_stopping_rounds=30,
                verbose_eval=False,
            )
            dxgb.inplace_predict(client, out["booster"], parts[2][0]).compute()
    t_dask = time.perf_counter() - t0
    return {
        "models": len(grid) * len(splits),
        "tasks": t_tasks,
        "xgboost_dask": t_dask,
        "ratio": t_dask / t_tasks,
    }


def bench_cnn(address: str, n_jobs: int, work: Path) -> dict:
    """N tiny train_cnn jobs: sequential fresh processes vs N concurrent cluster submissions."""
    import pandas as pd

    from pipeline.config.schema import load_config
    from pipeline.data.contract import read_labels
    from pipeline.data.folds import make_folds
    from stages.train_cnn import run
    from tests.conftest import tiny_config_text, write_dataset

    write_dataset(work, n_train=120, n_test=24, size=32)
    cfg_path = work / "tiny.toml"
    cfg_path.write_text(
        tiny_config_text(work, epochs=2).replace(
            "n_folds = 3\n[train]", f"n_folds = {n_jobs}\n[train]", 1
        )
    )
    table = read_labels(work / "train")
    folds = work / "folds.csv"
    pd.DataFrame({"image": table.ids, "fold": make_folds(table.y, n_jobs, 0)}).to_csv(
        folds, index=False
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("DASK_SCHEDULER", None)
    t0 = time.perf_counter()
    for k in range(n_jobs):
        argv = [
            sys.executable,
            "-m",
            "stages.train_cnn",
            "--config",
            str(cfg_path),
            "--backbone",
            "small_cnn",
        ]
        argv += [
            "--fold",
            str(k),
            "--folds",
            str(folds),
            "--work-dir",
            str(work / f"s{k}"),
            "--out",
            str(work / f"s{k}.npz"),
        ]
        subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
    t_serial = time.perf_counter() - t0
    cfg = load_config(cfg_path)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_jobs) as pool:
        jobs = [
            pool.submit(
                run_remote,
                run,
                cfg,
                "small_cnn",
                k,
                folds,
                work / f"c{k}",
                work / f"c{k}.npz",
                address=address,
                resources="auto",
                isolate=True,
            )
            for k in range(n_jobs)
        ]
        for job in jobs:
            job.result()
    t_cluster = time.perf_counter() - t0
    for k in range(n_jobs):
        with np.load(work / f"s{k}.npz") as a, np.load(work / f"c{k}.npz") as b:
            if not all(np.array_equal(a[key], b[key]) for key in a.files):
                raise RuntimeError(f"train_cnn fold {k}: cluster output differs from the local one")
    return {"jobs": n_jobs, "serial": t_serial, "cluster": t_cluster, "ratio": t_serial / t_cluster}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--labels", type=int, default=15)
    ap.add_argument("--columns", type=int, default=12, help="base columns (backbone x epoch)")
    ap.add_argument("--top-n", type=int, default=6)
    ap.add_argument("--n-estimators", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--xgb-dask", action="store_true", help="also time xgboost.dask on one label")
    ap.add_argument("--cnn-jobs", type=int, default=0, help="also time N tiny train_cnn jobs")
    ap.add_argument("--out", type=Path, default=Path("build/bench/dask.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "WARNING"))

    X, y, features = make_oof(args.rows, args.labels, args.columns, args.top_n)
    scratch = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        t0 = time.perf_counter()
        cluster = start_cluster(scratch / "cluster", args.workers, threads=1, port=free_port())
        startup = time.perf_counter() - t0
        with connect(cluster.address) as client:
            extra, t_serial, t_cluster = bench_grid(X, y, features, client, args.n_estimators)
            result = {"serial": t_serial, "cluster": t_cluster, "ratio": t_serial / t_cluster}
            if args.xgb_dask:
                result["xgb_dask_vs_tasks"] = bench_xgb_dask(
                    X, y, features, client, args.n_estimators
                )
        if args.cnn_jobs:
            result["cnn"] = bench_cnn(cluster.address, args.cnn_jobs, scratch / "cnn")
    finally:
        stop_cluster(scratch / "cluster")
        shutil.rmtree(scratch, ignore_errors=True)
    result.update(
        extra,
        shape=[args.rows, args.labels, args.columns],
        grid=GRID,
        workers=args.workers,
        threads_per_worker=1,
        cluster_startup=startup,
        load_average=os.getloadavg(),
        cpus=os.cpu_count(),
        machine=platform.machine(),
        python=platform.python_version(),
    )
    write_json_atomic(args.out, result)
    line = (
        f"stack grid ({extra['n_tasks']} tasks): serial {t_serial:.1f}s, {args.workers}-worker "
        f"cluster {t_cluster:.1f}s, ratio {result['ratio']:.2f}"
    )
    if "xgb_dask_vs_tasks" in result:
        r = result["xgb_dask_vs_tasks"]
        line += f"; xgboost.dask {r['xgboost_dask']:.1f}s vs tasks {r['tasks']:.1f}s"
    if "cnn" in result:
        line += f"; train_cnn x{args.cnn_jobs}: ratio {result['cnn']['ratio']:.2f}"
    print(f"{line} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
