"""`make train-cnn`: train one (backbone, fold) job; write its per-epoch OOF + test predictions.

With ``--sibling FOLD WORK_DIR OUT`` (repeatable) the same process then trains those folds
of the backbone too, reusing the compiled model (``pipeline.train.session``): Make passes a
backbone's other folds, so ``make train-cnn`` traces each backbone once per process, while
each fold's file stays its own target (``make <that file>`` trains that fold alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import Config, load_config
from stages.common import CACHE_HELP, cli, import_tensorflow_quietly


def run(
    cfg: Config,
    backbone: str,
    fold: int,
    folds_csv: Path,
    work_dir: Path,
    out: Path,
    augmented: Path | None = None,
    image_cache: Path | None = None,
    siblings: list[tuple[int, Path, Path]] | tuple = (),
    quiet_import: bool = False,
):
    from pipeline.data.image_cache import open_cache
    from pipeline.train.fold import is_trained, train_folds
    from pipeline.train.job import build_job
    from pipeline.train.session import shared_session

    runs = [
        (build_job(cfg, backbone, k, folds_csv, augmented), Path(w), Path(o))
        for k, w, o in [(fold, work_dir, out), *siblings]
    ]
    if quiet_import and not all(is_trained(job, w) for job, w, _ in runs):
        import_tensorflow_quietly()
    train_folds(runs, open_cache(image_cache), shared_session())


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
    ap.add_argument(
        "--sibling",
        nargs=3,
        action="append",
        default=[],
        metavar=("FOLD", "WORK_DIR", "OUT"),
        help="then train this fold of the backbone too, in this process, unless it is done "
        "or another process is training it (repeatable)",
    )
    args = ap.parse_args(argv)
    siblings = [(int(k), Path(w), Path(o)) for k, w, o in args.sibling]
    # with DASK_SCHEDULER set, the same call runs as one task on the cluster (shared paths),
    # in a job process the worker keeps: its next fold jobs reuse the compiled models
    from pipeline.distributed import maybe_remote, scheduler_address

    local = scheduler_address() is None
    return cli(
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
            siblings,
            local,
            keep_process=True,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
