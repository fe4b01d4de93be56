"""`make train-cnn`: train one (backbone, fold) job; write its per-epoch OOF + test predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import Config, load_config
from stages.common import CACHE_HELP, cli


def run(
    cfg: Config,
    backbone: str,
    fold: int,
    folds_csv: Path,
    work_dir: Path,
    out: Path,
    augmented: Path | None = None,
    image_cache: Path | None = None,
):
    from pipeline.image_cache import open_cache
    from pipeline.train import build_job, train_fold

    job = build_job(cfg, backbone, fold, folds_csv, augmented)
    train_fold(job, work_dir, out, open_cache(image_cache))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--folds", type=Path, required=True, help="folds CSV from `make folds`")
    ap.add_argument("--work-dir", type=Path, required=True, help="checkpoints, per-epoch files")
    ap.add_argument("--out", type=Path, required=True, help="per-epoch predictions .npz")
    ap.add_argument("--augmented", type=Path, help="augmentation labels.csv (make augment)")
    ap.add_argument("--image-cache", type=Path, help=CACHE_HELP)
    args = ap.parse_args(argv)
    # with DASK_SCHEDULER set, the same call runs as one task on the cluster (shared paths)
    from pipeline.distributed import maybe_remote, scheduler_address

    return cli(
        tensorflow=scheduler_address() is None,
        body=lambda: maybe_remote(
            run,
            load_config(args.config),
            args.backbone,
            args.fold,
            args.folds,
            args.work_dir,
            args.out,
            args.augmented,
            args.image_cache,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
