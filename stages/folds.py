"""`make folds`: labels.csv -> folds CSV (``image,fold``) by iterative stratification."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config, load_config
from pipeline.data import (
    check_disjoint,
    image_paths,
    read_labels,
    read_test_ids,
    validate_images,
    write_csv_atomic,
)
from pipeline.folds import make_folds
from stages.common import cli

log = logging.getLogger("stages.folds")


def run(cfg: Config, out: Path) -> None:
    """Validate the whole data set once (ids, labels, every image decodes), then split."""
    table = read_labels(cfg.data.train_dir, cfg.data.id_column)
    train_csv = Path(cfg.data.train_dir) / "labels.csv"
    test_ids, test_dir = read_test_ids(cfg.data.test_dir, cfg.data.id_column)
    test_csv = Path(cfg.data.test_dir) / "test.csv"
    check_disjoint(table.ids, test_ids, train_csv, test_csv)
    validate_images(table.paths(), train_csv, "check train images")
    validate_images(image_paths(test_ids, test_dir), test_csv, "check test images")
    folds = make_folds(table.y, cfg.folds.n_folds, cfg.folds.seed)
    write_csv_atomic(pd.DataFrame({"image": table.ids, "fold": folds}), out)
    sizes = np.bincount(folds, minlength=cfg.folds.n_folds)
    log.info("%d images -> %d folds of %s rows: %s", len(folds), len(sizes), sizes.tolist(), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    return cli(lambda: run(load_config(args.config), args.out))


if __name__ == "__main__":
    sys.exit(main())
