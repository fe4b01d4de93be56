"""`make frozen`: one frozen-feature member's head for one CNN fold, fitted on the other
folds' embeddings; OOF + test predictions in the CNN format, and the head's state. The
pseudo-labelled twins (`<member>_pl`, ``[pseudo]``) also take ``--teacher``: every base
member's fold files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import add_fold_args, cli


def main(argv: list[str] | None = None) -> int:
    from pipeline.members.frozen_fit import run_frozen_fold

    ap = argparse.ArgumentParser(description=__doc__)
    add_fold_args(ap)
    ap.add_argument("--member", required=True, help="<frozen name>_<head>, e.g. mnv2_224_logistic")
    ap.add_argument("--embedding", type=Path, required=True, help="from `make embed`")
    ap.add_argument("--out", type=Path, required=True, help="predictions .npz (CNN format)")
    ap.add_argument("--head-out", type=Path, help="where to keep the fitted head (.npz)")
    ap.add_argument(
        "--teacher", type=Path, nargs="*", default=(), help="a twin's teacher: base fold files"
    )
    args = ap.parse_args(argv)
    return cli(
        lambda: run_frozen_fold(
            load_config(args.config),
            args.member,
            args.fold,
            args.folds,
            args.embedding,
            args.out,
            args.head_out,
            args.teacher,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
