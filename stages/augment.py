"""`make augment`: colour-change augmentation for rare labels (see :mod:`pipeline.augment`).

Example::

    python -m stages.augment --config configs/demo.toml --folds folds/demo.csv \\
        --out-dir build/augment --preview build/augment-preview.png

Reads ``[data] train_dir`` and the optional ``[augment]`` table of the config (every key
of :class:`pipeline.augment.AugmentConfig`; absent = defaults). Writes ``DIR/images/``,
``DIR/labels.csv`` (``image,source,fold,<labels>``), ``DIR/masks/`` and
``DIR/summary.json``, built in a temp folder and renamed into place.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.augment import AugmentConfig, preview_png, run_augmentation
from pipeline.config.schema import load_config
from stages.common import cli

log = logging.getLogger("stages.augment")


def load_settings(path: Path) -> tuple[Path, str, AugmentConfig]:
    """(train_dir, id_column, augment config) from the pipeline config."""
    from pipeline.data.contract import read_labels

    cfg = load_config(path)
    labels = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False).labels
    return Path(cfg.data.train_dir), cfg.data.id_column, cfg.augment.for_labels(labels)


def run(
    config: Path,
    folds: Path,
    out_dir: Path,
    masks_dir: Path | None = None,
    preview: Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Augment the config's train set into ``out_dir``; optionally draw the preview grid."""
    train_dir, id_column, cfg = load_settings(config)
    summary = run_augmentation(
        train_dir,
        folds,
        cfg,
        out_dir,
        masks_dir,
        id_column=id_column,
        workers=workers,
        progress=progress,
    )
    if preview is not None:
        if preview_png(out_dir, preview, train_dir=train_dir) is None:
            log.info("no copies, no preview written to %s", preview)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stages.augment",
        description="Colour-change augmentation for rare labels: recolour garments of rare-"
        "label images, rewrite their colour labels, keep each copy in its source's fold.",
    )
    ap.add_argument("--config", type=Path, required=True, help="pipeline TOML ([data], [augment])")
    ap.add_argument("--folds", type=Path, required=True, help="image,fold CSV of `make folds`")
    ap.add_argument("--out-dir", type=Path, required=True, help="output folder (replaced)")
    ap.add_argument(
        "--masks-dir",
        type=Path,
        default=None,
        help="user garment masks (overrides augment.mask_dir)",
    )
    ap.add_argument(
        "--preview",
        type=Path,
        default=None,
        help="also write a PNG grid of originals | mask | copies",
    )
    ap.add_argument(
        "--workers", type=int, default=1, help="processes (output does not depend on it)"
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    return cli(
        lambda: run(
            args.config,
            args.folds,
            args.out_dir,
            args.masks_dir,
            args.preview,
            args.workers,
            not args.no_progress,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
