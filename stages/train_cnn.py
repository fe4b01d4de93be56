"""`make train-cnn`: train one (backbone, fold) job; write its per-epoch OOF + test predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pipeline.config import Config, load_config
from stages.common import cli


def build_job(
    cfg: Config, backbone: str, fold: int, folds_csv: Path, augmented: Path | None = None
):
    """Collect the rows, paths and settings of one fold job from the data and folds file.

    ``augmented``: the augmentation's labels.csv; only copies whose source image is outside
    this fold join the training rows (never validation), so OOF stays leak-free.
    """
    from pipeline.data import read_dataset
    from pipeline.folds import read_folds
    from pipeline.train import FoldJob, parse_phases

    b = cfg.backbone(backbone)
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    table, test_ids = ds.train, ds.test_ids
    folds = read_folds(folds_csv, table.ids, cfg.folds.n_folds)
    if not 0 <= fold < cfg.folds.n_folds:
        raise ValueError(f"fold {fold} is outside 0..{cfg.folds.n_folds - 1}")
    paths = table.paths()
    tr = folds != fold
    va = folds == fold
    train_paths = [p for p, t in zip(paths, tr, strict=True) if t]
    train_y = table.y[tr]
    known = ~np.isnan(train_y)
    prevalence = np.nansum(train_y, axis=0) / np.maximum(known.sum(axis=0), 1)
    if augmented is not None:
        from pipeline.augment import augmented_rows_for_fold

        _, aug_y, aug_paths = augmented_rows_for_fold(augmented, fold, labels=table.labels)
        train_paths += list(aug_paths)
        train_y = np.concatenate([train_y, np.asarray(aug_y, dtype=np.float32)])
    return FoldJob(
        backbone=backbone,
        fold=fold,
        train_paths=train_paths,
        train_y=train_y,
        prevalence=prevalence,
        val_ids=table.ids[va],
        val_paths=[p for p, v in zip(paths, va, strict=True) if v],
        test_ids=test_ids,
        test_paths=ds.test_paths(),
        labels=table.labels,
        image_size=cfg.data.image_size,
        epochs=b.epochs,
        batch_size=b.batch_size,
        lr_min=b.lr_min,
        lr_max=b.lr_max,
        loss=cfg.train.loss,
        pos_weight=cfg.train.pos_weight,
        focal_gamma=cfg.train.focal_gamma,
        focal_alpha=cfg.train.focal_alpha,
        weights=b.weights,
        head_layers=b.head_layers,
        head_units=b.head_units,
        width=b.width,
        bn_momentum=b.bn_momentum,
        phases=parse_phases(b.phases, b.lr_min, b.lr_max),
        unfreeze_top=b.unfreeze_top,
        keep_fraction=cfg.train.keep_fraction,
        rare_threshold=cfg.train.rare_threshold,
        rare_upsample=cfg.train.rare_upsample,
        tta_flip=cfg.train.tta_flip,
        seed=cfg.train.seed * 1000 + fold,
    )


def run(
    cfg: Config,
    backbone: str,
    fold: int,
    folds_csv: Path,
    work_dir: Path,
    out: Path,
    augmented: Path | None = None,
):
    from pipeline.train import train_fold

    job = build_job(cfg, backbone, fold, folds_csv, augmented)
    train_fold(job, work_dir, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--folds", type=Path, required=True, help="folds CSV from `make folds`")
    ap.add_argument("--work-dir", type=Path, required=True, help="checkpoints, per-epoch files")
    ap.add_argument("--out", type=Path, required=True, help="per-epoch predictions .npz")
    ap.add_argument("--augmented", type=Path, help="augmentation labels.csv (make augment)")
    args = ap.parse_args(argv)
    # with DASK_SCHEDULER set, the same call runs as one task on the cluster (shared paths)
    from pipeline.distributed import maybe_remote

    return cli(
        lambda: maybe_remote(
            run,
            load_config(args.config),
            args.backbone,
            args.fold,
            args.folds,
            args.work_dir,
            args.out,
            args.augmented,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
