"""Benchmark: the export's XGBoost second level scored in NumPy (``BoosterArrays``) against
``xgboost``'s own ``Booster.inplace_predict``.

    python -m benchmarks.bench_xgb_trees --out build/bench/xgb_trees.json

A per-label XGBoost stacker (``PerLabelXGBStacker``, one grid point) is fitted on a
synthetic (rows, columns x labels) OOF matrix and saved as ``make stack`` saves it; both
scorers then read the same JSON files and score the same rows: 1 and 8 rows (a page
request) and a whole test set. Also timed, in fresh processes: importing ``xgboost`` (which
imports scikit-learn) against importing the NumPy module, which is what a cold ``make
predict`` no longer pays. The run fails loudly unless the two agree within 1e-6. Writes
the JSON atomically and prints one summary line.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.bench_predict import p50, timed_command
from pipeline.artifacts import write_json_atomic
from pipeline.ensemble.stack import PerLabelXGBStacker
from pipeline.runtime.xgb_trees import BoosterArrays


def _import_s(module: str, repeats: int) -> float:
    """Median wall time of ``python -c 'import <module>'`` minus a bare interpreter's."""

    def median(code: str) -> float:
        return statistics.median(
            timed_command([sys.executable, "-c", code]) for _ in range(repeats)
        )

    return median(f"import {module}") - median("pass")


def run(rows: int, columns: int, labels: int, folds: int, repeats: int, seed: int) -> dict:
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    y = (rng.random((rows, labels)) < rng.uniform(0.05, 0.4, labels)).astype(np.float64)
    # each label's columns carry its own signal; the others are noise
    P = rng.random((rows, columns, labels)) * 0.6 + 0.4 * y[:, None, :]
    X = P.reshape(rows, columns * labels).astype(np.float32)
    stacker = PerLabelXGBStacker(
        eta=0.1, max_depth=3, min_child_weight=1, n_folds=folds, seed=seed
    ).fit(X, y)
    with tempfile.TemporaryDirectory() as tmp:
        stacker.save(Path(tmp) / "xgb")
        files = [
            [Path(tmp) / "xgb" / f"label{j}.fold{k}.json" for k in range(len(n))]
            for j, n in enumerate(stacker.n_trees_)
        ]
        ours = [[BoosterArrays.load(f) for f in fs] for fs in files]
        theirs = []
        for fs in files:
            boosters = []
            for f in fs:
                b = xgb.Booster(params={"nthread": 1})
                b.load_model(str(f))
                boosters.append(b)
            theirs.append(boosters)
    cols = stacker.features_

    def score(models, batch, call):
        return np.stack(
            [
                np.mean([call(b, batch[:, c]) for b in bs], axis=0)
                for bs, c in zip(models, cols, strict=True)
            ],
            axis=1,
        )

    result = {
        "benchmark": "xgb_trees",
        "labels": labels,
        "boosters": int(sum(len(n) for n in stacker.n_trees_)),
        "trees": int(sum(sum(n) for n in stacker.n_trees_)),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "xgboost": xgb.__version__,
    }
    largest = 0.0
    test = rng.random((rows, columns, labels)).reshape(rows, -1).astype(np.float32)
    for name, n in (("1", 1), ("8", 8), ("all", rows)):
        batch = test[:n]

        def ours_fn(batch=batch):
            return score(ours, batch, lambda b, x: b.predict(x))

        def theirs_fn(batch=batch):
            return score(theirs, batch, lambda b, x: b.inplace_predict(x))

        # the first calls warm both up and are compared
        largest = max(largest, float(np.max(np.abs(ours_fn() - theirs_fn()))))
        result[f"numpy_{name}_rows_s"] = p50(ours_fn, repeats)
        result[f"xgboost_{name}_rows_s"] = p50(theirs_fn, repeats)
    if largest > 1e-6:
        raise SystemExit(f"bench-xgb-trees: NumPy and xgboost differ by {largest:.3g}")
    result["largest_difference"] = largest
    result["test_rows"] = rows
    result["import_xgboost_s"] = _import_s("xgboost", 3)
    result["import_numpy_trees_s"] = _import_s("pipeline.runtime.xgb_trees", 3)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300, help="training rows = test rows")
    ap.add_argument("--columns", type=int, default=6, help="base columns per label")
    ap.add_argument("--labels", type=int, default=15)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("build/bench/xgb_trees.json"))
    args = ap.parse_args(argv)
    result = run(args.rows, args.columns, args.labels, args.folds, args.repeats, args.seed)
    write_json_atomic(args.out, result)
    ms = {k: v * 1e3 for k, v in result.items() if k.endswith("_rows_s")}
    print(
        f"bench-xgb-trees: {result['boosters']} boosters ({result['trees']} trees); "
        f"one row {ms['numpy_1_rows_s']:.2f} ms NumPy vs {ms['xgboost_1_rows_s']:.2f} ms "
        f"xgboost; 8 rows {ms['numpy_8_rows_s']:.2f} vs {ms['xgboost_8_rows_s']:.2f} ms; "
        f"{result['test_rows']} rows {ms['numpy_all_rows_s']:.1f} vs "
        f"{ms['xgboost_all_rows_s']:.1f} ms; import {result['import_numpy_trees_s']:.2f} s "
        f"vs {result['import_xgboost_s']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
