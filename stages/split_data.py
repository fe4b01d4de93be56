"""`make` split for data sets without a test part: labels.csv -> train/ + test/ + truth.

    python -m stages.split_data --src ../shared/data/clothing-attributes \\
        --out data/clothing_attributes --fraction 0.2 --seed 0

Writes OUT/train/labels.csv, OUT/test/test.csv, OUT/test_truth.csv (read only by the final
evaluation) and OUT/SPLIT.json; OUT/train/images and OUT/test/images are absolute symlinks
to SRC/images (nothing is copied). Seeded multi-label iterative stratification.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.data.datasets.split import split_holdout
from stages.common import cli


def run(src: Path, out: Path, fraction: float, seed: int, overwrite: bool = False) -> None:
    split_holdout(src, out, fraction=fraction, seed=seed, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stages.split_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--src", type=Path, required=True, help="train folder: labels.csv + images/")
    ap.add_argument("--out", type=Path, required=True, help="folder to write (replaced whole)")
    ap.add_argument("--fraction", type=float, default=0.2, help="share held out (default 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--overwrite", action="store_true", help="replace an OUT this tool did not write"
    )
    args = ap.parse_args(argv)
    return cli(lambda: run(args.src, args.out, args.fraction, args.seed, args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
