"""Fold training: data feed from image files, per-epoch OOF + test predictions, resume.

One call of :func:`train_fold` trains one (backbone, fold) job. After every epoch it
predicts the held-out fold and the test set (with horizontal-flip TTA), saves them, and
checkpoints model + optimizer, so a killed job restarts at its last finished epoch and
gives the same predictions as an uninterrupted run. What a job is (its rows, config
sections, seeds, phases, fingerprint) lives in :mod:`pipeline.train.job`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pipeline.artifacts import save_fold_predictions, save_npz_atomic, write_atomic
from pipeline.data.image_cache import ImageCache, read_image
from pipeline.models.inference import predict_paths
from pipeline.train.fold_dir import (
    DONE,
    LOCK,
    STAMP,
    TEST_STAMP,
    checkpoint_path,
    checkpoints,
    epoch_preds_path,
    epoch_weights_path,
)
from pipeline.train.job import FoldJob, job_fingerprint, test_fingerprint
from pipeline.train.session import FreshModels

log = logging.getLogger(__name__)


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
    cache: ImageCache | None = None,
):
    """The training feed: a ``keras.utils.PyDataset`` that decodes images batch by batch
    (reads them from ``cache``, the decode cache, when given: the same arrays).

    Rows come in ``order`` (from :func:`epoch_indices`; default file order), augmented when
    ``augment_seed`` is given; the last partial batch is dropped. Predictions use
    ``pipeline.models.inference.prediction_feed``.
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
                img = read_image(paths[r], size, cache)
                if augment_seed is not None:
                    rng = np.random.default_rng([augment_seed, b, i])
                    img = augment_image(img, rng, size)
                batch[i] = img
            return batch, self.y[rows]

    return ImageFeed()


def is_trained(job: FoldJob, work_dir: str | Path) -> bool:
    """Whether ``work_dir`` holds every epoch of this very job (fingerprint, ``done.json``
    and each epoch's files): its predictions file can be written without a model."""
    work_dir = Path(work_dir)
    if not (work_dir / DONE).is_file() or not _stamped(work_dir / STAMP, job_fingerprint(job)):
        return False
    if not _stamped(work_dir / TEST_STAMP, test_fingerprint(job)):
        return False
    last = checkpoint_path(work_dir, job.epochs)
    preds = [epoch_preds_path(work_dir, e) for e in range(1, job.epochs + 1)]
    return (
        last.is_file()
        and epoch_weights_path(work_dir, job.epochs).is_file()
        and all(p.is_file() for p in preds)
    )


def _stamped(stamp: Path, fingerprint: str) -> bool:
    return stamp.is_file() and stamp.read_text().strip() == fingerprint


def _prepare_work_dir(work_dir: Path, job: FoldJob) -> None:
    """Keep a work dir to resume from only if it belongs to this exact job."""
    stamp = work_dir / STAMP
    fingerprint = job_fingerprint(job)
    if _stamped(stamp, fingerprint):
        return
    stale = [p for p in work_dir.iterdir() if p.name not in (stamp.name, LOCK)]
    if stale:
        log.info("%s: inputs changed since its checkpoints were made; starting over", work_dir)
        for p in stale:
            p.unlink()
    stamp.write_text(fingerprint + "\n")
    (work_dir / TEST_STAMP).write_text(test_fingerprint(job) + "\n")


def _finished_epochs(work_dir: Path, epochs: int) -> list[int]:
    return [
        e
        for e in range(1, epochs + 1)
        if epoch_preds_path(work_dir, e).is_file() and epoch_weights_path(work_dir, e).is_file()
    ]


def _refresh_test_predictions(job: FoldJob, work_dir: Path, cache: ImageCache | None) -> bool:
    """A job whose training is unchanged but whose test set changed (an image replaced,
    added or removed): predict the new test set with each finished epoch's saved weights,
    as training did (validation + test rows in one pass), instead of training again.

    The weights are trusted only if they give the saved validation predictions again;
    otherwise (or without the weights) the work dir is cleared and the job trains anew.
    Returns whether the work dir is usable.
    """
    fingerprint = test_fingerprint(job)
    if _stamped(work_dir / TEST_STAMP, fingerprint):
        return True
    epochs = _finished_epochs(work_dir, job.epochs)
    if epochs:
        from pipeline.train.session import initial_model

        log.info(
            "%s fold %d: the test set changed; predicting it again with the weights of "
            "epochs %s (no training)",
            job.name,
            job.fold,
            epochs,
        )
        model = initial_model(job)
        for epoch in epochs:
            model.load_weights(epoch_weights_path(work_dir, epoch))
            both = predict_paths(
                model,
                job.val_paths + job.test_paths,
                job.image_size,
                256,
                job.train.tta_flip,
                cache,
            )
            path = epoch_preds_path(work_dir, epoch)
            with np.load(path) as z:
                oof, loss = z["oof"], z["loss"]
            if not np.allclose(both[: len(job.val_paths)], oof, atol=1e-5):
                log.warning(
                    "%s: epoch %d's weights do not give its saved validation predictions; "
                    "training again",
                    work_dir,
                    epoch,
                )
                (work_dir / STAMP).unlink()
                _prepare_work_dir(work_dir, job)
                return False
            save_npz_atomic(path, oof=oof, test=both[len(job.val_paths) :], loss=loss)
    (work_dir / TEST_STAMP).write_text(fingerprint + "\n")
    return True


def _save_epoch_weights(model, work_dir: Path, epoch: int) -> None:
    # keras picks the format from the name: the temp file must end in .weights.h5 too
    write_atomic(epoch_weights_path(work_dir, epoch), model.save_weights, suffix=".weights.h5")


def train_fold(
    job: FoldJob,
    work_dir: str | Path,
    out_path: str | Path,
    cache: ImageCache | None = None,
    models: FreshModels | None = None,
) -> dict:
    """Train one fold job, resuming from ``work_dir``; write the per-epoch predictions file.
    Images are read from ``cache`` (the decode cache) when given, else decoded per epoch.
    ``models``: where the compiled model comes from; a ``TrainSession`` reuses the compiled
    models of earlier jobs in this process (same outputs, no tracing), default fresh ones.

    Output ``out_path`` (.npz): ``labels``, ``val_ids``, ``test_ids``, ``epochs``,
    ``oof`` (E, n_val, L), ``test`` (E, n_test, L), ``loss`` (E,).
    """
    import keras

    import pipeline.models.backbones  # noqa: F401  (registers the custom layers for load_model)
    import pipeline.models.losses  # noqa: F401  (registers the loss and LR schedule for load_model)

    models = FreshModels() if models is None else models
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    _prepare_work_dir(work_dir, job)
    _refresh_test_predictions(job, work_dir, cache)
    if is_trained(job, work_dir):  # every epoch done (e.g. by a sibling run): no model needed
        log.info("%s fold %d: trained already (%s)", job.name, job.fold, work_dir)
        return _write_outputs(job, work_dir, out_path)
    models.seed(job.seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()

    ckpts = checkpoints(work_dir)
    steps = max(1, len(job.epoch_order(0)) // job.batch_size)
    model = None
    if ckpts:
        start, path = ckpts[-1]
        log.info("%s fold %d: resuming after epoch %d (%s)", job.name, job.fold, start, path)
        weights_saved = epoch_weights_path(work_dir, start).is_file()
        if start < job.epochs or not weights_saved:
            model = models.resume(job, steps, path, start)
        if not weights_saved:  # killed between the two saves
            _save_epoch_weights(model, work_dir, start)
    else:
        start = 0
        model = models.start(job, steps)
    for epoch in range(start + 1, job.epochs + 1):
        t0 = time.perf_counter()
        if epoch > 1 and job.phase_of(epoch) != job.phase_of(epoch - 1):
            # a new phase: new trainable scope, fresh optimizer and LR cycle (the same
            # whether this process ran the previous epoch or resumed from its checkpoint)
            model = models.next_phase(job, model, job.phase_of(epoch), steps)
            log.info(
                "%s fold %d: phase %s from epoch %d",
                job.name,
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
            augment_seed=job.augment_seed(epoch),
            cache=cache,
        )
        hist = model.fit(feed, epochs=epoch, initial_epoch=epoch - 1, verbose=0, shuffle=False)
        loss = float(hist.history["loss"][-1])
        t_train = time.perf_counter() - t0
        t1 = time.perf_counter()
        # one prediction pass over validation + test images: one traced shape, one call
        both = predict_paths(
            model, job.val_paths + job.test_paths, job.image_size, 256, job.train.tta_flip, cache
        )
        t_predict = time.perf_counter() - t1
        oof, test = both[: len(job.val_paths)], both[len(job.val_paths) :]
        save_npz_atomic(
            epoch_preds_path(work_dir, epoch), oof=oof, test=test, loss=np.float32(loss)
        )
        # the weights of every epoch stay (no optimizer state: a third of the size), so
        # `make serve` can score a new image with any epoch the stack selected
        _save_epoch_weights(model, work_dir, epoch)
        ckpt = checkpoint_path(work_dir, epoch)
        write_atomic(ckpt, model.save)
        for e, old in checkpoints(work_dir):
            if e < epoch:
                old.unlink(missing_ok=True)
        log.info(
            "%s fold %d epoch %d/%d: loss %.4f, %.0f img/s train, %.1fs total "
            "(fit %.1fs, predict %.1fs)",
            job.name,
            job.fold,
            epoch,
            job.epochs,
            loss,
            len(order) / t_train,
            time.perf_counter() - t0,
            t_train,
            t_predict,
        )
    return _write_outputs(job, work_dir, out_path)


def _write_outputs(job: FoldJob, work_dir: Path, out_path: str | Path) -> dict:
    """The per-epoch files of a trained fold -> its predictions file and ``done.json``."""
    oofs, tests, losses = [], [], []
    for epoch in range(1, job.epochs + 1):
        with np.load(epoch_preds_path(work_dir, epoch)) as z:
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
        "backbone": job.name,
        "fold": job.fold,
        "epochs": job.epochs,
        "final_loss": losses[-1],
    }
    (work_dir / DONE).write_text(json.dumps(summary))
    return summary


@contextlib.contextmanager
def _fold_lock(work_dir: Path, wait: bool) -> Iterator[bool]:
    """Hold ``work_dir``'s lock (an flock: released when the process dies); yields False
    without ``wait`` when another process holds it."""
    import fcntl

    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train_folds(
    runs: Sequence[tuple[FoldJob, str | Path, str | Path]],
    cache: ImageCache | None = None,
    models: FreshModels | None = None,
) -> list[dict]:
    """Train the first ``(job, work_dir, out_path)`` run, then the others ("siblings") in
    this same process, so they share ``models`` (a ``TrainSession``: traced once).

    The first run's file is always written. A sibling is skipped when its file is complete
    already, or when another process holds its work dir's lock: concurrent ``make -j``
    jobs of one backbone split the siblings between them, and Make's own job for a fold
    another process is training waits for that lock, then only writes the file.

    Returns the summaries of the runs trained or written here.
    """
    out = []
    for i, (job, work_dir, out_path) in enumerate(runs):
        work_dir, out_path = Path(work_dir), Path(out_path)
        with _fold_lock(work_dir, wait=i == 0) as held:
            if not held:
                log.info("%s fold %d: another process is training it", job.name, job.fold)
                continue
            if i and out_path.is_file() and is_trained(job, work_dir):
                continue
            if i:
                log.info("%s fold %d: trained in the same process (sibling)", job.name, job.fold)
            out.append(train_fold(job, work_dir, out_path, cache, models))
    return out
