"""`make folds`: labels.csv -> folds CSV (``image,fold``) by duplicate-aware iterative
stratification, after the data-contract check (`make data-checks` writes the data report)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import write_csv_atomic
from pipeline.config.schema import Config, load_config
from pipeline.data.contract import read_dataset
from pipeline.data.duplicates import train_copy_groups, validate_images
from pipeline.data.folds import make_folds
from stages.common import cli

log = logging.getLogger("stages.folds")


def run(cfg: Config, out: Path) -> None:
    """Check the data contract (ids, files, train/test disjoint by id, path and bytes),
    decode every training image completely, group its copies, then split. The test images
    are checked by `make data-checks`, which runs again whenever they change."""
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    train_prints = validate_images(ds.train.paths(), ds.train_csv, "check train images")
    groups, g = train_copy_groups(ds, train_prints, cfg.folds.near_duplicates)
    folds = make_folds(ds.train.y, cfg.folds.n_folds, cfg.folds.seed, groups)
    log.info(
        "%d training images: %d duplicate group(s) (%d exact) with %d rows kept in one fold "
        "each, %d with conflicting labels",
        len(folds),
        g["all"],
        g["exact"],
        g["rows_in_groups"],
        g["with_conflicting_labels"],
    )
    conflicts = g["conflicting_labels"]
    if conflicts:
        shown = "; ".join(
            f"{' = '.join(map(repr, c['ids'][:3]))}{' ...' if len(c['ids']) > 3 else ''} "
            f"({', '.join(c['labels'][:3])}{' ...' if len(c['labels']) > 3 else ''})"
            for c in conflicts[:3]
        )
        log.warning(
            "%d group(s) of copies of one photo (%d exact) have conflicting labels, e.g. %s; "
            "fix the labels in %s (every group is in the data report)",
            len(conflicts),
            sum(c["exact"] for c in conflicts),
            shown,
            ds.train_csv,
        )
    sizes = np.bincount(folds, minlength=cfg.folds.n_folds)
    write_csv_atomic(pd.DataFrame({"image": ds.train.ids, "fold": folds}), out)
    log.info("%d images -> %d folds of %s rows: %s", len(folds), len(sizes), sizes.tolist(), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    return cli(lambda: run(load_config(args.config), args.out))


if __name__ == "__main__":
    sys.exit(main())
