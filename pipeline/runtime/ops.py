"""The NumPy operations a finished run predicts with, in one place for training and serving.

Flip TTA, the second level's combiners and the fold vote are computed here, both by the
stages (``pipeline.models.inference``, ``pipeline.ensemble.combiners``,
``pipeline.ensemble.submit``) and by the exported runtime (``pipeline.runtime.exported``,
copied into every ``make export`` folder). So an exported predictor computes what the run
did, with the same code. The frozen members' heads are :mod:`pipeline.runtime.heads`.

NumPy only, and no import of another repository module: ``make export`` copies this file
as it is (``tests/test_layers.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_EPS = 1e-6


# ---- flip TTA ------------------------------------------------------------------------------


def flip_batch(batch: np.ndarray, tta_flip: bool) -> np.ndarray:
    """(n, H, W, 3) images -> the model's input: with TTA the n images then their mirrors."""
    return np.concatenate([batch, batch[:, :, ::-1]]) if tta_flip else batch


def flip_mean(out: np.ndarray, tta_flip: bool, n_batches: int = 1) -> np.ndarray:
    """Model outputs of ``n_batches`` :func:`flip_batch` batches -> one row per image (the
    mean of an image's and its mirror's output with TTA)."""
    if not tta_flip:
        return out
    return out.reshape(n_batches, 2, -1, out.shape[-1]).mean(axis=1).reshape(-1, out.shape[-1])


# ---- logits --------------------------------------------------------------------------------


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6] (finite for 0 and 1)."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


# ---- the second level's combiners (state: what ``SecondLevel.save`` writes) -----------------


def weighted_mean_proba(weights: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(n, L): per label a weighted mean of the (n, C, L) cube's columns, ``weights`` (L, C)."""
    return np.einsum("ncl,lc->nl", P, weights)


def logistic_combiner_proba(models: Sequence[Mapping[str, Any]], scope: str, P: np.ndarray):
    """(n, L): per label a logistic regression on the standardised logits of its columns (of
    label j only for ``scope="own"``, of every label for ``"all"``)."""
    out = np.empty((len(P), len(models)))
    for j, m in enumerate(models):
        cols = np.asarray(m["columns"], dtype=np.int64)
        block = P[:, cols, j] if scope == "own" else P[:, cols, :].reshape(len(P), -1)
        z = (logit(block) - np.asarray(m["mean"])) / np.asarray(m["scale"])
        out[:, j] = sigmoid(z @ np.asarray(m["coef"]) + m["intercept"])
    return out


# ---- the fold vote ---------------------------------------------------------------------------


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
