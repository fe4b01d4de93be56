"""`make baseline`: the scikit-learn baseline (logistic regression per label on a
backbone's embeddings) for one CNN fold; OOF + test predictions in the CNN format."""

from __future__ import annotations

import argparse
import sys

from pipeline.config.schema import load_config
from stages.common import add_fold_model_args, cli


def main(argv: list[str] | None = None) -> int:
    from pipeline.members.baseline import run_baseline_fold

    ap = argparse.ArgumentParser(description=__doc__)
    add_fold_model_args(ap, "are used")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    args = ap.parse_args(argv)
    return cli(
        lambda: run_baseline_fold(
            load_config(args.config),
            args.backbone,
            args.fold,
            args.folds,
            args.embedding,
            args.out,
            args.C,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
