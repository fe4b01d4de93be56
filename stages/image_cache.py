"""`make` (the decode cache): decode every train, test and augmented image once into
``build/<name>/cache/images.<size>.npy`` (one per size the run reads) + ``images.index.json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import Config, load_config
from stages.common import cli


def run(cfg: Config, index: Path, sizes: list[int], augmented: Path | None = None) -> None:
    """Cache the data set's images (and the augmentation's copies, when it made any)."""
    from pipeline.data.contract import read_dataset
    from pipeline.data.image_cache import build_image_cache

    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    paths = ds.train.paths() + ds.test_paths()
    if augmented is not None and augmented.is_file():
        from pipeline.augment import augmented_rows_for_fold

        # fold -1 holds no source image: every copy, for every fold's training feed
        _, _, aug_paths = augmented_rows_for_fold(augmented, -1, labels=ds.train.labels)
        paths += list(aug_paths)
    build_image_cache(paths, sizes, index)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True, help="images.index.json to write")
    ap.add_argument("--sizes", type=int, nargs="+", required=True, help="image sides to cache")
    ap.add_argument("--augmented", type=Path, help="augmentation labels.csv (make augment)")
    args = ap.parse_args(argv)
    return cli(lambda: run(load_config(args.config), args.index, args.sizes, args.augmented))


if __name__ == "__main__":
    sys.exit(main())
