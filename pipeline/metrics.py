"""Multi-label F-beta metrics that mask unknown labels, and F-beta curves over thresholds.

Why not ``sklearn.metrics`` directly: our label matrices hold NaN for unknown cells, which
must drop out of every count (sklearn can only drop whole rows), and the threshold search
needs a label's F-beta at every candidate threshold at once. Everything here is NumPy and
vectorised; results agree with ``sklearn.metrics.fbeta_score`` on fully known labels.

Conventions:
- ``y`` (n, L) float: 1.0, 0.0 or NaN (unknown, ignored); ``pred`` (n, L) binary;
  ``p`` (n, L) probabilities in [0, 1]. A cell is predicted positive at threshold ``t``
  iff ``p >= t``.
- F-beta is computed from counts, ``(1 + b2) tp / ((1 + b2) tp + b2 fn + fp)``; when
  ``tp = fp = fn = 0`` (no positives and none predicted) it is ``zero_division`` (0.0 by
  default, as sklearn's ``zero_division=0.0``). Precision/recall use the same rule.
- ``macro`` averages over labels with at least one known cell, ``samples`` over rows with
  at least one known cell: an entirely unknown label or row says nothing, so it is skipped
  rather than scored ``zero_division``.
"""

from __future__ import annotations

import numpy as np

AVERAGES = ("macro", "micro", "samples")

#: Scores closer than this count as a tie in the threshold search, so the chosen threshold
#: never depends on floating-point summation order (see ``select_threshold``).
TIE_TOL = 1e-10

#: Finest threshold grid step accepted (see ``_grid_floor``).
MIN_STEP = 1e-6

_CHUNK_CELLS = 1 << 16


def check_labels(y: np.ndarray) -> np.ndarray:
    """Return ``y`` as a 2-D float64 array, refusing values other than 0, 1 and NaN."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"labels must be a 2-D (n, L) array, got shape {y.shape}")
    bad = ~(np.isnan(y) | (y == 0.0) | (y == 1.0))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"labels must be 0, 1 or NaN (unknown); row {row}, column {col} holds {y[row, col]!r}"
        )
    return y


def check_probabilities(p: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``p`` as float64, refusing NaN or values outside [0, 1] (and a wrong shape)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be a 2-D (n, L) array, got shape {p.shape}")
    if shape is not None and p.shape != shape:
        raise ValueError(f"probabilities have shape {p.shape}, labels have shape {shape}")
    bad = ~((p >= 0.0) & (p <= 1.0))  # also catches NaN
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"probabilities must lie in [0, 1]; row {row}, column {col} holds {p[row, col]!r}"
        )
    return p


def _check_pred(pred: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``pred`` as a bool array of ``shape``, refusing anything but 0/1."""
    pred = np.asarray(pred)
    if pred.shape != shape:
        raise ValueError(f"predictions have shape {pred.shape}, labels have shape {shape}")
    if pred.dtype == bool:
        return pred
    positive = pred == 1
    if not (positive | (pred == 0)).all():
        row, col = np.argwhere(~(positive | (pred == 0)))[0]
        raise ValueError(
            f"predictions must be binary 0/1; row {row}, column {col} holds {pred[row, col]!r}"
        )
    return positive


def _check_beta(beta: float) -> float:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    return float(beta)


def fbeta_from_counts(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float = 2.0, zero_division: float = 0.0
) -> np.ndarray:
    """F-beta from (broadcastable) confusion counts; the single formula every score uses.

    Sharing it keeps the vectorised search and any re-scoring bit-identical.
    """
    b2 = _check_beta(beta) ** 2
    num = (1.0 + b2) * np.asarray(tp, dtype=np.float64)
    den = num + b2 * np.asarray(fn, dtype=np.float64) + np.asarray(fp, dtype=np.float64)
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, zero_division)


def confusion_counts(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label (TP, FP, FN) counts over known cells, each of shape (L,)."""
    y = check_labels(y)
    pred = _check_pred(pred, y.shape)
    pos, neg = y == 1.0, y == 0.0
    tp = np.count_nonzero(pos & pred, axis=0)
    fp = np.count_nonzero(neg & pred, axis=0)
    fn = np.count_nonzero(pos & ~pred, axis=0)
    return tp, fp, fn


def precision_recall_per_label(
    y: np.ndarray, pred: np.ndarray, zero_division: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label precision and recall over known cells; undefined ratios give ``zero_division``."""
    tp, fp, fn = confusion_counts(y, pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), zero_division)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), zero_division)
    return precision.astype(np.float64), recall.astype(np.float64)


def fbeta_per_label(
    y: np.ndarray, pred: np.ndarray, beta: float = 2.0, zero_division: float = 0.0
) -> np.ndarray:
    """Per-label F-beta (L,) over known cells.

    A label with no known positive and no predicted positive (including a label with no
    known cell at all) scores ``zero_division``.
    """
    tp, fp, fn = confusion_counts(y, pred)
    return fbeta_from_counts(tp, fp, fn, beta, zero_division)


def fbeta_score(
    y: np.ndarray,
    pred: np.ndarray,
    beta: float = 2.0,
    average: str = "macro",
    zero_division: float = 0.0,
) -> float:
    """Averaged F-beta over known cells: ``macro``, ``micro`` or ``samples``.

    Raises:
        ValueError: unknown ``average``, bad inputs, or no known cell at all (nothing to score).
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    y = check_labels(y)
    pred = _check_pred(pred, y.shape)
    known = ~np.isnan(y)
    if not known.any():
        raise ValueError("labels have no known cell: F-beta is undefined")
    pos, neg = y == 1.0, y == 0.0
    axis = 1 if average == "samples" else 0
    tp = np.count_nonzero(pos & pred, axis=axis)
    fp = np.count_nonzero(neg & pred, axis=axis)
    fn = np.count_nonzero(pos & ~pred, axis=axis)
    if average == "micro":
        return float(fbeta_from_counts(tp.sum(), fp.sum(), fn.sum(), beta, zero_division))
    scores = fbeta_from_counts(tp, fp, fn, beta, zero_division)
    return float(np.mean(scores[known.any(axis=axis)]))


def threshold_grid(step: float = 0.01) -> np.ndarray:
    """Candidate thresholds 0, step, 2*step, ... <= 1, rounded so e.g. 0.29 is exactly 0.29.

    ``step`` must be in [1e-6, 1]: finer grids are meaningless for probabilities and would
    break the exactness argument in ``_grid_floor``.
    """
    if not MIN_STEP <= step <= 1:
        raise ValueError(f"step must be in [{MIN_STEP}, 1], got {step!r}")
    n_steps = int(np.floor(1.0 / step + 1e-9))
    return np.round(np.arange(n_steps + 1) * step, 10)


def grid_positions(p: np.ndarray, step: float = 0.01) -> np.ndarray:
    """Number of ``threshold_grid(step)`` values ``<= p`` per cell (an intp array like ``p``).

    A cell is predicted positive at ``grid[g]`` iff ``g < position``. Equals
    ``np.searchsorted(grid, p, side="right")`` exactly, several times faster.
    """
    position = _grid_floor(np.asarray(p, dtype=np.float64), step, threshold_grid(step))
    position += 1
    return position.astype(np.intp)


def _grid_floor(p: np.ndarray, step: float, grid: np.ndarray) -> np.ndarray:
    """Index of the largest grid value ``<= p``, as float64 (``grid_positions - 1``).

    It is ``floor(p / step)`` except where ``p / step`` lies within 1e-4 of an integer
    (``p`` at or next to a grid value, where rounding could flip the comparison); only
    those cells go through ``searchsorted``. Away from that band the floor is exact: grid
    values lie within 5e-11 of ``i * step``, less than ``1e-4 * step`` for ``step >= 1e-6``.
    """
    scaled = p * (1.0 / step)
    low = np.floor(scaled)
    scaled -= low
    scaled -= 0.5
    np.abs(scaled, out=scaled)  # = 0.5 - distance of p / step to the nearest integer
    near = np.flatnonzero(scaled > 0.5 - 1e-4)
    low.flat[near] = np.searchsorted(grid, p.flat[near], side="right") - 1
    return low


def threshold_counts(
    y: np.ndarray, p: np.ndarray, step: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label (TP, FP, FN) at every ``threshold_grid(step)`` value at once, each (G, L).

    Each known cell is binned by (largest grid value <= p, label, is positive) with
    ``bincount``; a suffix sum over the grid then gives how many positives/negatives each
    threshold predicts. O(n L + G L): no loop over thresholds or labels, no sort.
    """
    y = check_labels(y)
    return threshold_counts_unchecked(y, check_probabilities(p, y.shape), step)


def threshold_counts_unchecked(
    y: np.ndarray, p: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``threshold_counts`` on validated inputs (the search validates once).

    Works through blocks of about ``_CHUNK_CELLS`` cells so the temporaries stay in cache
    and extra memory stays bounded however large the OOF matrix is.
    """
    grid = threshold_grid(step)
    n_grid, n_labels = grid.size, y.shape[1]
    size = n_grid * n_labels * 2
    hist = np.zeros(size + 1, dtype=np.intp)
    label_offsets = 2.0 * np.arange(n_labels)
    rows = max(1, _CHUNK_CELLS // max(n_labels, 1))
    for start in range(0, y.shape[0], rows):
        # bin = floor index * 2L + 2 * label + y (small integers: exact in float64); adding
        # y makes unknown cells NaN, and fmin (which skips NaN) sends them to bin ``size``
        code = _grid_floor(p[start : start + rows], step, grid)
        code *= 2 * n_labels
        code += label_offsets
        code += y[start : start + rows]
        np.fmin(code, size, out=code)
        hist += np.bincount(code.astype(np.intp).ravel(), minlength=size + 1)
    hist = hist[:size].reshape(n_grid, n_labels, 2)
    predicted = np.cumsum(hist[::-1], axis=0)[::-1]  # [g] = known cells with p >= grid[g]
    tp = predicted[:, :, 1]
    fp = predicted[:, :, 0]
    fn = predicted[0, :, 1] - tp  # every cell is predicted at grid[0] = 0
    return tp, fp, fn


def fbeta_threshold_curves(
    y: np.ndarray, p: np.ndarray, beta: float = 2.0, step: float = 0.01, zero_division: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Each label's F-beta at every grid threshold: ``(grid (G,), scores (G, L))``.

    Used by the threshold search and by the report's threshold curves.
    """
    tp, fp, fn = threshold_counts(y, p, step)
    return threshold_grid(step), fbeta_from_counts(tp, fp, fn, beta, zero_division)


def select_threshold(scores: np.ndarray, grid: np.ndarray, current: int | None = None) -> int:
    """Index of the best grid threshold under the documented tie rule.

    Scores within ``TIE_TOL`` of the maximum tie; among ties the threshold closest to 0.5
    wins, then the smaller one. Why 0.5: a label whose score is flat (no known positives,
    nothing known, a plateau) gets the neutral default instead of an extreme 0 (predict
    everything) or 1. With ``current`` (coordinate ascent) the current index is kept unless
    another beats it by more than ``TIE_TOL``, so the ascent cannot cycle.
    """
    best = scores.max()
    if current is not None and best <= scores[current] + TIE_TOL:
        return int(current)
    candidates = np.flatnonzero(scores >= best - TIE_TOL)
    return int(candidates[np.argmin(np.abs(grid[candidates] - 0.5))])


def best_threshold_fbeta(
    y_col: np.ndarray,
    p_col: np.ndarray,
    beta: float = 2.0,
    step: float = 0.01,
    zero_division: float = 0.0,
) -> tuple[float, float]:
    """One label's F-beta at its best grid threshold: ``(best_fbeta, threshold)``.

    What the stacker uses to score a candidate column as it would be used after thresholding;
    same grid and tie rule as ``ThresholdSearch``.
    """
    y_col = np.asarray(y_col, dtype=np.float64).reshape(-1, 1)
    p_col = np.asarray(p_col, dtype=np.float64).reshape(-1, 1)
    grid, scores = fbeta_threshold_curves(y_col, p_col, beta, step, zero_division)
    best = select_threshold(scores[:, 0], grid)
    return float(scores[best, 0]), float(grid[best])


def paired_bootstrap(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    beta: float = 2.0,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Macro F-beta of ``pred_a`` minus that of ``pred_b``, with a paired bootstrap interval.

    Both predictions are scored on the same resamples of the images (rows drawn with
    replacement, ``n_boot`` times, seeded), so the interval is that of the *difference*:
    a gain whose interval straddles 0 is noise on this many images. Vectorised: each
    resample's per-label counts are one weighted sum (row multiplicities x cell hits).

    Returns:
        ``{"gain": observed difference, "low", "high": the percentile interval at
        ``level``, "p_le_0": share of resamples with a difference <= 0, "n_boot", "seed"}``.
    """
    y = check_labels(y)
    a = _check_pred(pred_a, y.shape)
    b = _check_pred(pred_b, y.shape)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    beta = _check_beta(beta)
    known = ~np.isnan(y)
    pos = (y == 1.0) & known
    neg = (y == 0.0) & known

    def counts(pred: np.ndarray):
        hit = pred.astype(bool)
        return (hit & pos).astype(np.float64), (hit & neg).astype(np.float64), (~hit & pos)

    rng = np.random.default_rng(seed)
    n = y.shape[0]
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    weights = np.vstack([np.ones((1, n)), weights])  # row 0: the observed sample
    has_known = weights @ known.astype(np.float64) > 0  # (B + 1, L)
    diffs = np.zeros(n_boot + 1)
    for sign, pred in ((1.0, a), (-1.0, b)):
        tp, fp, fn = (weights @ c.astype(np.float64) for c in counts(pred))
        f = fbeta_from_counts(tp, fp, fn, beta)
        diffs += sign * np.where(has_known, f, 0.0).sum(axis=1) / has_known.sum(axis=1)
    boot = diffs[1:]
    tail = (1.0 - level) / 2.0
    return {
        "gain": float(diffs[0]),
        "low": float(np.quantile(boot, tail)),
        "high": float(np.quantile(boot, 1.0 - tail)),
        "p_le_0": float(np.mean(boot <= 0)),
        "n_boot": int(n_boot),
        "seed": int(seed),
    }
