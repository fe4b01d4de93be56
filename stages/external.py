"""`make external`: a teammate's OOF + test predictions ([[external]] in the config),
checked against our folds CSV and data set, written as the member's K fold files.

    python -m stages.external --config C --name timm_b3 --input teammates/timm_b3.csv \
        --folds folds/<name>.csv --out build/<name>/external/timm_b3.fold0.npz ...

All K files or none: a refused file exits 2 with one ``error:`` line naming the file, the
row and the fix, and leaves no fold file behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import cli


def run(config: Path, name: str, source: Path, folds: Path, outs: list[Path]) -> None:
    from pipeline.members.external import run_external

    run_external(load_config(config), name, source, folds, outs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--name", required=True, help="the [[external]] member's name")
    ap.add_argument("--input", type=Path, required=True, help="its exchange file (.csv / .npz)")
    ap.add_argument("--folds", type=Path, required=True, help="folds CSV from `make folds`")
    ap.add_argument(
        "--out", type=Path, nargs="+", required=True, help="one fold file per fold, in fold order"
    )
    args = ap.parse_args(argv)
    return cli(lambda: run(args.config, args.name, args.input, args.folds, args.out))


if __name__ == "__main__":
    sys.exit(main())
