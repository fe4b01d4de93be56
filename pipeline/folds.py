"""K folds by multi-label iterative stratification, made once and read by every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_folds(y: np.ndarray, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """Assign each row a fold in ``0..n_folds-1`` so every label's positives spread evenly.

    Unknown cells (NaN) count as negatives for stratification only.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0).astype(np.int8)
    if len(y) < n_folds:
        raise ValueError(f"{len(y)} rows cannot be split into {n_folds} folds")
    folds = np.full(len(y), -1, dtype=np.int64)
    mskf = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val) in enumerate(mskf.split(np.zeros(len(y)), y)):
        folds[val] = k
    assert (folds >= 0).all()
    return folds


def read_folds(path: str | Path, ids: np.ndarray, n_folds: int | None = None) -> np.ndarray:
    """Fold of every id in ``ids`` from a ``image,fold`` CSV; mismatches are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `make folds` first")
    df = pd.read_csv(path, dtype={"image": str})
    if list(df.columns) != ["image", "fold"]:
        raise ValueError(f"{path}: header must be 'image,fold', got {list(df.columns)}")
    mapping = dict(zip(df["image"], df["fold"], strict=True))
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
