"""``make demo-data``: draw the procedural demo data set (see :mod:`pipeline.demo`).

Example::

    python -m stages.demo_data --out data/demo --n-train 3000 --n-test 600 --size 64 --seed 0

The set is built beside the target (``DIR.tmp-<pid>``) and renamed into place at the end,
so an interrupted run leaves no half data set.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pipeline.demo.dataset import generate

log = logging.getLogger(__name__)


def run(
    out: Path, n_train: int, n_test: int, size: int, seed: int, workers: int, progress: bool
) -> dict:
    """Generate the demo set into ``out`` and log a one-line summary with prevalences."""
    t0 = time.perf_counter()
    summary = generate(out, n_train, n_test, size, seed, workers=workers, progress=progress)
    prev = " ".join(f"{k}={v:.3f}" for k, v in summary["prevalence"].items())
    log.info(
        "demo data %s: %d train + %d test images, %dpx, seed %d, %.1fs; train prevalence: %s",
        out,
        n_train,
        n_test,
        size,
        seed,
        time.perf_counter() - t0,
        prev,
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.demo_data",
        description="Draw the procedural clothing-attribute demo data set "
        "(train/labels.csv, test/test.csv, test_truth.csv, masks/, skin_masks/, meta.csv).",
    )
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    parser.add_argument("--n-train", type=int, default=3000, help="train images (default 3000)")
    parser.add_argument("--n-test", type=int, default=600, help="test images (default 600)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes drawing images (same bytes for any value)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run(
            args.out,
            args.n_train,
            args.n_test,
            args.size,
            args.seed,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
