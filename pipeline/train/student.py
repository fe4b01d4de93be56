"""The distilled student: one network trained to imitate the ensemble (``[student]``).

Targets (no row's own label informs its soft target; no test label is read):

- a training image: ``hard_weight`` x its label + (1 - ``hard_weight``) x the second
  level's out-of-fold probability (``stacked.npz``'s ``oof``, made without that row's
  label), unknown where its label is unknown;
- a test image: the ensemble's test probability (the mean of the K stacked folds).

It trains as one fold job of the training stage (``pipeline.train.fold.train_fold``: resume,
per-epoch weights and predictions, the code and data fingerprint), with the test images as
its "validation" rows, so its predictions file holds its test probabilities per epoch. No
resampling (every row once per epoch: the targets are not 0/1, so "a rare label's
positives" has no meaning) and plain binary cross-entropy. ``make export`` ships its last
epoch as the model ``student``.

Its thresholds (:func:`teacher_thresholds`) reproduce the teacher's decisions: per label the
cut at which the student's test probabilities best match (F-beta) the ensemble's own final
test labels (the fold vote of ``stacked.npz`` at ``thresholds.json``). Only predictions are
read, never a test label. The ensemble's thresholds do not carry over: the student's
probabilities are on another scale (measured on the demo: held-out F2 0.72 at the
ensemble's thresholds, 0.85 at the teacher-fitted ones).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.config.schema import STUDENT, Config
from pipeline.train.job import FoldJob


def soft_targets(y: np.ndarray, oof: np.ndarray, test: np.ndarray, hard_weight: float):
    """(n, L) training targets and (m, L) test targets (see the module docstring)."""
    y = np.asarray(y, dtype=np.float64)
    train = hard_weight * y + (1.0 - hard_weight) * np.asarray(oof, dtype=np.float64)
    train = np.where(np.isnan(y), np.nan, train)  # an unknown label stays unknown
    return train.astype(np.float32), np.asarray(test, dtype=np.float64).mean(axis=0).astype(
        np.float32
    )


def rows_of(ids, wanted) -> np.ndarray:
    """The positions in ``ids`` of each id of ``wanted`` (every one must be there)."""
    at = {str(i): r for r, i in enumerate(ids)}
    return np.array([at[str(i)] for i in wanted], dtype=np.int64)


def student_job(cfg: Config, stacked: dict) -> FoldJob:
    """The student's training job from the config and the stack's output (``load_stacked``)."""
    from pipeline.data.contract import read_dataset

    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    table = ds.train
    train_ids = [str(i) for i in table.ids]
    test_ids = [str(i) for i in ds.test_ids]
    stacked_train = [str(i) for i in stacked["train_ids"]]
    stacked_test = [str(i) for i in stacked["test_ids"]]
    if sorted(stacked_train) != sorted(train_ids) or sorted(stacked_test) != sorted(test_ids):
        raise ValueError(
            "stacked.npz is of other training or test images than the data set; re-run `make stack`"
        )
    if list(stacked["labels"].astype(str)) != list(table.labels):
        raise ValueError("stacked.npz has other labels than the data set; re-run `make stack`")
    tr = rows_of(stacked_train, train_ids)  # the data set's order
    te = rows_of(stacked_test, test_ids)
    s = cfg.student
    base = cfg.backbone(cfg.student_backbone)
    backbone = dataclasses.replace(
        base, name=STUDENT, arch=base.architecture, epochs=s.epochs or base.epochs
    )
    train_cfg = dataclasses.replace(cfg.train, loss="bce", keep_fraction=1.0, rare_upsample=1)
    y_train, y_test = soft_targets(
        table.y, stacked["oof"][tr], stacked["test"][:, te], s.hard_weight
    )
    test_paths = list(ds.test_paths())
    return FoldJob(
        backbone=backbone,
        train=train_cfg,
        fold=0,
        image_size=cfg.data.image_size,
        labels=table.labels,
        train_paths=list(table.paths()) + test_paths,
        train_y=np.concatenate([y_train, y_test]),
        val_ids=np.asarray(ds.test_ids),
        val_paths=test_paths,
        test_ids=np.asarray([], dtype=str),
        test_paths=[],
    )


def teacher_thresholds(
    student_test: np.ndarray,
    stacked_test: np.ndarray,
    thresholds: np.ndarray,
    tie: str,
    beta: float,
    step: float,
) -> np.ndarray:
    """(L,) per label the threshold at which the student's (m, L) test probabilities best
    reproduce (F-beta) the ensemble's final test labels: the majority of the K stacked
    folds' (K, m, L) votes at its ``thresholds``, as the submission. Rows must match."""
    from pipeline.metrics import best_threshold_fbeta
    from pipeline.runtime.ops import fold_votes, majority_vote

    teacher = majority_vote(fold_votes(stacked_test, thresholds), tie).astype(np.float64)
    return np.array(
        [
            best_threshold_fbeta(teacher[:, j], student_test[:, j], beta, step)[1]
            for j in range(teacher.shape[1])
        ]
    )
