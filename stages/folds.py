"""`make folds`: labels.csv -> folds CSV (``image,fold``) by duplicate-aware iterative
stratification, after the full data-contract check; also writes the data report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import save_data_report, write_csv_atomic
from pipeline.config import Config, load_config
from pipeline.data import read_dataset
from pipeline.duplicates import duplicate_report, validate_images
from pipeline.folds import make_folds
from stages.common import cli

log = logging.getLogger("stages.folds")


def run(cfg: Config, out: Path, report: Path | None = None) -> None:
    """Validate the whole data set once (ids, files, train/test disjoint by id, path and
    bytes, every image decodes completely), group duplicates, then split."""
    t0 = time.perf_counter()
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    train_prints = validate_images(ds.train.paths(), ds.train_csv, "check train images")
    test_prints = validate_images(ds.test_paths(), ds.test_list, "check test images")
    groups, info = duplicate_report(ds, train_prints, test_prints, cfg.folds.near_duplicates)
    folds = make_folds(ds.train.y, cfg.folds.n_folds, cfg.folds.seed, groups)
    g = info["train_groups"]
    log.info(
        "%d training images: %d duplicate group(s) (%d exact) with %d rows kept in one fold "
        "each, %d with conflicting labels",
        len(folds),
        g["all"],
        g["exact"],
        g["rows_in_groups"],
        g["with_conflicting_labels"],
    )
    conflicts = info["conflicting_labels"]
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
    cross = info["train_test_near_duplicates"]
    if cross["count"]:
        first = cross["pairs"][0]
        log.warning(
            "%d test image(s) nearly copy a training image (pHash within %d bits), e.g. test "
            "%r ~ train %r; their test scores flatter the models (pairs in the data report)",
            cross["count"],
            cfg.folds.near_duplicates,
            first["test"],
            first["train"],
        )
    sizes = np.bincount(folds, minlength=cfg.folds.n_folds)
    info["fold_sizes"] = sizes.tolist()
    info["seconds"] = round(time.perf_counter() - t0, 2)
    if report is not None:
        save_data_report(report, info)
    write_csv_atomic(pd.DataFrame({"image": ds.train.ids, "fold": folds}), out)
    log.info("%d images -> %d folds of %s rows: %s", len(folds), len(sizes), sizes.tolist(), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--report",
        type=Path,
        default=None,
        help="data report JSON: duplicate groups, train/test near copies (build/<name>/data_report.json)",
    )
    args = ap.parse_args(argv)
    return cli(lambda: run(load_config(args.config), args.out, args.report))


if __name__ == "__main__":
    sys.exit(main())
