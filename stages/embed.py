"""`make embed`: one frozen pretrained backbone embeds every train and test image once
(native resolution, flip TTA) -> ``build/<config>/embed/<name>.npz``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import CACHE_HELP, cli


def main(argv: list[str] | None = None) -> int:
    from pipeline.data.image_cache import open_cache
    from pipeline.members.frozen import run_embed

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--name", required=True, help="the [[frozen]] entry to embed with")
    ap.add_argument("--out", type=Path, required=True, help="embedding file (.npz)")
    ap.add_argument("--image-cache", type=Path, help=CACHE_HELP)
    args = ap.parse_args(argv)
    return cli(
        tensorflow=True,
        body=lambda: run_embed(
            load_config(args.config), args.name, args.out, open_cache(args.image_cache)
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
