"""K folds by multi-label iterative stratification, made once and read by every stage.

Duplicate-aware: rows given the same group (exact or near copies of one photo) always land
in one fold, so a copy never trains the model that predicts its twin out of fold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_folds(
    y: np.ndarray, n_folds: int = 5, seed: int = 42, groups: np.ndarray | None = None
) -> np.ndarray:
    """Assign each row a fold in ``0..n_folds-1`` so every label's positives spread evenly.

    Unknown cells (NaN) count as negatives for stratification only. ``groups`` (one id per
    row, e.g. from :func:`pipeline.data.duplicates.duplicate_groups`) keeps each group in one fold.
    Without groups (or with every row its own group) the result equals iterstrat's
    ``MultilabelStratifiedKFold(n_folds, shuffle=True, random_state=seed)`` exactly.
    """
    y = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0).astype(np.int64)
    n = len(y)
    if n < n_folds:
        raise ValueError(
            f"{n} rows cannot be split into {n_folds} folds; lower [folds] n_folds to at "
            f"most {n} or add rows"
        )
    if groups is None:
        groups = np.arange(n)
    _, first, unit_of_row = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    # units in order of their first row, so singleton rows keep their own order
    rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")
    unit_of_row = rank[unit_of_row]
    n_units = len(first)
    if n_units < n_folds:
        raise ValueError(
            f"the {n} rows form only {n_units} groups of duplicates, fewer than [folds] "
            f"n_folds = {n_folds}; lower it to at most {n_units}"
        )
    counts = np.zeros((n_units, y.shape[1]), dtype=np.int64)
    np.add.at(counts, unit_of_row, y)
    sizes = np.bincount(unit_of_row, minlength=n_units)
    # the random calls below mirror iterstrat's, in the same order (see the test)
    rng = np.random.RandomState(seed)
    order = np.arange(n_units)
    rng.shuffle(order)
    r = np.asarray([1 / n_folds] * n_folds)
    unit_fold = _iterative_stratification(counts[order], sizes[order], r, rng)
    unit_fold = unit_fold[np.argsort(order)]
    folds = unit_fold[unit_of_row].astype(np.int64)
    assert (folds >= 0).all()
    return folds


def _iterative_stratification(
    counts: np.ndarray, sizes: np.ndarray, r: np.ndarray, rng: np.random.RandomState
) -> np.ndarray:
    """Sechidis et al. (2011) iterative stratification over units that hold ``sizes`` rows
    and ``counts`` positives per label; with single rows it is iterstrat's algorithm step
    for step (the same ties, the same random draws). Within a label, larger units are
    placed first (stable), so a big group goes where most of that label is still wanted."""
    n_units = counts.shape[0]
    has = counts > 0
    unit_fold = np.zeros(n_units, dtype=int)
    c_folds = r * sizes.sum()
    c_folds_labels = np.outer(r, counts.sum(axis=0))
    todo = np.ones(n_units, dtype=bool)
    while np.any(todo):
        num_labels = counts[todo].sum(axis=0)
        if num_labels.sum() == 0:  # only all-negative units left: fill the emptiest folds
            for u in np.where(todo)[0]:
                fold = np.where(c_folds == c_folds.max())[0]
                fold = fold[rng.choice(fold.shape[0])] if fold.shape[0] > 1 else fold[0]
                unit_fold[u] = fold
                c_folds[fold] -= sizes[u]
            break
        label = np.where(num_labels == num_labels[np.nonzero(num_labels)].min())[0]
        label = label[rng.choice(label.shape[0])] if label.shape[0] > 1 else label[0]
        units = np.where(has[:, label] & todo)[0]
        units = units[np.argsort(-counts[units, label], kind="stable")]
        for u in units:
            wanted = c_folds_labels[:, label]
            fold = np.where(wanted == wanted.max())[0]
            if fold.shape[0] > 1:
                tie = np.where(c_folds[fold] == c_folds[fold].max())[0]
                fold = fold[tie[rng.choice(tie.shape[0])]] if tie.shape[0] > 1 else fold[tie[0]]
            else:
                fold = fold[0]
            unit_fold[u] = fold
            todo[u] = False
            c_folds_labels[fold] -= counts[u]
            c_folds[fold] -= sizes[u]
    return unit_fold


def read_folds(path: str | Path, ids: np.ndarray, n_folds: int | None = None) -> np.ndarray:
    """Fold of every id in ``ids`` from a ``image,fold`` CSV; mismatches are errors.

    Ids are read as written (``NA``, ``nan``, ``None`` and ``001`` stay strings), the same
    way ``labels.csv`` is, so a folds file always matches the table it was made from.
    """
    from pipeline.data.contract import read_csv_strings

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `make folds` first")
    df = read_csv_strings(path, "run `make folds` first")
    if list(df.columns) != ["image", "fold"]:
        raise ValueError(f"{path}: header must be 'image,fold', got {list(df.columns)}")
    fold_text = df["fold"].str.strip()
    if not fold_text.str.fullmatch(r"\d+").all():
        bad = int(np.flatnonzero(~fold_text.str.fullmatch(r"\d+").to_numpy())[0])
        raise ValueError(
            f"{path} row {bad + 2}: fold {fold_text.iloc[bad]!r} is not a whole number; "
            "delete the file and run `make folds`"
        )
    mapping = dict(zip(df["image"], fold_text.astype(np.int64), strict=True))
    missing = [i for i in ids if i not in mapping]
    if missing or len(mapping) != len(ids):
        extra = set(mapping) - set(ids)
        detail = f"{len(missing)} labels.csv id(s) missing, e.g. {missing[0]!r}" if missing else ""
        if extra:
            detail += f" {len(extra)} id(s) not in labels.csv, e.g. {sorted(extra)[0]!r}"
        raise ValueError(
            f"{path} does not match labels.csv ({detail.strip()}); delete it and run `make folds`"
        )
    folds = np.array([mapping[i] for i in ids], dtype=np.int64)
    k = n_folds if n_folds is not None else int(folds.max()) + 1
    if folds.min() < 0 or folds.max() >= k:
        raise ValueError(
            f"{path}: fold values must be in 0..{k - 1}; delete it and run `make folds`"
        )
    if n_folds is not None and len(np.unique(folds)) != n_folds:
        raise ValueError(
            f"{path} has {len(np.unique(folds))} folds but the config asks for {n_folds}; "
            "delete it and run `make folds`"
        )
    return folds
