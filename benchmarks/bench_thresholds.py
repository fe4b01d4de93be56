"""Benchmark: vectorised ``ThresholdSearch`` against the naive per-threshold loop.

    python -m benchmarks.bench_thresholds --n 50000 --labels 50 --out build/bench/thresholds.json

Both run in the same process on the same data (macro mode, the production setting); the
run fails loudly unless they choose identical thresholds. Writes the JSON atomically and
prints one summary line.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.reference_thresholds import naive_threshold_search
from pipeline.artifacts import write_json_atomic
from pipeline.ensemble.thresholds import ThresholdSearch


def make_scores(n: int, n_labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced random labels and scores that carry label-dependent signal, so each
    label's best threshold is somewhere inside (0, 1); 5% of label cells unknown."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < rng.uniform(0.01, 0.3, n_labels)).astype(np.float64)
    strength = rng.uniform(0.5, 2.5, n_labels)
    logits = strength * (2.0 * y - 1.0) + rng.normal(0.0, 1.0, (n, n_labels)) - 1.0
    p = 1.0 / (1.0 + np.exp(-logits))
    y[rng.random((n, n_labels)) < 0.05] = np.nan
    return p, y


def run(
    n: int, n_labels: int, naive_labels: int, repeats: int, seed: int, beta: float, step: float
) -> dict:
    """Time both implementations and check they agree; return the JSON payload."""
    p, y = make_scores(n, n_labels, seed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        search = ThresholdSearch(beta=beta, step=step, average="macro").fit(p, y)
        times.append(time.perf_counter() - start)
    ours = statistics.median(times)

    k = n_labels if naive_labels <= 0 else min(naive_labels, n_labels)
    start = time.perf_counter()
    reference = naive_threshold_search(p[:, :k], y[:, :k], beta=beta, step=step)
    baseline = (time.perf_counter() - start) * n_labels / k  # macro: labels are independent

    differ = np.flatnonzero(search.thresholds_[:k] != reference)
    if differ.size:
        raise RuntimeError(
            f"vectorised and naive thresholds differ at labels {differ.tolist()}: "
            f"ours {search.thresholds_[differ].tolist()}, naive {reference[differ].tolist()}"
        )
    result = {
        "ours": ours,
        "baseline": baseline,
        "ratio": baseline / ours,
        "identical": True,
        "n": n,
        "labels": n_labels,
        "average": "macro",
        "beta": beta,
        "step": step,
        "seed": seed,
        "ours_repeats": repeats,
        "ours_statistic": "median",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if k < n_labels:
        result["baseline_extrapolated_from_labels"] = k
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_thresholds", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=50_000, help="rows (images)")
    parser.add_argument("--labels", type=int, default=50, help="label columns")
    parser.add_argument(
        "--naive-labels",
        type=int,
        default=0,
        help="time the naive loop on the first K labels only and scale per label (0 = all)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beta", type=float, default=2.0)
    parser.add_argument("--step", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path("build/bench/thresholds.json"))
    args = parser.parse_args(argv)

    result = run(
        args.n, args.labels, args.naive_labels, args.repeats, args.seed, args.beta, args.step
    )
    write_json_atomic(args.out, result)
    scaled = (
        f" (naive on {result['baseline_extrapolated_from_labels']} labels, scaled)"
        if "baseline_extrapolated_from_labels" in result
        else ""
    )
    print(
        f"bench-thresholds: ours {result['ours']:.3f}s, naive {result['baseline']:.2f}s{scaled}, "
        f"ratio {result['ratio']:.0f}x, identical"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
