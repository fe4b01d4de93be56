"""Naive reference for ``pipeline.ensemble.thresholds.ThresholdSearch``: the obvious Python loops.

It tries every candidate threshold one at a time and re-scores with ``pipeline.metrics``,
so it is slow but easy to trust. The tests require the vectorised search to choose exactly
the same thresholds, and the benchmark times the two against each other.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics import TIE_TOL, fbeta_per_label, fbeta_score, threshold_grid


def _pick(scores: list[float], grid: np.ndarray, current: int | None) -> int:
    """Same tie rule as ``pipeline.metrics.select_threshold``, written as a plain loop."""
    best = max(scores)
    if current is not None and best <= scores[current] + TIE_TOL:
        return current
    choice = None
    for i, score in enumerate(scores):
        if score >= best - TIE_TOL and (
            choice is None or abs(grid[i] - 0.5) < abs(grid[choice] - 0.5)
        ):
            choice = i
    return choice


def naive_threshold_search(
    p: np.ndarray,
    y: np.ndarray,
    beta: float = 2.0,
    step: float = 0.01,
    average: str = "macro",
    max_iter: int = 20,
) -> np.ndarray:
    """Per-label thresholds (L,) by looping over every grid threshold in Python.

    macro: each label alone; micro/samples: start from the macro thresholds, then
    coordinate ascent over labels, re-scoring the whole matrix for every candidate.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    grid = threshold_grid(step)
    idx = []
    for j in range(p.shape[1]):
        scores = [float(fbeta_per_label(y[:, [j]], (p[:, [j]] >= t), beta)[0]) for t in grid]
        idx.append(_pick(scores, grid, None))
    if average == "macro":
        return grid[idx]

    pred = p >= grid[idx]
    for _ in range(max_iter):
        changed = False
        for j in range(p.shape[1]):
            scores = []
            for t in grid:
                trial = pred.copy()
                trial[:, j] = p[:, j] >= t
                scores.append(fbeta_score(y, trial, beta, average))
            new = _pick(scores, grid, idx[j])
            if new != idx[j]:
                idx[j], changed = new, True
                pred[:, j] = p[:, j] >= grid[new]
        if not changed:
            break
    return grid[idx]
