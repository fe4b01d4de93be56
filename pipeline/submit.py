"""Vote bagging and the submission validator (DESIGN step 8).

For each CNN fold k the stacked test probabilities are thresholded into binary votes; the
K fold votes are combined by majority. The writer refuses a frame that does not hold
every test image exactly once, in order, with the label columns in order and 0/1 values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def fold_votes(test_probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(K, m, L) probabilities and (L,) thresholds -> (K, m, L) int8 votes (p >= t)."""
    test_probs = np.asarray(test_probs)
    thresholds = np.asarray(thresholds)
    if test_probs.ndim != 3 or test_probs.shape[2] != thresholds.shape[0]:
        raise ValueError(
            f"votes need (K, m, L) probabilities and (L,) thresholds, got {test_probs.shape} "
            f"and {thresholds.shape}"
        )
    return (test_probs >= thresholds[None, None, :]).astype(np.int8)


def majority_vote(votes: np.ndarray, tie: str = "positive") -> np.ndarray:
    """Majority over axis 0; an exact tie (even K) gives 1 if ``tie == "positive"``."""
    if tie not in ("positive", "negative"):
        raise ValueError(f"tie must be 'positive' or 'negative', got {tie!r}")
    votes = np.asarray(votes, dtype=np.int32)
    k = votes.shape[0]
    ones = votes.sum(axis=0)
    twice = 2 * ones
    out = twice > k
    if tie == "positive":
        out |= twice == k
    return out.astype(np.int8)


def submission_frame(test_ids: np.ndarray, pred: np.ndarray, labels, id_column="image"):
    """Wide 0/1 frame: ``image,<label1>,...``."""
    df = pd.DataFrame(np.asarray(pred, dtype=np.int8), columns=list(labels))
    df.insert(0, id_column, np.asarray(test_ids).astype(str))
    return df


def labels_frame(test_ids: np.ndarray, pred: np.ndarray, labels) -> pd.DataFrame:
    """Kaggle style ``image_id,labels`` with space-separated label names (may be empty)."""
    names = np.asarray(list(labels))
    strings = [" ".join(names[row.astype(bool)]) for row in np.asarray(pred)]
    return pd.DataFrame({"image_id": np.asarray(test_ids).astype(str), "labels": strings})


def validate_submission(df: pd.DataFrame, test_ids, labels, id_column: str = "image") -> None:
    """Raise ValueError naming the first problem; return None if the frame is a valid submission."""
    test_ids = [str(i) for i in test_ids]
    expected_cols = [id_column, *labels]
    if list(df.columns) != expected_cols:
        raise ValueError(
            f"submission columns {list(df.columns)[:6]}... do not match the expected "
            f"{expected_cols[:6]}... (id column then the labels, in labels.csv order)"
        )
    ids = df[id_column].astype(str).tolist()
    dup = pd.Series(ids).duplicated()
    if dup.any():
        r = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"submission row {r + 2}: image {ids[r]!r} appears twice")
    missing = sorted(set(test_ids) - set(ids))
    if missing:
        raise ValueError(f"submission lacks {len(missing)} test image(s), e.g. {missing[0]!r}")
    extra = sorted(set(ids) - set(test_ids))
    if extra:
        raise ValueError(
            f"submission has {len(extra)} id(s) not in the test list, e.g. {extra[0]!r}"
        )
    if ids != test_ids:
        r = next(i for i, (a, b) in enumerate(zip(ids, test_ids, strict=True)) if a != b)
        raise ValueError(
            f"submission row {r + 2}: image {ids[r]!r} out of order (test list has {test_ids[r]!r})"
        )
    values = df[list(labels)].to_numpy()
    ok = np.isin(values, [0, 1]) & ~pd.isna(values)
    if not ok.all():
        r, c = (int(v[0]) for v in np.nonzero(~ok))
        bad = values[r, c].item() if hasattr(values[r, c], "item") else values[r, c]
        raise ValueError(
            f"submission row {r + 2}, column {labels[c]!r}: value {bad!r} is not 0 or 1"
        )
