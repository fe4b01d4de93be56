"""`make segmenter`: fit the garment segmenter on the training split's pixel-level maps
-> ``build/<config>/segmenter.npz`` (read by ``make augment`` through
``augment.mask_model``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import cli


def main(argv: list[str] | None = None) -> int:
    from pipeline.augment.segment import run_segmenter

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="segmenter file (.npz)")
    args = ap.parse_args(argv)
    return cli(tensorflow=True, body=lambda: run_segmenter(load_config(args.config), args.out))


if __name__ == "__main__":
    sys.exit(main())
