"""A CNN fold job's work folder: the one module that knows its file names.

``build/<config>/cnn/<member>.fold<k>/`` (Make names it; :func:`fold_work_dir` is the same
path for readers that start from the build folder) holds, per finished epoch ``E``:

- ``ckpt_epoch<EEE>.keras``: model + optimizer, to resume after a kill (the last one kept);
- ``weights_epoch<EEE>.weights.h5``: the weights (every epoch kept: predict, re-predict);
- ``preds_epoch<EEE>.npz``: that epoch's OOF and test predictions;

and the job's stamps: ``fingerprint.txt`` (what it trained on), ``test_fingerprint.txt``
(the test set its predictions are of), ``done.json`` and the ``.lock`` of the process
training it. Writers (:mod:`pipeline.train.fold`) and readers (:mod:`pipeline.models.inference`,
:mod:`pipeline.models.cnn_embed`, :mod:`pipeline.predict`) take the names from here.
"""

from __future__ import annotations

from pathlib import Path

STAMP, TEST_STAMP = "fingerprint.txt", "test_fingerprint.txt"
DONE, LOCK = "done.json", ".lock"
_CKPT, _WEIGHTS, _PREDS = "ckpt_epoch", "weights_epoch", "preds_epoch"


def fold_work_dir(build: str | Path, member: str, fold: int) -> Path:
    """A fold job's folder inside a run's build folder."""
    return Path(build) / "cnn" / f"{member}.fold{fold}"


def checkpoint_path(work_dir: str | Path, epoch: int) -> Path:
    """Model + optimizer after ``epoch`` (to resume)."""
    return Path(work_dir) / f"{_CKPT}{epoch:03d}.keras"


def epoch_weights_path(work_dir: str | Path, epoch: int) -> Path:
    """The model weights after ``epoch`` (kept for every epoch)."""
    return Path(work_dir) / f"{_WEIGHTS}{epoch:03d}.weights.h5"


def epoch_preds_path(work_dir: str | Path, epoch: int) -> Path:
    """``epoch``'s OOF and test predictions."""
    return Path(work_dir) / f"{_PREDS}{epoch:03d}.npz"


def checkpoints(work_dir: str | Path) -> list[tuple[int, Path]]:
    """A fold work dir's checkpoints as (epoch, path), by epoch."""
    found = []
    for p in Path(work_dir).glob(f"{_CKPT}*.keras"):
        epoch = p.stem.removeprefix(_CKPT)
        if epoch.isdigit():
            found.append((int(epoch), p))
    return sorted(found)


def last_checkpoint(work_dir: str | Path) -> Path:
    """The highest-epoch checkpoint in a fold's work dir (its final model)."""
    found = checkpoints(work_dir)
    if not found:
        raise FileNotFoundError(
            f"{work_dir} holds no {_CKPT}*.keras; train that fold first (`make train-cnn`)"
        )
    return found[-1][1]
