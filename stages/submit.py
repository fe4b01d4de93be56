"""`make submit`: per-fold stacked probabilities -> thresholds -> votes -> majority -> CSV."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.artifacts import load_stacked, load_thresholds, write_csv_atomic
from pipeline.config import Config, load_config
from stages.common import cli

log = logging.getLogger("stages.submit")


def run(cfg: Config, stacked: Path, thresholds: Path, out: Path, out_labels: Path) -> None:
    from pipeline.data import read_test_ids
    from pipeline.submit import (
        fold_votes,
        labels_frame,
        majority_vote,
        submission_frame,
        validate_submission,
    )

    z = load_stacked(stacked)
    labels = [str(s) for s in z["labels"]]
    test_ids, test = z["test_ids"], z["test"]
    th = load_thresholds(thresholds, labels, against=stacked)
    expected_ids, _ = read_test_ids(cfg.data.test_dir, cfg.data.id_column, check_images=False)
    votes = fold_votes(test, th["thresholds"])
    final = majority_vote(votes, cfg.submit.tie)
    df = submission_frame(test_ids, final, labels, cfg.data.id_column)
    validate_submission(df, expected_ids, labels, cfg.data.id_column)
    write_csv_atomic(df, out)
    write_csv_atomic(labels_frame(test_ids, final, labels), out_labels)
    log.info(
        "submission: %d images x %d labels, %d fold votes, mean %.2f labels/image -> %s",
        len(df),
        len(labels),
        votes.shape[0],
        final.sum(1).mean(),
        out,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--stacked", type=Path, required=True)
    ap.add_argument("--thresholds", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--out-labels", type=Path, required=True)
    args = ap.parse_args(argv)
    return cli(
        lambda: run(
            load_config(args.config), args.stacked, args.thresholds, args.out, args.out_labels
        )
    )


if __name__ == "__main__":
    sys.exit(main())
