"""`make submit`: per-fold stacked probabilities -> thresholds -> votes -> majority -> CSV.

With a sample submission (``submit.sample_submission``, or ``sample_submission.csv`` in
the test folder) ``--out`` follows its ids, order, columns and label encoding; without
one it is the wide 0/1 frame. ``--out-labels`` is always ``image_id,labels`` in test order.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.artifacts import load_stacked, load_thresholds, save_submission
from pipeline.config.schema import SAMPLE_SUBMISSION_NAME, Config, load_config
from stages.common import cli

log = logging.getLogger("stages.submit")


def run(cfg: Config, stacked: Path, thresholds: Path, out: Path, out_labels: Path) -> None:
    from pipeline.data.contract import read_sample_submission, read_test_ids
    from pipeline.ensemble.submit import (
        fold_votes,
        format_like_sample,
        labels_frame,
        majority_vote,
        sample_format,
        submission_frame,
        validate_against_sample,
        validate_submission,
    )

    z = load_stacked(stacked)
    labels = [str(s) for s in z["labels"]]
    test_ids, test = z["test_ids"], z["test"]
    th = load_thresholds(thresholds, labels, against=stacked)
    expected_ids, image_dir = read_test_ids(
        cfg.data.test_dir, cfg.data.id_column, check_images=False
    )
    votes = fold_votes(test, th["thresholds"])
    final = majority_vote(votes, cfg.submit.tie)
    df = submission_frame(test_ids, final, labels, cfg.data.id_column)
    validate_submission(df, expected_ids, labels, cfg.data.id_column)
    sample = cfg.sample_submission_path()
    if cfg.submit.sample_submission and not sample.is_file():
        raise FileNotFoundError(
            f"{sample} does not exist (submit.sample_submission); point it at the "
            "competition's sample submission, or set it to '' for the wide 0/1 format"
        )
    layout = "wide 0/1 + labels"
    if sample.is_file():
        frame, id_column = read_sample_submission(sample, cfg.data.id_column)
        fmt = sample_format(frame, sample, labels, id_column)
        # where the test ids came from (read_test_ids), for the error messages
        test_dir = Path(cfg.data.test_dir)
        test_list = next(
            (p for p in (test_dir / "test.csv", test_dir / SAMPLE_SUBMISSION_NAME) if p.is_file()),
            image_dir,
        )
        df = format_like_sample(fmt, test_ids, final, labels, test_list)
        validate_against_sample(df, fmt, labels)
        layout = f"{fmt.kind} as {sample}"
    save_submission(out, df)
    save_submission(out_labels, labels_frame(test_ids, final, labels))
    log.info(
        "submission (%s): %d images x %d labels, %d fold votes, mean %.2f labels/image -> %s",
        layout,
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
