"""Load every (backbone, epoch) prediction column and pick, per label, the ones worth stacking.

DESIGN step 5 (Ding & Wan, seed 002): per label, rank all (backbone, epoch) OOF columns by
that label's best-threshold F-beta, and keep the top N whose pairwise correlation is below a
threshold, at most one epoch per backbone. Why both rules: neighbouring epochs of one model
are nearly the same predictor, and a stacker fed ten copies of one model learns nothing a
single copy would not tell it while overfitting the OOF rows more.

Shapes used throughout: ``C`` prediction columns (one per (backbone, epoch)), ``L`` labels,
``K`` CNN folds. OOF predictions are (n_train, C, L); test predictions are (K, n_test, C, L)
because each fold's CNN predicts the test set on its own (the vote in DESIGN step 8 is over
those K fold models).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import load_fold_predictions
from pipeline.metrics import (
    check_labels,
    fbeta_threshold_curves,
    select_threshold,
    threshold_grid,
)

log = logging.getLogger(__name__)

Column = tuple[str, int]
"""One prediction column: (backbone name, epoch number)."""

_FOLD_IN_NAME = re.compile(r"\.fold(\d+)\.npz$")


@dataclass(frozen=True, eq=False)
class BasePredictions:
    """Every base model's per-epoch predictions, aligned on image ids.

    Attributes:
        columns: (backbone, epoch) of each of the C prediction columns, backbones in the
            order given, epochs ascending.
        oof: (n_train, C, L) float32; row i is ``train_ids[i]`` as predicted by the one fold
            model that held it out.
        test: (K, n_test, C, L) float32; ``test[k]`` is fold k's models' test predictions.
        train_ids: (n_train,) str, the order of ``oof`` rows.
        test_ids: (n_test,) str, the order of ``test`` rows.
        labels: the L label names, in column order.
    """

    columns: list[Column]
    oof: np.ndarray
    test: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray
    labels: list[str]


def group_pred_files(paths: Sequence[str | Path]) -> dict[str, list[Path]]:
    """``build/x/preds/<member>.fold<k>.npz`` files -> {member: [files by fold]}, the
    ``pred_files`` of :func:`load_base_predictions`."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for p in map(Path, paths):
        stem = p.name.removesuffix(".npz")
        backbone, sep, fold = stem.rpartition(".fold")
        if not sep or not fold.isdigit():
            raise ValueError(f"{p}: prediction files must be named <backbone>.fold<k>.npz")
        groups.setdefault(backbone, []).append((int(fold), p))
    return {b: [p for _, p in sorted(v)] for b, v in groups.items()}


def load_base_predictions(
    pred_files: Mapping[str, Sequence[str | Path]], train_ids: np.ndarray
) -> BasePredictions:
    """Assemble all backbones' fold files into one OOF cube and one test cube.

    Args:
        pred_files: backbone -> its K fold files in fold order (``<backbone>.fold<k>.npz``;
            a ``fold<k>`` in a file name must match its position). Every backbone must have
            the same K, and fold k must hold out the same ids for every backbone (they all
            read ``folds/folds.csv``).
        train_ids: the training image ids, in the order the OOF rows should have
            (``labels.csv`` order).

    Returns:
        The aligned predictions. Epochs missing from any fold of a backbone (a fold still
        training, or resumed with fewer epochs) are dropped for that backbone, with a warning,
        so every column has a prediction for every row.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: naming the file, when a train id is held out twice or never, an id is not
            a train id, labels or test ids differ between files, folds disagree, or a
            backbone's folds share no epoch.
    """
    train_ids = np.asarray(train_ids).astype(str)
    if len(np.unique(train_ids)) != len(train_ids):
        raise ValueError("train_ids holds duplicate ids; fix labels.csv")
    if not pred_files:
        raise ValueError("no prediction files given; list at least one backbone")
    row_of = {image: i for i, image in enumerate(train_ids)}
    n_folds = {len(files) for files in pred_files.values()}
    if len(n_folds) != 1 or 0 in n_folds:
        counts = {name: len(files) for name, files in pred_files.items()}
        raise ValueError(f"every backbone needs the same number (> 0) of fold files, got {counts}")
    (n_folds,) = n_folds

    labels: list[str] | None = None
    test_ids: np.ndarray | None = None
    fold_val_ids: list[np.ndarray] | None = None
    first_file: Path | None = None
    columns: list[Column] = []
    oof_blocks: list[np.ndarray] = []  # each (n_train, E_b, L)
    test_blocks: list[np.ndarray] = []  # each (K, n_test, E_b, L)

    for backbone, files in pred_files.items():
        paths = [Path(f) for f in files]
        datas = []
        for k, path in enumerate(paths):
            match = _FOLD_IN_NAME.search(path.name)
            if match and int(match.group(1)) != k:
                raise ValueError(
                    f"{path} is listed as fold {k} of {backbone!r}; list fold files in fold order"
                )
            data = load_fold_predictions(path)
            file_labels = data["labels"].astype(str).tolist()
            file_test_ids = data["test_ids"].astype(str)
            if labels is None:
                labels, test_ids, first_file = file_labels, file_test_ids, path
            if file_labels != labels:
                raise ValueError(
                    f"{path}: labels {file_labels} differ from {first_file}'s {labels}"
                )
            if not np.array_equal(file_test_ids, test_ids):
                raise ValueError(f"{path}: test ids differ from {first_file}'s (order included)")
            datas.append(data)

        # Every train id held out exactly once across this backbone's folds.
        seen = np.full(len(train_ids), -1, dtype=np.int64)
        rows_per_fold = []
        for k, (path, data) in enumerate(zip(paths, datas, strict=True)):
            val_ids = data["val_ids"].astype(str).tolist()
            rows = np.empty(len(val_ids), dtype=np.int64)
            for i, image in enumerate(val_ids):
                row = row_of.get(image)
                if row is None:
                    raise ValueError(f"{path}: val id {image!r} is not a training image id")
                if seen[row] >= 0:
                    where = paths[seen[row]] if seen[row] != k else path
                    raise ValueError(
                        f"{path}: val id {image!r} is already held out by {where}; "
                        "each training row must be in exactly one fold"
                    )
                seen[row] = k
                rows[i] = row
            rows_per_fold.append(rows)
        if (seen < 0).any():
            missing = train_ids[seen < 0]
            raise ValueError(
                f"{len(missing)} training id(s), e.g. {str(missing[0])!r}, are in no fold file of "
                f"{backbone!r} ({', '.join(str(p) for p in paths)}); re-run `make train-cnn`"
            )
        val_sets = [np.sort(data["val_ids"].astype(str)) for data in datas]
        if fold_val_ids is None:
            fold_val_ids = val_sets
        for k, (path, ids) in enumerate(zip(paths, val_sets, strict=True)):
            if not np.array_equal(ids, fold_val_ids[k]):
                raise ValueError(
                    f"{path}: fold {k} holds out other ids than fold {k} of the first backbone; "
                    "every backbone must be trained on folds/folds.csv"
                )

        # Epochs present in all K folds, ascending.
        common = sorted(set.intersection(*(set(d["epochs"].tolist()) for d in datas)))
        if not common:
            raise ValueError(
                f"the fold files of {backbone!r} share no epoch: {[str(p) for p in paths]}"
            )
        for path, data in zip(paths, datas, strict=True):
            extra = sorted(set(data["epochs"].tolist()) - set(common))
            if extra:
                log.warning(
                    "%s: epochs %s are not in every fold of %s; dropped", path, extra, backbone
                )

        n_labels = len(labels)
        oof = np.empty((len(train_ids), len(common), n_labels), dtype=np.float32)
        test = np.empty((n_folds, len(test_ids), len(common), n_labels), dtype=np.float32)
        for k, (data, rows) in enumerate(zip(datas, rows_per_fold, strict=True)):
            pos = {int(e): i for i, e in enumerate(data["epochs"])}
            take = [pos[e] for e in common]
            oof[rows] = data["oof"][take].transpose(1, 0, 2)
            test[k] = data["test"][take].transpose(1, 0, 2)
        oof_blocks.append(oof)
        test_blocks.append(test)
        columns.extend((backbone, int(e)) for e in common)
        log.info("%s: %d fold(s), %d epoch(s) %s", backbone, n_folds, len(common), common)

    return BasePredictions(
        columns=columns,
        oof=np.concatenate(oof_blocks, axis=1),
        test=np.concatenate(test_blocks, axis=2),
        train_ids=train_ids,
        test_ids=test_ids,
        labels=labels,
    )


@dataclass(frozen=True, eq=False)
class Selection:
    """The per-label column selection, with the scores behind it.

    Attributes:
        columns: (backbone, epoch) of all C candidate columns.
        indices: per label, the kept column indices, best first.
        scores: (C, L) best-threshold OOF F-beta of every column for every label.
        thresholds: (C, L) the thresholds at which ``scores`` were reached.
        beta, top_n, corr_threshold: the rule that produced it.
    """

    columns: list[Column]
    indices: list[np.ndarray]
    scores: np.ndarray
    thresholds: np.ndarray
    beta: float
    top_n: int
    corr_threshold: float

    def to_dict(self, labels: Sequence[str]) -> dict[str, Any]:
        """JSON-ready record: per label, the kept columns with their F-beta and threshold."""
        if len(labels) != len(self.indices):
            raise ValueError(f"{len(labels)} label names for {len(self.indices)} labels")
        return {
            "beta": self.beta,
            "top_n": self.top_n,
            "corr_threshold": self.corr_threshold,
            "columns": [[name, epoch] for name, epoch in self.columns],
            "labels": {
                label: [
                    {
                        "column": int(c),
                        "backbone": self.columns[c][0],
                        "epoch": self.columns[c][1],
                        "fbeta": float(self.scores[c, j]),
                        "threshold": float(self.thresholds[c, j]),
                    }
                    for c in self.indices[j]
                ]
                for j, label in enumerate(labels)
            },
            "scores": self.scores.tolist(),
            "thresholds": self.thresholds.tolist(),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Selection:
        """Inverse of :meth:`to_dict` (label order is the record's order)."""
        return cls(
            columns=[(str(name), int(epoch)) for name, epoch in record["columns"]],
            indices=[
                np.array([kept["column"] for kept in entries], dtype=np.int64)
                for entries in record["labels"].values()
            ],
            scores=np.asarray(record["scores"], dtype=np.float64),
            thresholds=np.asarray(record["thresholds"], dtype=np.float64),
            beta=float(record["beta"]),
            top_n=int(record["top_n"]),
            corr_threshold=float(record["corr_threshold"]),
        )


def column_scores(
    oof: np.ndarray, y: np.ndarray, beta: float = 2.0, step: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Best-threshold F-beta (and its threshold) of every column for every label: (C, L) each.

    Rows whose label is unknown (NaN) are left out of that label's score.
    """
    oof, y = _check_oof(oof, y)
    _, n_columns, n_labels = oof.shape
    scores = np.zeros((n_columns, n_labels))
    thresholds = np.zeros((n_columns, n_labels))
    grid = threshold_grid(step)
    for j in range(n_labels):  # one vectorised pass per label: every column at once
        known = ~np.isnan(y[:, j])
        y_rep = np.repeat(y[known, j][:, None], n_columns, axis=1)
        _, curves = fbeta_threshold_curves(y_rep, oof[known, :, j], beta=beta, step=step)
        for c in range(n_columns):
            best = select_threshold(curves[:, c], grid)
            scores[c, j], thresholds[c, j] = curves[best, c], grid[best]
    return scores, thresholds


def _standardise(p: np.ndarray) -> np.ndarray:
    """Columns of ``p`` (n, C) centred and scaled to unit norm; a constant column becomes 0.

    Then the Pearson correlation of two columns is their dot product. A constant column has
    correlation 0 with everything: it carries no ranking that another column could repeat.
    """
    centred = p - p.mean(axis=0)
    norm = np.linalg.norm(centred, axis=0)
    return np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)


def select_columns(
    oof: np.ndarray,
    y: np.ndarray,
    columns: Sequence[Column],
    beta: float = 2.0,
    top_n: int = 10,
    corr_threshold: float = 0.9,
    step: float = 0.01,
) -> Selection:
    """Per label, keep the best-ranked columns that are diverse enough to be worth stacking.

    For label j, columns are ranked by their best-threshold F-beta on that label's known OOF
    rows (ties: lower column index first). Walking the ranking, a candidate is kept only if
    no kept column comes from the same backbone (at most one epoch per model) and its
    Pearson correlation with every kept column, on label j's OOF probabilities over all
    rows, is below ``corr_threshold``. The walk stops after ``top_n`` kept columns.

    Args:
        oof: (n, C, L) OOF predictions (``BasePredictions.oof``).
        y: (n, L) labels, 1/0/NaN.
        columns: (backbone, epoch) of each of the C columns.
        beta: F-beta's beta (2 for the competition's F2).
        top_n: the most columns kept per label.
        corr_threshold: a candidate correlated at or above this with a kept column is skipped.
        step: threshold grid step of the F-beta search.

    Returns:
        The selection: ``indices[j]`` are label j's kept column indices, best first.
    """
    oof, y = _check_oof(oof, y)
    columns = [(str(name), int(epoch)) for name, epoch in columns]
    if len(columns) != oof.shape[1]:
        raise ValueError(f"{len(columns)} column names for {oof.shape[1]} OOF columns")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    scores, thresholds = column_scores(oof, y, beta=beta, step=step)
    indices = []
    for j in range(oof.shape[2]):
        ranking = np.argsort(-scores[:, j], kind="stable")
        z = _standardise(oof[:, :, j].astype(np.float64))
        kept: list[int] = []
        for c in ranking:
            if len(kept) == top_n:
                break
            if any(columns[k][0] == columns[c][0] for k in kept):
                continue
            if kept and np.max(z[:, kept].T @ z[:, c]) >= corr_threshold:
                continue
            kept.append(int(c))
        indices.append(np.array(kept, dtype=np.int64))
    return Selection(
        columns=columns,
        indices=indices,
        scores=scores,
        thresholds=thresholds,
        beta=float(beta),
        top_n=int(top_n),
        corr_threshold=float(corr_threshold),
    )


def flatten_columns(preds: np.ndarray) -> np.ndarray:
    """(..., C, L) predictions -> (..., C*L) features; column c, label l lands at ``c*L + l``.

    One big matrix for the stacker, which takes per-label index arrays into it
    (:func:`feature_indices`), instead of L copies of overlapping feature matrices.
    """
    preds = np.asarray(preds)
    return preds.reshape(*preds.shape[:-2], preds.shape[-2] * preds.shape[-1])


def feature_indices(indices: Sequence[np.ndarray], n_labels: int) -> list[np.ndarray]:
    """Per label j, the indices into :func:`flatten_columns` output of j's features.

    Label j's features are its selected columns' predictions for ALL labels (DESIGN step 6):
    a base model's other-label outputs tell the stacker about co-occurring attributes.
    Order: selected column (best first), then label.
    """
    return [
        (np.asarray(cols, dtype=np.int64)[:, None] * n_labels + np.arange(n_labels)).ravel()
        for cols in indices
    ]


def features_for_label(preds: np.ndarray, indices_j: np.ndarray) -> np.ndarray:
    """Label j's feature matrix: (..., C, L) predictions -> (..., n_sel*L).

    Equal to ``flatten_columns(preds)[..., feature_indices(...)[j]]``.
    """
    preds = np.asarray(preds)
    return flatten_columns(preds[..., np.asarray(indices_j, dtype=np.int64), :])


def feature_names(columns: Sequence[Column], labels: Sequence[str]) -> list[str]:
    """Names of the :func:`flatten_columns` features, ``backbone@epoch:label``, for reports."""
    return [f"{name}@{epoch}:{label}" for name, epoch in columns for label in labels]


def _check_oof(oof: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    oof = np.asarray(oof)
    y = check_labels(y)
    if oof.ndim != 3 or oof.shape[0] != y.shape[0] or oof.shape[2] != y.shape[1]:
        raise ValueError(
            f"OOF predictions must be (n, C, L) = ({y.shape[0]}, C, {y.shape[1]}), got {oof.shape}"
        )
    return oof, y
