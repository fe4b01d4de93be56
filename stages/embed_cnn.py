"""`make embed-cnn`: one fine-tuned CNN fold's final checkpoint embeds every train and test
image once -> ``build/<config>/embed/cnn.<backbone>.fold<k>.npz``, the features Two-Flow,
the scikit-learn baseline and similarity search read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import CACHE_HELP, add_fold_args, cli


def main(argv: list[str] | None = None) -> int:
    from pipeline.data.image_cache import open_cache
    from pipeline.models.cnn_embed import embed_fold

    ap = argparse.ArgumentParser(description=__doc__)
    add_fold_args(ap)
    ap.add_argument("--backbone", required=True, help="the fine-tuned backbone to embed with")
    ap.add_argument(
        "--cnn-work-dir",
        type=Path,
        required=True,
        help="that backbone's fold work dir (build/<name>/cnn/<backbone>.fold<k>)",
    )
    ap.add_argument("--out", type=Path, required=True, help="embedding file (.npz)")
    ap.add_argument("--image-cache", type=Path, help=CACHE_HELP)
    args = ap.parse_args(argv)
    return cli(
        tensorflow=True,
        body=lambda: embed_fold(
            load_config(args.config),
            args.backbone,
            args.fold,
            args.folds,
            args.cnn_work_dir,
            args.out,
            open_cache(args.image_cache),
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
