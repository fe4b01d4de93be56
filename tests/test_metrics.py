"""Tests for pipeline.metrics: hand-computed values, agreement with sklearn, masking."""

import numpy as np
import pytest
from sklearn.metrics import fbeta_score as sk_fbeta

from pipeline.metrics import (
    best_threshold_fbeta,
    confusion_counts,
    fbeta_per_label,
    fbeta_score,
    fbeta_threshold_curves,
    grid_positions,
    precision_recall_per_label,
    threshold_counts,
    threshold_grid,
)

NAN = np.nan

# 4 rows x 3 labels; the NaN cell (row 3, label 2) is predicted 1 and must be ignored.
Y = np.array(
    [
        [1, 0, 1],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, NAN],
    ]
)
PRED = np.array(
    [
        [1, 0, 0],
        [0, 1, 1],
        [1, 1, 0],
        [0, 0, 1],
    ]
)
# By hand (F2 = 5 tp / (5 tp + 4 fn + fp)):
#   label 0: tp 1 fp 1 fn 1 -> 5/10;  label 1: tp 1 fp 1 fn 0 -> 5/6;  label 2: tp 0 fp 1 fn 1 -> 0
#   micro: tp 2 fp 3 fn 2 -> 10/21
#   rows: 5/9, 0, 5/6, and row 3 has tp = fp = fn = 0 -> zero_division
F2_LABELS = [0.5, 5 / 6, 0.0]


def test_hand_computed_counts_precision_recall():
    tp, fp, fn = confusion_counts(Y, PRED)
    assert tp.tolist() == [1, 1, 0]
    assert fp.tolist() == [1, 1, 1]
    assert fn.tolist() == [1, 0, 1]
    precision, recall = precision_recall_per_label(Y, PRED)
    assert precision.tolist() == [0.5, 0.5, 0.0]
    assert recall.tolist() == [0.5, 1.0, 0.0]


def test_hand_computed_fbeta():
    assert fbeta_per_label(Y, PRED) == pytest.approx(F2_LABELS, abs=1e-15)
    assert fbeta_per_label(Y, PRED, beta=1.0) == pytest.approx([0.5, 2 / 3, 0.0], abs=1e-15)
    assert fbeta_score(Y, PRED, average="macro") == pytest.approx(4 / 9, abs=1e-15)
    assert fbeta_score(Y, PRED, average="micro") == pytest.approx(10 / 21, abs=1e-15)
    assert fbeta_score(Y, PRED, average="samples") == pytest.approx(25 / 72, abs=1e-15)
    # row 3 (no positive, nothing predicted among known cells) now counts as 1
    assert fbeta_score(Y, PRED, average="samples", zero_division=1.0) == pytest.approx(
        43 / 72, abs=1e-15
    )


def test_zero_division_per_label():
    y = np.array([[0.0], [0.0], [NAN]])
    pred = np.array([[0], [0], [1]])
    assert fbeta_per_label(y, pred).tolist() == [0.0]
    assert fbeta_per_label(y, pred, zero_division=1.0).tolist() == [1.0]
    precision, recall = precision_recall_per_label(y, pred, zero_division=1.0)
    assert (precision.tolist(), recall.tolist()) == ([1.0], [1.0])


def test_unknown_rows_and_labels_are_skipped_in_averages():
    y = np.vstack([Y, [NAN, NAN, NAN]])
    pred = np.vstack([PRED, [1, 1, 1]])
    assert fbeta_score(y, pred, average="samples") == pytest.approx(25 / 72, abs=1e-15)
    y = np.hstack([Y, np.full((4, 1), NAN)])
    pred = np.hstack([PRED, np.ones((4, 1), dtype=int)])
    assert fbeta_score(y, pred, average="macro") == pytest.approx(4 / 9, abs=1e-15)
    assert fbeta_score(y, pred, average="micro") == pytest.approx(10 / 21, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("average", ["macro", "micro", "samples"])
def test_matches_sklearn_unmasked(seed, beta, average):
    rng = np.random.default_rng(seed)
    y = (rng.random((60, 7)) < rng.uniform(0.0, 0.6, 7)).astype(int)
    pred = (rng.random((60, 7)) < rng.uniform(0.0, 0.6, 7)).astype(int)
    y[:, 0] = 0
    pred[:, 0] = 0  # label with no positive and none predicted: zero_division
    y[:3] = 0
    pred[:3] = 0  # rows with nothing: zero_division in "samples"
    for zero_division in (0.0, 1.0):
        expected = sk_fbeta(y, pred, beta=beta, average=average, zero_division=zero_division)
        got = fbeta_score(y.astype(float), pred, beta, average, zero_division)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    expected = sk_fbeta(y, pred, beta=beta, average=None, zero_division=0.0)
    assert fbeta_per_label(y, pred, beta) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def _masked(seed: int, n: int = 50, n_labels: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < 0.3).astype(float)
    pred = (rng.random((n, n_labels)) < 0.3).astype(int)
    y[rng.random((n, n_labels)) < 0.25] = NAN
    return y, pred


@pytest.mark.parametrize("seed", range(5))
def test_mask_equals_removing_cells(seed):
    y, pred = _masked(seed)
    known = ~np.isnan(y)
    for j in range(y.shape[1]):  # per label: the column with its NaN rows removed
        rows = known[:, j]
        expected = fbeta_per_label(y[rows, j : j + 1], pred[rows, j : j + 1])[0]
        assert fbeta_per_label(y, pred)[j] == expected
    # micro: one binary problem over all known cells
    expected = sk_fbeta(y[known].astype(int), pred[known], beta=2.0, zero_division=0.0)
    assert fbeta_score(y, pred, average="micro") == pytest.approx(expected, rel=1e-12)
    # samples: each row scored on its known cells only
    rows = [
        sk_fbeta(y[i, known[i]].astype(int), pred[i, known[i]], beta=2.0, zero_division=0.0)
        for i in range(len(y))
        if known[i].any()
    ]
    assert fbeta_score(y, pred, average="samples") == pytest.approx(np.mean(rows), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_predictions_on_unknown_cells_do_not_matter(seed):
    y, pred = _masked(seed)
    flipped = np.where(np.isnan(y), 1 - pred, pred)
    for average in ("macro", "micro", "samples"):
        assert fbeta_score(y, pred, average=average) == fbeta_score(y, flipped, average=average)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"row 1, column 2"):
        fbeta_per_label(np.array([[0, 1, 0], [1, 0, 2.0]]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="binary"):
        fbeta_per_label(Y, PRED * 0.5)
    with pytest.raises(ValueError, match="shape"):
        fbeta_per_label(Y, PRED[:, :2])
    with pytest.raises(ValueError, match="average"):
        fbeta_score(Y, PRED, average="weighted")
    with pytest.raises(ValueError, match="no known cell"):
        fbeta_score(np.full((2, 2), NAN), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="beta"):
        fbeta_score(Y, PRED, beta=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threshold_counts(Y, np.full(Y.shape, 1.5))


def test_threshold_grid_is_exact():
    grid = threshold_grid(0.01)
    assert grid.size == 101
    assert grid[0] == 0.0 and grid[-1] == 1.0
    assert grid[29] == 0.29 and grid[57] == 0.57  # 0.29 != 29 * 0.01 in floating point
    assert threshold_grid(0.25).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert threshold_grid(0.03)[-1] == 0.99  # 1 is on the grid only if step divides it
    with pytest.raises(ValueError, match="step"):
        threshold_grid(0.0)


@pytest.mark.parametrize("step", [0.01, 0.03, 0.05, 1 / 3, 0.001, 1.0])
def test_grid_positions_equal_searchsorted_at_the_edges(step):
    grid = threshold_grid(step)
    rng = np.random.default_rng(0)
    p = np.concatenate(
        [
            grid,
            np.nextafter(grid, 2.0),
            np.nextafter(grid, -1.0),
            np.round(rng.random(500), 2),
            rng.random(500),
            [0.0, 1.0, 0.29, 0.57, 0.3],
        ]
    ).clip(0.0, 1.0)
    p = p.reshape(-1, 1)
    assert np.array_equal(grid_positions(p, step), np.searchsorted(grid, p, side="right"))


@pytest.mark.parametrize("step", [0.01, 0.05, 0.03])
def test_threshold_counts_match_brute_force(step):
    rng = np.random.default_rng(1)
    y = (rng.random((80, 4)) < 0.4).astype(float)
    y[rng.random((80, 4)) < 0.2] = NAN
    y[:, 3] = NAN  # a label with no known cell
    p = np.round(rng.random((80, 4)), 2)
    tp, fp, fn = threshold_counts(y, p, step)
    for g, t in enumerate(threshold_grid(step)):
        expected = confusion_counts(y, p >= t)
        assert [tp[g].tolist(), fp[g].tolist(), fn[g].tolist()] == [e.tolist() for e in expected]


def test_threshold_counts_work_across_blocks():
    rng = np.random.default_rng(2)  # more rows than one block of cells
    y = (rng.random((40_000, 3)) < 0.2).astype(float)
    y[rng.random(y.shape) < 0.1] = NAN
    p = rng.random(y.shape)
    tp, fp, fn = threshold_counts(y, p, 0.1)
    for g, t in enumerate(threshold_grid(0.1)):
        expected = confusion_counts(y, p >= t)
        assert [tp[g].tolist(), fp[g].tolist(), fn[g].tolist()] == [e.tolist() for e in expected]


def test_curves_and_best_threshold_by_hand():
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.9, 0.8, 0.35, 0.1])
    # t <= 0.1: tp 2 fp 2 -> 10/12;  0.1 < t <= 0.35: tp 2 fp 1 -> 10/11 (best);
    # 0.35 < t <= 0.8: tp 1 fp 1 fn 1 -> 1/2;  0.8 < t <= 0.9: 5/9;  t > 0.9: 0
    grid, curve = fbeta_threshold_curves(y[:, None], p[:, None])
    assert curve[[10, 11, 35, 36, 80, 81, 90, 91], 0] == pytest.approx(
        [10 / 12, 10 / 11, 10 / 11, 0.5, 0.5, 5 / 9, 5 / 9, 0.0], abs=1e-15
    )
    # ties on (0.1, 0.35]: the threshold closest to 0.5 wins; p = 0.35 is kept by p >= t
    assert best_threshold_fbeta(y, p) == (pytest.approx(10 / 11, abs=1e-15), 0.35)
    assert best_threshold_fbeta(y, p, step=0.1) == (pytest.approx(10 / 11, abs=1e-15), 0.3)


def test_best_threshold_of_a_label_without_positives_is_neutral():
    assert best_threshold_fbeta([0.0, 0.0, 0.0], [0.2, 0.6, 0.9]) == (0.0, 0.5)
    assert best_threshold_fbeta([NAN, NAN], [0.2, 0.6]) == (0.0, 0.5)


def test_paired_bootstrap_matches_a_naive_loop_and_is_seeded():
    from pipeline.metrics import fbeta_score, paired_bootstrap

    rng = np.random.default_rng(3)
    y = (rng.random((60, 3)) < 0.4).astype(float)
    y[::9, 2] = np.nan
    a = np.where(rng.random(y.shape) < 0.8, np.nan_to_num(y), 1 - np.nan_to_num(y)).astype(int)
    b = (rng.random(y.shape) < 0.5).astype(int)
    res = paired_bootstrap(y, a, b, beta=2.0, n_boot=200, seed=5)
    assert res["gain"] == pytest.approx(fbeta_score(y, a) - fbeta_score(y, b))
    # the same resamples drawn by hand
    w = np.random.default_rng(5).multinomial(60, np.full(60, 1 / 60), size=200)
    diffs = []
    for counts in w:
        rows = np.repeat(np.arange(60), counts)
        diffs.append(fbeta_score(y[rows], a[rows]) - fbeta_score(y[rows], b[rows]))
    assert res["low"] == pytest.approx(np.quantile(diffs, 0.025))
    assert res["high"] == pytest.approx(np.quantile(diffs, 0.975))
    assert res == paired_bootstrap(y, a, b, beta=2.0, n_boot=200, seed=5)
    assert res["low"] > 0  # a is clearly better than coin flips
    same = paired_bootstrap(y, a, a, n_boot=50)
    assert same["gain"] == same["low"] == same["high"] == 0.0
