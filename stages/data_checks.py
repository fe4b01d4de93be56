"""`make data-checks`: the data report (build/<name>/data_report.json), made again whenever
the training or test files change: every image decodes completely, copies among the
training images (grouped into one fold by `make folds`), and test images that copy a
training image exactly, nearly or mirrored (a leak the held-out scores would flatter)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.artifacts import save_data_report
from pipeline.config.schema import Config, load_config
from pipeline.data.contract import read_dataset
from pipeline.data.duplicates import duplicate_report, validate_images
from pipeline.data.folds import read_folds
from stages.common import cli

log = logging.getLogger("stages.data_checks")


def run(cfg: Config, folds_csv: Path, out: Path) -> dict:
    """Validate every train and test image, find copies, write the report."""
    t0 = time.perf_counter()
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    train_prints = validate_images(ds.train.paths(), ds.train_csv, "check train images")
    test_prints = validate_images(ds.test_paths(), ds.test_list, "check test images")
    _, info = duplicate_report(ds, train_prints, test_prints, cfg.folds.near_duplicates)
    cross = info["train_test_near_duplicates"]
    if cross["count"]:
        first = cross["pairs"][0]
        log.warning(
            "%d test image(s) copy a training image (%s), e.g. test %r ~ train %r%s; their "
            "test scores flatter the models (pairs in %s)",
            cross["count"],
            "pixels, either orientation"
            + (
                f", or pHash within {cfg.folds.near_duplicates} bits"
                if cfg.folds.near_duplicates >= 0
                else ""
            ),
            first["test"],
            first["train"],
            " (mirrored)" if first.get("mirrored") else "",
            out,
        )
    folds = read_folds(folds_csv, ds.train.ids, cfg.folds.n_folds)
    info["fold_sizes"] = np.bincount(folds, minlength=cfg.folds.n_folds).tolist()
    info["seconds"] = round(time.perf_counter() - t0, 2)
    save_data_report(out, info)
    log.info(
        "data checks: %d train + %d test images decode; %d train copy group(s); %d test "
        "image(s) copying train -> %s",
        len(ds.train.ids),
        len(ds.test_ids),
        info["train_groups"]["all"],
        cross["count"],
        out,
    )
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--folds", type=Path, required=True, help="the folds CSV (make folds)")
    ap.add_argument("--out", type=Path, required=True, help="data report JSON")
    args = ap.parse_args(argv)
    return cli(lambda: run(load_config(args.config), args.folds, args.out))


if __name__ == "__main__":
    sys.exit(main())
