"""Teammates' models as members: an ``[[external]]`` exchange file -> our fold files.

A competition team merges models trained elsewhere (a PyTorch/timm net on a GPU box, a
teammate's LightGBM). They predict on *our* folds file, so their OOF rows are as leak-free
as our own members' and the nested CV can compare them fairly; this module checks that
they did, then writes the predictions as ordinary fold files (one "epoch"), so selection,
the second level and the report take the member like any other.

Checked against the data set (the format itself is checked by
:func:`pipeline.artifacts.load_external_predictions`): every row's image is a training or
a test image; every training image has exactly one OOF row, in the fold our folds CSV
gives it; every test image has one row per fold (that fold's model), or one row with no
fold (``-1`` / empty: the same predictions for every fold), never a mix. Each refusal
names the file, the row and the fix.

There is no model here, so `make predict` / `make serve` cannot score a new image with an
external member (:mod:`pipeline.predict` says so, naming the member).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import external_row

log = logging.getLogger(__name__)

SHARED = -1  # a test row's fold when its predictions serve every fold


@dataclass(frozen=True)
class ExternalFold:
    """One fold's share of an exchange file, in the fold-file layout."""

    val_ids: np.ndarray  # (n_val,) training ids of the fold, in labels.csv order
    oof: np.ndarray  # (n_val, L)
    test: np.ndarray  # (n_test, L), test.csv order


def external_config(cfg, name: str):
    """The ``[[external]]`` entry called ``name``."""
    for e in cfg.external:
        if e.name == name:
            return e
    known = [e.name for e in cfg.external]
    raise ValueError(f"{name!r} is not an [[external]] member of the config ({known})")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def split_external(
    data: dict[str, Any],
    train_ids: Sequence[str],
    folds: np.ndarray,
    test_ids: Sequence[str],
    n_folds: int,
    folds_path: str | Path = "the folds CSV",
    test_list: str | Path = "test.csv",
) -> list[ExternalFold]:
    """Check an exchange file read by :func:`pipeline.artifacts.load_external_predictions`
    against the data set, and cut it into ``n_folds`` folds.

    Args:
        data: the file's arrays (``image``, ``fold``, ``probs`` in our label order).
        train_ids: labels.csv ids, in order; ``folds`` (n,) their folds (``read_folds``).
        test_ids: the test ids, in order.
        folds_path, test_list: named in messages.

    Raises:
        ValueError: naming the file and row (or the labels.csv / test list row of a missing
            image) and the fix.
    """
    train_ids = np.asarray(train_ids).astype(str)
    test_ids = np.asarray(test_ids).astype(str)
    image, fold, probs = data["image"], data["fold"], data["probs"]
    tr = pd.Index(train_ids).get_indexer(image)  # row in labels.csv, -1 = not a train id
    te = pd.Index(test_ids).get_indexer(image)
    neither = (tr < 0) & (te < 0)
    if neither.any():
        i = _first(neither)
        raise ValueError(
            f"{external_row(data, i)}: image {str(image[i])!r} is neither a training image "
            f"(labels.csv) nor a test image ({test_list}); predict our images, ids as we "
            "write them"
        )
    high = fold >= n_folds
    if high.any():
        i = _first(high)
        raise ValueError(
            f"{external_row(data, i)}: fold {int(fold[i])}, but the config has {n_folds} folds "
            f"(0..{n_folds - 1}); use our folds CSV {folds_path}"
        )
    is_train = tr >= 0
    _check_train_rows(data, np.flatnonzero(is_train), tr, folds, train_ids, folds_path)
    test_rows = np.flatnonzero(~is_train)
    shared = _check_test_rows(data, test_rows, te, test_ids, n_folds, test_list)

    out = []
    train_rows = np.flatnonzero(is_train)
    order = np.argsort(tr[train_rows], kind="stable")  # labels.csv order, as our members
    train_rows = train_rows[order]
    for k in range(n_folds):
        val = train_rows[fold[train_rows] == k]
        want = SHARED if shared else k
        rows = test_rows[fold[test_rows] == want]
        test = np.empty((len(test_ids), probs.shape[1]))
        test[te[rows]] = probs[rows]
        out.append(ExternalFold(train_ids[tr[val]], probs[val], test))
    return out


def _check_train_rows(data, rows, tr, folds, train_ids, folds_path) -> None:
    """Every training image exactly once, in the fold our folds CSV gives it."""
    image, fold = data["image"], data["fold"]
    idx = tr[rows]
    wrong = fold[rows] != folds[idx]
    if wrong.any():
        i = int(rows[_first(wrong)])
        got = "no fold" if fold[i] == SHARED else f"fold {int(fold[i])}"
        raise ValueError(
            f"{external_row(data, i)}: training image {str(image[i])!r} has {got}, but "
            f"{folds_path} puts it in fold {int(folds[tr[i]])}; predict each training image "
            "with the model that did not see it, trained on our folds CSV"
        )
    dup = pd.Series(idx).duplicated().to_numpy()
    if dup.any():
        d = _first(dup)
        i, first = int(rows[d]), int(rows[_first(idx == idx[d])])
        raise ValueError(
            f"{external_row(data, i)}: training image {str(image[i])!r} again (first at "
            f"{data['row_word']} {first + data['row_base']}); write one OOF row per training "
            "image"
        )
    seen = np.zeros(len(train_ids), dtype=bool)
    seen[idx] = True
    if not seen.all():
        r = _first(~seen)
        raise ValueError(
            f"{data['path']}: training image {str(train_ids[r])!r} (labels.csv row {r + 2}) has no "
            f"OOF row; write one row per training image, fold = its fold in {folds_path}"
        )


def _check_test_rows(data, rows, te, test_ids, n_folds, test_list) -> bool:
    """One row per (test image, fold), or one per test image with no fold; returns True
    for the latter (shared predictions)."""
    image, fold = data["image"], data["fold"]
    kinds = fold[rows] == SHARED
    shared = bool(kinds[0]) if len(rows) else True
    mixed = kinds != shared
    if mixed.any():
        i, first = int(rows[_first(mixed)]), int(rows[0])
        raise ValueError(
            f"{external_row(data, i)}: test image {str(image[i])!r} "
            f"{'has fold ' + str(int(fold[i])) if shared else 'has no fold'}, but "
            f"{data['row_word']} {first + data['row_base']} "
            f"{'has none' if shared else 'has one'}; write either one test row per (image, "
            "fold) or one per image with an empty fold (-1), not both"
        )
    n_slots = 1 if shared else n_folds
    slot = te[rows] * n_slots + (0 if shared else fold[rows])
    dup = pd.Series(slot).duplicated().to_numpy()
    if dup.any():
        d = _first(dup)
        i, first = int(rows[d]), int(rows[_first(slot == slot[d])])
        what = "" if shared else f" for fold {int(fold[i])}"
        raise ValueError(
            f"{external_row(data, i)}: test image {str(image[i])!r}{what} again (first at "
            f"{data['row_word']} {first + data['row_base']}); write one row per test image"
            f"{'' if shared else ' and fold'}"
        )
    seen = np.zeros(len(test_ids) * n_slots, dtype=bool)
    seen[slot] = True
    if not seen.all():
        s = _first(~seen)
        r, k = divmod(s, n_slots)
        what = "" if shared else f" for fold {k}"
        raise ValueError(
            f"{data['path']}: test image {str(test_ids[r])!r} ({test_list} row {r + 2}) has no "
            f"row{what}; predict every test image"
            + ("" if shared else " with each fold's model (or once, with an empty fold)")
        )
    return shared


def run_external(cfg, name: str, source, folds_csv, outs: Sequence[str | Path]) -> None:
    """Check member ``name``'s exchange file ``source`` and write its fold files ``outs``
    (fold order): all of them or, on any error, none."""
    from pipeline.artifacts import load_external_predictions, save_single_epoch_predictions
    from pipeline.data.contract import read_labels, read_test_ids
    from pipeline.data.folds import read_folds

    external_config(cfg, name)
    n_folds = cfg.folds.n_folds
    if len(outs) != n_folds:
        raise ValueError(f"{name}: {len(outs)} output files for {n_folds} folds; give one per fold")
    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    folds = read_folds(folds_csv, table.ids, n_folds)
    test_ids, test_dir = read_test_ids(cfg.data.test_dir, cfg.data.id_column, check_images=False)
    test_csv = Path(cfg.data.test_dir) / "test.csv"
    test_list = test_csv if test_csv.is_file() else f"the file list of {test_dir}"
    data = load_external_predictions(source, table.labels)
    parts = split_external(data, table.ids, folds, test_ids, n_folds, folds_csv, test_list)
    written: list[Path] = []
    try:
        for out, part in zip(outs, parts, strict=True):
            save_single_epoch_predictions(
                out, table.labels, part.val_ids, test_ids, part.oof, part.test
            )
            written.append(Path(out))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    log.info(
        "%s: %s checked (%d OOF rows, %d test images) -> %d fold files",
        name,
        source,
        len(table.ids),
        len(test_ids),
        n_folds,
    )
