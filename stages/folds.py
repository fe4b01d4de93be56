"""`make folds`: labels.csv -> folds CSV (``image,fold``) by iterative stratification."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config, load_config
from pipeline.data import read_labels, write_csv_atomic
from pipeline.folds import make_folds
from stages.common import cli

log = logging.getLogger("stages.folds")


def run(cfg: Config, out: Path) -> None:
    table = read_labels(cfg.data.train_dir, cfg.data.id_column)
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
