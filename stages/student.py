"""`make student`: train the distilled student (``[student]``) on the ensemble's soft targets.

    python -m stages.student --config C --stacked build/<name>/stack/stacked.npz \
        --thresholds build/<name>/thresholds.json --work-dir build/<name>/student/work \
        --out build/<name>/student/student.npz \
        --thresholds-out build/<name>/student/thresholds.json \
        [--image-cache build/<name>/cache/images.index.json]

Writes the student's per-epoch test probabilities (``oof`` of the predictions file: the
test images are its validation rows) and its thresholds (``--thresholds-out``: fitted to
reproduce the ensemble's final test labels, ``pipeline.train.student.teacher_thresholds``), and
keeps its weights per epoch in the work folder, where ``make export`` takes the last epoch
from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import CACHE_HELP, cli


def run(
    config: Path,
    stacked: Path,
    thresholds: Path,
    work_dir: Path,
    out: Path,
    thresholds_out: Path,
    image_cache: Path | None,
):
    import numpy as np

    from pipeline.artifacts import load_stacked, load_thresholds, write_json_atomic
    from pipeline.data.image_cache import open_cache
    from pipeline.train.fold import train_fold
    from pipeline.train.student import rows_of, student_job, teacher_thresholds

    cfg = load_config(config)
    if not cfg.student.enabled:
        raise ValueError(f"{config}: [student] is not enabled; set `enabled = true` there")
    st = load_stacked(stacked)
    job = student_job(cfg, st)
    train_fold(job, work_dir, out, open_cache(image_cache))
    with np.load(out) as z:
        probs, ids = z["oof"][-1], [str(i) for i in z["val_ids"]]
    order = rows_of(st["test_ids"], ids)
    ens = load_thresholds(thresholds, list(job.labels))["thresholds"]
    th = teacher_thresholds(
        probs, st["test"][:, order], ens, cfg.submit.tie, cfg.thresholds.beta, cfg.thresholds.step
    )
    write_json_atomic(
        thresholds_out,
        {
            "labels": list(job.labels),
            "epoch": job.epochs,
            "thresholds": th.tolist(),
            "rule": "per label, the best F-beta match of the ensemble's final test labels",
        },
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--stacked", type=Path, required=True, help="stack/stacked.npz")
    ap.add_argument("--thresholds", type=Path, required=True, help="the ensemble's thresholds")
    ap.add_argument("--work-dir", type=Path, required=True, help="checkpoints, per-epoch files")
    ap.add_argument("--out", type=Path, required=True, help="per-epoch predictions .npz")
    ap.add_argument("--thresholds-out", type=Path, required=True, help="the student's thresholds")
    ap.add_argument("--image-cache", type=Path, help=CACHE_HELP)
    a = ap.parse_args(argv)
    return cli(
        lambda: run(
            a.config, a.stacked, a.thresholds, a.work_dir, a.out, a.thresholds_out, a.image_cache
        ),
        tensorflow=True,
    )


if __name__ == "__main__":
    sys.exit(main())
