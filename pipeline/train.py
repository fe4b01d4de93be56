"""Fold training: data feed from image files, per-epoch OOF + test predictions, resume.

One call of :func:`train_fold` trains one (backbone, fold) job. After every epoch it
predicts the held-out fold and the test set (with horizontal-flip TTA), saves them, and
checkpoints model + optimizer, so a killed job restarts at its last finished epoch and
gives the same predictions as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import code_deps
from pipeline.artifacts import save_fold_predictions, save_npz_atomic, write_atomic
from pipeline.config import Config
from pipeline.data import load_image
from pipeline.inference import (
    checkpoints,
    embed,
    epoch_weights_path,
    last_checkpoint,
    load_checkpoint,
    predict_paths,
)

log = logging.getLogger(__name__)

# The command that runs fold jobs (`make train-cnn`): its import closure is the code a
# job's result depends on (read as files here, never imported: the library does not
# import the CLI layer).
TRAIN_STAGE = "stages/train_cnn.py"


def epoch_indices(
    y: np.ndarray,
    seed: int,
    epoch: int,
    keep_fraction: float = 0.8,
    rare_threshold: float = 0.05,
    rare_upsample: int = 2,
    prevalence: np.ndarray | None = None,
) -> np.ndarray:
    """Which training rows one epoch sees, in order; deterministic per (seed, epoch).

    Rows positive for a rare label (prevalence below ``rare_threshold``) are repeated
    ``rare_upsample`` times and always kept; the other rows are randomly down-sampled to
    ``keep_fraction`` (the seed's 80%), a fresh draw each epoch. ``prevalence`` (per
    label) defaults to ``y``'s; pass the original images' when ``y`` holds augmented
    copies, so a label made common by copies still counts as rare.
    """
    rng = np.random.default_rng([seed, epoch, 17])
    if prevalence is None:
        known = ~np.isnan(y)
        prevalence = np.nansum(y, axis=0) / np.maximum(known.sum(axis=0), 1)
    rare = np.asarray(prevalence) < rare_threshold
    is_rare_row = (np.nan_to_num(y[:, rare], nan=0.0) > 0).any(axis=1) if rare.any() else None
    if is_rare_row is None:
        is_rare_row = np.zeros(len(y), dtype=bool)
    common = np.flatnonzero(~is_rare_row)
    keep = common[rng.random(len(common)) < keep_fraction]
    rare_rows = np.repeat(np.flatnonzero(is_rare_row), rare_upsample)
    order = np.concatenate([keep, rare_rows])
    rng.shuffle(order)
    return order


def augment_image(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Random ±10% stretch, random crop back to ``size`` and horizontal flip."""
    import cv2

    sx, sy = rng.uniform(1.0, 1.2, size=2)  # stretch up to +20% then crop: net ±10% aspect
    w, h = max(size, round(size * sx)), max(size, round(size * sy))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    x0 = int(rng.integers(0, w - size + 1))
    y0 = int(rng.integers(0, h - size + 1))
    img = img[y0 : y0 + size, x0 : x0 + size]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def make_feed(
    paths: list[Path],
    y: np.ndarray,
    size: int,
    batch_size: int,
    order: np.ndarray | None = None,
    augment_seed: int | None = None,
    workers: int = 2,
):
    """The training feed: a ``keras.utils.PyDataset`` that decodes images batch by batch.

    Rows come in ``order`` (from :func:`epoch_indices`; default file order), augmented when
    ``augment_seed`` is given; the last partial batch is dropped. Predictions use
    ``pipeline.inference.prediction_feed``.
    """
    import keras

    if order is not None and len(order) >= batch_size:
        order = order[: len(order) - len(order) % batch_size]

    class ImageFeed(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
            self.order = np.arange(len(paths)) if order is None else order
            self.y = np.nan_to_num(y, nan=-1.0).astype(np.float32)

        def __len__(self):
            return int(np.ceil(len(self.order) / batch_size))

        def __getitem__(self, b):
            rows = self.order[b * batch_size : (b + 1) * batch_size]
            batch = np.empty((len(rows), size, size, 3), dtype=np.float32)
            for i, r in enumerate(rows):
                img = load_image(paths[r], size)
                if augment_seed is not None:
                    rng = np.random.default_rng([augment_seed, b, i])
                    img = augment_image(img, rng, size)
                batch[i] = img
            return batch, self.y[rows]

    return ImageFeed()


@dataclass(frozen=True)
class FoldJob:
    """Everything one (backbone, fold) training job needs; paths are absolute or cwd-relative."""

    backbone: str
    fold: int
    train_paths: list[Path]
    train_y: np.ndarray
    val_ids: np.ndarray
    val_paths: list[Path]
    test_ids: np.ndarray
    test_paths: list[Path]
    labels: tuple[str, ...]
    image_size: int
    epochs: int
    batch_size: int
    lr_min: float
    lr_max: float
    loss: str = "bce"
    pos_weight: float = 3.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    weights: str = "none"
    head_layers: int = 1
    head_units: int = 256
    width: int = 32
    bn_momentum: float = 0.9
    keep_fraction: float = 0.8
    rare_threshold: float = 0.05
    rare_upsample: int = 2
    tta_flip: bool = True
    seed: int = 0
    phases: tuple[Phase, ...] = ()
    unfreeze_top: float = 0.3
    prevalence: np.ndarray | None = None

    def epoch_order(self, epoch: int) -> np.ndarray:
        return epoch_indices(
            self.train_y,
            self.seed,
            epoch,
            self.keep_fraction,
            self.rare_threshold,
            self.rare_upsample,
            self.prevalence,
        )

    def phase_of(self, epoch: int) -> Phase:
        """The fine-tuning phase that 1-based ``epoch`` belongs to."""
        if not self.phases:
            return Phase("all", self.epochs, self.lr_min, self.lr_max)
        end = 0
        for phase in self.phases:
            end += phase.epochs
            if epoch <= end:
                return phase
        return self.phases[-1]


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one trainable scope and one learning-rate range.

    ``scope``: ``head`` (backbone frozen), ``top`` (the top ``unfreeze_top`` fraction of the
    backbone's layers trainable) or ``all``.
    """

    scope: str
    epochs: int
    lr_min: float
    lr_max: float


def parse_phases(specs, lr_min: float, lr_max: float) -> tuple[Phase, ...]:
    """``["head:1", "top:2:1e-4:1e-3", "all:3"]`` -> phases (lr range defaults to the backbone's)."""
    out = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 4) or parts[0] not in ("head", "top", "all"):
            raise ValueError(
                f"phase {spec!r}: write scope:epochs or scope:epochs:lr_min:lr_max, "
                "scope one of head, top, all"
            )
        try:
            epochs = int(parts[1])
            lo, hi = (float(parts[2]), float(parts[3])) if len(parts) == 4 else (lr_min, lr_max)
        except ValueError as exc:
            raise ValueError(f"phase {spec!r}: epochs must be an integer, rates numbers") from exc
        if epochs < 1 or not 0 < lo <= hi:
            raise ValueError(f"phase {spec!r}: needs epochs >= 1 and 0 < lr_min <= lr_max")
        out.append(Phase(parts[0], epochs, lo, hi))
    return tuple(out)


def build_job(
    cfg: Config, backbone: str, fold: int, folds_csv: Path, augmented: Path | None = None
) -> FoldJob:
    """Collect the rows, paths and settings of one fold job from the data and folds file.

    ``augmented``: the augmentation's labels.csv; only copies whose source image is outside
    this fold join the training rows (never validation), so OOF stays leak-free.
    """
    from pipeline.data import read_dataset
    from pipeline.folds import read_folds

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


def fold_embeddings(cfg: Config, backbone: str, fold: int, folds_csv, cnn_work_dir):
    """A fold job and the pooled embeddings of its fit / val / test images, all from fold
    ``fold``'s own final checkpoint (trained without fold ``fold``'s rows, so a model fit on
    the ``fit`` rows and scored on ``val`` stays out of fold): the input of the members fit
    on a CNN fold (Two-Flow, the baseline).

    Returns:
        ``(job, checkpoint path, {"fit": (n_fit, D), "val": ..., "test": ...})``.
    """
    job = build_job(cfg, backbone, fold, Path(folds_csv))
    ckpt = last_checkpoint(cnn_work_dir)
    log.info("%s fold %d: embeddings from %s", backbone, fold, ckpt)
    cnn = load_checkpoint(ckpt)
    deep = {}
    for part, paths in (("fit", job.train_paths), ("val", job.val_paths), ("test", job.test_paths)):
        deep[part] = embed(ckpt, paths, job.image_size, job.batch_size, job.tta_flip, model=cnn)
        log.info("fold %d: embedded %d %s images -> %s", fold, len(paths), part, deep[part].shape)
    return job, ckpt, deep


def set_scope(model, scope: str, unfreeze_top: float = 0.3) -> None:
    """Make the head trainable and the feature extractor trainable per ``scope``."""
    from pipeline.backbones import feature_layers

    feats = feature_layers(model)
    cut = {"head": len(feats), "all": 0}.get(scope, int(round(len(feats) * (1 - unfreeze_top))))
    for i, layer in enumerate(feats):
        layer.trainable = i >= cut


def job_fingerprint(job: FoldJob) -> str:
    """Hash of everything a job's result depends on: its settings, its rows and the code
    (every file the training stage imports: Make's ``CODE_TRAIN_CNN``, the same closure).

    A work dir holding checkpoints of another fingerprint is stale (the config, the data or
    the training code changed since): resuming from it would mix old and new runs.
    """
    import dataclasses
    import hashlib

    h = hashlib.sha256()
    for f in dataclasses.fields(job):
        value = getattr(job, f.name)
        if isinstance(value, np.ndarray):
            h.update(f.name.encode() + np.ascontiguousarray(value).tobytes())
        else:
            h.update(f"{f.name}={value!r}".encode())
    for rel in code_deps.code_closure([TRAIN_STAGE]):
        h.update(rel.encode() + (code_deps.ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def _prepare_work_dir(work_dir: Path, job: FoldJob) -> None:
    """Keep a work dir to resume from only if it belongs to this exact job."""
    stamp = work_dir / "fingerprint.txt"
    fingerprint = job_fingerprint(job)
    if stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return
    stale = [p for p in work_dir.iterdir() if p.name != stamp.name]
    if stale:
        log.info("%s: inputs changed since its checkpoints were made; starting over", work_dir)
        for p in stale:
            p.unlink()
    stamp.write_text(fingerprint + "\n")


def _save_epoch_weights(model, work_dir: Path, epoch: int) -> None:
    # keras picks the format from the name: the temp file must end in .weights.h5 too
    write_atomic(epoch_weights_path(work_dir, epoch), model.save_weights, suffix=".weights.h5")


def _compile(model, job: FoldJob, phase: Phase, steps_per_epoch: int):
    import keras

    from pipeline.losses import MaskedMultiLabelLoss, TriangularCyclicLR

    set_scope(model, phase.scope, job.unfreeze_top)
    schedule = TriangularCyclicLR(phase.lr_min, phase.lr_max, half_cycle_steps=steps_per_epoch)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=MaskedMultiLabelLoss(job.loss, job.pos_weight, job.focal_gamma, job.focal_alpha),
        jit_compile=False,
    )


def train_fold(job: FoldJob, work_dir: str | Path, out_path: str | Path) -> dict:
    """Train one fold job, resuming from ``work_dir``; write the per-epoch predictions file.

    Output ``out_path`` (.npz): ``labels``, ``val_ids``, ``test_ids``, ``epochs``,
    ``oof`` (E, n_val, L), ``test`` (E, n_test, L), ``loss`` (E,).
    """
    import keras

    import pipeline.losses  # noqa: F401  (registers the loss and LR schedule for load_model)
    from pipeline.backbones import build_model

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    _prepare_work_dir(work_dir, job)
    keras.utils.set_random_seed(job.seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()

    ckpts = checkpoints(work_dir)
    steps = max(1, len(job.epoch_order(0)) // job.batch_size)
    if ckpts:
        start, path = ckpts[-1]
        model = keras.saving.load_model(path, compile=True)
        log.info("%s fold %d: resuming after epoch %d (%s)", job.backbone, job.fold, start, path)
        if not epoch_weights_path(work_dir, start).is_file():  # killed between the two saves
            _save_epoch_weights(model, work_dir, start)
    else:
        start = 0
        model = build_model(
            job.backbone,
            len(job.labels),
            job.image_size,
            job.weights,
            job.head_layers,
            job.head_units,
            job.width,
            seed=job.seed,
            bn_momentum=job.bn_momentum,
        )
        _compile(model, job, job.phase_of(1), steps)
    for epoch in range(start + 1, job.epochs + 1):
        t0 = time.perf_counter()
        if epoch > 1 and job.phase_of(epoch) != job.phase_of(epoch - 1):
            # a new phase: new trainable scope, fresh optimizer and LR cycle (the same
            # whether this process ran the previous epoch or resumed from its checkpoint)
            _compile(model, job, job.phase_of(epoch), steps)
            log.info(
                "%s fold %d: phase %s from epoch %d",
                job.backbone,
                job.fold,
                job.phase_of(epoch),
                epoch,
            )
        order = job.epoch_order(epoch)
        feed = make_feed(
            job.train_paths,
            job.train_y,
            job.image_size,
            job.batch_size,
            order=order,
            augment_seed=job.seed * 100_003 + epoch,
        )
        hist = model.fit(feed, epochs=epoch, initial_epoch=epoch - 1, verbose=0, shuffle=False)
        loss = float(hist.history["loss"][-1])
        t_train = time.perf_counter() - t0
        # one prediction pass over validation + test images: one traced shape, one call
        both = predict_paths(
            model, job.val_paths + job.test_paths, job.image_size, 256, job.tta_flip
        )
        oof, test = both[: len(job.val_paths)], both[len(job.val_paths) :]
        save_npz_atomic(
            work_dir / f"preds_epoch{epoch:03d}.npz", oof=oof, test=test, loss=np.float32(loss)
        )
        # the weights of every epoch stay (no optimizer state: a third of the size), so
        # `make serve` can score a new image with any epoch the stack selected
        _save_epoch_weights(model, work_dir, epoch)
        ckpt = work_dir / f"ckpt_epoch{epoch:03d}.keras"
        write_atomic(ckpt, model.save)
        for e, old in checkpoints(work_dir):
            if e < epoch:
                old.unlink(missing_ok=True)
        log.info(
            "%s fold %d epoch %d/%d: loss %.4f, %.0f img/s train, %.1fs total",
            job.backbone,
            job.fold,
            epoch,
            job.epochs,
            loss,
            len(order) / t_train,
            time.perf_counter() - t0,
        )
    oofs, tests, losses = [], [], []
    for epoch in range(1, job.epochs + 1):
        with np.load(work_dir / f"preds_epoch{epoch:03d}.npz") as z:
            oofs.append(z["oof"])
            tests.append(z["test"])
            losses.append(float(z["loss"]))
    save_fold_predictions(
        out_path,
        job.labels,
        job.val_ids,
        job.test_ids,
        epochs=np.arange(1, job.epochs + 1),
        oof=np.stack(oofs),
        test=np.stack(tests),
        loss=losses,
    )
    summary = {
        "backbone": job.backbone,
        "fold": job.fold,
        "epochs": job.epochs,
        "final_loss": losses[-1],
    }
    (work_dir / "done.json").write_text(json.dumps(summary))
    return summary
