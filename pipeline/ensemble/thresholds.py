"""Per-label decision thresholds that maximise F-beta on out-of-fold probabilities.

``ThresholdSearch`` is a scikit-learn transformer (probabilities in, 0/1 out), so ``clone``,
pipelines and ``cross_val_predict`` work on it. The search is exhaustive over the grid
0, step, ..., 1 and vectorised: every label's confusion counts at every threshold come from
one histogram pass (``pipeline.metrics.threshold_counts``), so there is no Python loop over
candidate thresholds.

- ``macro``: labels are independent, each gets the grid threshold maximising its own F-beta.
- ``micro`` / ``samples``: the global score couples labels, so coordinate ascent: start from
  the macro solution (already good per label, so few passes), then, label by label, move the
  threshold to the grid value maximising the global score with the others fixed; stop after
  a pass that changes nothing, or after ``max_iter`` passes.

Ties follow ``pipeline.metrics.select_threshold``: scores within ``TIE_TOL`` tie, the
threshold closest to 0.5 (then the smaller) wins, and in the ascent a label's threshold only
moves for a gain larger than ``TIE_TOL``. Unknown (NaN) label cells are excluded throughout.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from pipeline.metrics import (
    AVERAGES,
    check_labels,
    check_probabilities,
    fbeta_from_counts,
    fbeta_score,
    grid_positions,
    select_threshold,
    threshold_counts_unchecked,
    threshold_grid,
)

log = logging.getLogger(__name__)


class ThresholdSearch(TransformerMixin, BaseEstimator):
    """Grid search of one decision threshold per label for the best F-beta.

    Args:
        beta: F-beta's beta (2 weighs recall over precision, as the F2 competition metric).
        step: grid spacing of the candidate thresholds in [0, 1].
        average: the score to maximise: ``"macro"``, ``"micro"`` or ``"samples"``.
        max_iter: most coordinate-ascent passes over the labels (micro/samples only).

    Attributes:
        thresholds_: (L,) chosen thresholds; ``transform`` predicts ``p >= thresholds_``.
        score_: F-beta (``average``) of ``transform(X)`` against the fitted labels.
        n_iter_: passes over the labels made (1 for macro).
        n_features_in_: number of labels L seen in ``fit``.
    """

    def __init__(
        self, beta: float = 2.0, step: float = 0.01, average: str = "macro", max_iter: int = 20
    ) -> None:
        self.beta = beta
        self.step = step
        self.average = average
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> ThresholdSearch:
        """Search the thresholds on probabilities ``X`` (n, L) against labels ``y`` (n, L)."""
        if self.average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {self.average!r}")
        if not (isinstance(self.max_iter, int | np.integer) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        y = check_labels(y)
        p = check_probabilities(X, y.shape)
        if np.isnan(y).all():
            raise ValueError("labels have no known cell: there is nothing to fit thresholds on")
        grid = threshold_grid(self.step)

        tp, fp, fn = threshold_counts_unchecked(y, p, self.step)
        per_label = fbeta_from_counts(tp, fp, fn, self.beta)
        idx = np.array(
            [select_threshold(per_label[:, j], grid) for j in range(y.shape[1])], dtype=np.intp
        )
        n_iter = 1
        if self.average == "micro":
            idx, n_iter = self._ascend_micro(tp, fp, fn, idx, grid)
        elif self.average == "samples":
            idx, n_iter = self._ascend_samples(y, grid_positions(p, self.step), idx, grid)

        self.thresholds_ = grid[idx]
        self.n_iter_ = n_iter
        self.n_features_in_ = y.shape[1]
        self.score_ = self._score(y, p, tp, fp, fn, idx)
        log.info(
            "threshold search: %s F%g = %.4f over %d labels, %d pass(es)",
            self.average,
            self.beta,
            self.score_,
            y.shape[1],
            n_iter,
        )
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Binary predictions ``X >= thresholds_`` as an int8 (n, L) matrix."""
        check_is_fitted(self, "thresholds_")
        p = check_probabilities(X)
        if p.shape[1] != self.thresholds_.size:
            raise ValueError(
                f"probabilities have {p.shape[1]} labels, thresholds were fitted on "
                f"{self.thresholds_.size}"
            )
        return (p >= self.thresholds_).astype(np.int8)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Same as ``transform``: lets ``cross_val_predict`` and scorers use the search."""
        return self.transform(X)

    def _score(
        self,
        y: np.ndarray,
        p: np.ndarray,
        tp: np.ndarray,
        fp: np.ndarray,
        fn: np.ndarray,
        idx: np.ndarray,
    ) -> float:
        """F-beta of ``transform(p)``; macro/micro read it off the count curves (no re-scan of
        the (n, L) matrix), with the same formula and averaging as ``fbeta_score``."""
        if self.average == "samples":
            return fbeta_score(y, self.transform(p), self.beta, self.average)
        labels = np.arange(y.shape[1])
        tp, fp, fn = tp[idx, labels], fp[idx, labels], fn[idx, labels]
        if self.average == "micro":
            return float(fbeta_from_counts(tp.sum(), fp.sum(), fn.sum(), self.beta))
        has_known = ~np.isnan(y).all(axis=0)
        return float(np.mean(fbeta_from_counts(tp, fp, fn, self.beta)[has_known]))

    def __sklearn_tags__(self):
        """Tell sklearn (>= 1.6) that ``fit`` needs ``y``."""
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _not_converged(self) -> None:
        """Warn that ``max_iter`` cut the ascent short; the thresholds are still usable."""
        warnings.warn(
            f"threshold coordinate ascent still improving after max_iter={self.max_iter} passes",
            ConvergenceWarning,
            stacklevel=4,
        )

    def _ascend_micro(
        self, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, idx: np.ndarray, grid: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """Coordinate ascent on micro F-beta: global counts are sums over labels, so varying one
        label's threshold only swaps its own column of the (G, L) count curves."""
        labels = np.arange(tp.shape[1])
        total = np.array([tp[idx, labels].sum(), fp[idx, labels].sum(), fn[idx, labels].sum()])
        for n_pass in range(1, self.max_iter + 1):
            changed = False
            for j in labels:
                others = total - (tp[idx[j], j], fp[idx[j], j], fn[idx[j], j])
                scores = fbeta_from_counts(
                    others[0] + tp[:, j], others[1] + fp[:, j], others[2] + fn[:, j], self.beta
                )
                new = select_threshold(scores, grid, current=idx[j])
                if new != idx[j]:
                    idx[j], changed = new, True
                    total = others + (tp[new, j], fp[new, j], fn[new, j])
            if not changed:
                return idx, n_pass
        self._not_converged()
        return idx, self.max_iter

    def _ascend_samples(
        self, y: np.ndarray, positions: np.ndarray, idx: np.ndarray, grid: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """Coordinate ascent on samples F-beta, O(n + G) per label.

        With the other labels fixed, each row's F-beta takes one of two values depending on
        whether label j's cell is predicted (``g < positions[:, j]``). So the mean over rows at
        every grid index is a constant plus a suffix sum of the per-row differences binned by
        position: no (G, n) matrix, no loop over thresholds.
        """
        pos, neg = y == 1.0, y == 0.0
        rows = ~np.isnan(y).all(axis=1)  # rows with no known cell are not scored
        n_rows = np.count_nonzero(rows)
        pred = positions > idx
        row_tp = np.count_nonzero(pred & pos, axis=1)
        row_fp = np.count_nonzero(pred & neg, axis=1)
        row_fn = np.count_nonzero(~pred & pos, axis=1)
        n_grid = grid.size
        for n_pass in range(1, self.max_iter + 1):
            changed = False
            for j in range(y.shape[1]):
                pos_j, neg_j, at_j = pos[:, j], neg[:, j], positions[:, j]
                pred_j = at_j > idx[j]
                tp0 = row_tp - (pred_j & pos_j)  # each row's counts without label j
                fp0 = row_fp - (pred_j & neg_j)
                fn0 = row_fn - (~pred_j & pos_j)
                f_rest = fbeta_from_counts(tp0, fp0, fn0, self.beta)
                f_off = np.where(pos_j, fbeta_from_counts(tp0, fp0, fn0 + 1, self.beta), f_rest)
                f_on = np.where(
                    pos_j,
                    fbeta_from_counts(tp0 + 1, fp0, fn0, self.beta),
                    np.where(neg_j, fbeta_from_counts(tp0, fp0 + 1, fn0, self.beta), f_rest),
                )
                gain = np.bincount(at_j, weights=f_on - f_off, minlength=n_grid + 1)
                gain_at = np.cumsum(gain[::-1])[::-1][1:]  # rows predicted at grid[g]: at_j > g
                scores = (f_off[rows].sum() + gain_at) / n_rows
                new = select_threshold(scores, grid, current=idx[j])
                if new != idx[j]:
                    idx[j], changed = new, True
                    pred_j = at_j > new
                    row_tp = tp0 + (pred_j & pos_j)
                    row_fp = fp0 + (pred_j & neg_j)
                    row_fn = fn0 + (~pred_j & pos_j)
            if not changed:
                return idx, n_pass
        self._not_converged()
        return idx, self.max_iter


#: Threshold rules the second level chooses between (``pipeline.ensemble.second_level``); the
#: config's ``stack.rules`` picks which are tried (``rate`` only when listed).
RULES = ("per_label", "global", "shrunk", "rate")
DEFAULT_RULES = ("per_label", "global", "shrunk")


def rate_matched(p: np.ndarray, own: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(L,) cuts on ``scored`` (m, L) that mark as positive the same share of its rows as
    the thresholds ``own`` mark among the fitted rows ``p`` (n, L): each label's cut is its
    ``round(rate * m)``-th highest scored probability (at least one row)."""
    rate = (p >= own).mean(axis=0)
    m = scored.shape[0]
    n_pos = np.clip(np.rint(rate * m).astype(np.intp), 1, m)
    ranked = -np.sort(-scored, axis=0)  # each column descending
    return ranked[n_pos - 1, np.arange(scored.shape[1])].astype(np.float64)


def rule_thresholds(
    p: np.ndarray,
    y: np.ndarray,
    rule: str | list[str] | tuple[str, ...] = "per_label",
    beta: float = 2.0,
    step: float = 0.01,
    shrink: float = 20.0,
    scored: np.ndarray | None = None,
) -> np.ndarray:
    """(L,) thresholds by a rule, fitted on probabilities ``p`` (n, L) against ``y`` (n, L).

    - ``per_label``: each label's own F-beta-optimal grid threshold (``ThresholdSearch``
      with macro averaging).
    - ``global``: one threshold for every label, the grid value maximising macro F-beta.
      Why: a rare label's own optimum is fitted on a handful of positives and often does
      not carry over to new images (HPA 2018 teams found global thresholds generalise).
    - ``shrunk``: ``(n_pos * t_label + shrink * t_global) / (n_pos + shrink)``, rounded to
      the grid: labels with many positives keep their own threshold, rare ones move
      towards the global one.
    - ``rate`` (transductive, after HPA 2018's rate matching): the rows to be labelled,
      ``scored`` (m, L), are cut where the same share of them is positive as the
      ``per_label`` thresholds give on ``p``; it carries a positive *rate* to new images,
      not a probability, so a shift in the scores' scale between OOF and test (averaged
      fold models, other images) does not move how many images get a label.

    ``rule`` may be one name for every label or a sequence of L names (one per label).
    """
    y = check_labels(y)
    p = check_probabilities(p, y.shape)
    n_labels = y.shape[1]
    rules = [rule] * n_labels if isinstance(rule, str) else list(rule)
    if len(rules) != n_labels:
        raise ValueError(f"{len(rules)} threshold rules for {n_labels} labels")
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown threshold rule(s) {unknown}; choose from {RULES}")
    if shrink < 0:
        raise ValueError(f"shrink must be >= 0, got {shrink!r}")
    grid = threshold_grid(step)
    tp, fp, fn = threshold_counts_unchecked(y, p, step)
    curves = fbeta_from_counts(tp, fp, fn, beta)  # (G, L)
    own = grid[[select_threshold(curves[:, j], grid) for j in range(n_labels)]]
    has_known = ~np.isnan(y).all(axis=0)
    if not has_known.any():
        raise ValueError("labels have no known cell: there is nothing to fit thresholds on")
    t_global = grid[select_threshold(curves[:, has_known].mean(axis=1), grid)]
    n_pos = np.nansum(y, axis=0)
    shrunk = (n_pos * own + shrink * t_global) / np.maximum(n_pos + shrink, 1e-12)
    shrunk = grid[np.clip(np.rint(shrunk / step).astype(np.intp), 0, grid.size - 1)]
    by_rule = {"per_label": own, "global": np.full(n_labels, t_global), "shrunk": shrunk}
    if "rate" in rules:
        if scored is None:
            raise ValueError("the rate rule needs the probabilities of the rows it labels")
        scored = check_probabilities(scored, (len(scored), n_labels))
        by_rule["rate"] = rate_matched(p, own, scored)
    return np.array([by_rule[r][j] for j, r in enumerate(rules)], dtype=np.float64)


def apply_thresholds(p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Binary predictions ``p >= thresholds`` as an int8 (n, L) matrix (``p`` checked): what
    :meth:`ThresholdSearch.transform` gives, from saved thresholds."""
    return (check_probabilities(p) >= thresholds).astype(np.int8)
