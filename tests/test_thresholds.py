"""Tests for pipeline.ensemble.thresholds: exact agreement with the naive loop, estimator contract."""

import json
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import KFold, cross_val_predict

from benchmarks import bench_thresholds
from benchmarks.reference_thresholds import naive_threshold_search
from pipeline.ensemble.thresholds import ThresholdSearch
from pipeline.metrics import best_threshold_fbeta, fbeta_score

AVERAGES = ["macro", "micro", "samples"]


def make_data(seed: int, n: int = 40, n_labels: int = 5, coarse: bool = False):
    """Scores that carry signal, with ties, NaN cells, a label without positives, an
    all-unknown row and (odd seeds) an all-unknown label."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < rng.uniform(0.1, 0.5, n_labels)).astype(float)
    noise = rng.random((n, n_labels))
    p = np.clip(0.35 * y + 0.65 * noise, 0.0, 1.0)
    # coarse scores make many exact ties, between cells and with grid values
    p = np.round(p * 4) / 4 if coarse else np.round(p, 2)
    y[rng.random((n, n_labels)) < 0.15] = np.nan
    y[:, 1] = np.where(np.isnan(y[:, 1]), np.nan, 0.0)  # no positives
    y[0] = np.nan  # a row with nothing known
    if seed % 2:
        y[:, -1] = np.nan  # a label with nothing known
    return p, y


CASES = [(seed, coarse) for seed in range(4) for coarse in (False, True)]


@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize(("seed", "coarse"), CASES)
def test_identical_to_naive_reference(seed, coarse, average):
    p, y = make_data(seed, coarse=coarse)
    for beta, step in [(2.0, 0.05), (1.0, 0.03)]:
        search = ThresholdSearch(beta=beta, step=step, average=average).fit(p, y)
        expected = naive_threshold_search(p, y, beta=beta, step=step, average=average)
        assert np.array_equal(search.thresholds_, expected)
        assert search.score_ == fbeta_score(y, search.transform(p), beta, average)


@pytest.mark.parametrize("average", AVERAGES)
def test_identical_to_naive_reference_fine_grid(average):
    p, y = make_data(7, n=30, n_labels=4)
    search = ThresholdSearch(average=average).fit(p, y)
    assert np.array_equal(search.thresholds_, naive_threshold_search(p, y, average=average))


def test_macro_is_each_labels_best_threshold():
    p, y = make_data(3, n=200)
    search = ThresholdSearch(step=0.01).fit(p, y)
    best = [best_threshold_fbeta(y[:, j], p[:, j]) for j in range(y.shape[1])]
    assert search.thresholds_.tolist() == [t for _, t in best]
    assert search.thresholds_[1] == 0.5  # no positives: the neutral threshold
    known = ~np.isnan(y).all(axis=0)
    expected = np.mean([f for (f, _), k in zip(best, known, strict=True) if k])
    assert search.score_ == pytest.approx(expected, abs=1e-15)
    assert search.n_iter_ == 1


@pytest.mark.parametrize("average", ["micro", "samples"])
def test_coordinate_ascent_improves_on_the_macro_start(average):
    p, y = make_data(2, n=300, n_labels=6)
    start = ThresholdSearch(average="macro").fit(p, y)
    search = ThresholdSearch(average=average).fit(p, y)
    assert search.n_iter_ >= 2  # it moved something, then confirmed with a quiet pass
    assert search.score_ > fbeta_score(y, start.transform(p), average=average)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        cut = ThresholdSearch(average=average, max_iter=1).fit(p, y)
    assert cut.n_iter_ == 1


def test_transform_is_int8_and_uses_p_at_least_threshold():
    p = np.array([[0.3, 0.7], [0.29, 0.71], [0.0, 1.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    search = ThresholdSearch(step=0.01).fit(p, y)
    # the only perfect thresholds: (0.29, 0.3] and (0.7, 0.71] -> grid values 0.3 and 0.71
    assert search.thresholds_.tolist() == [0.3, 0.71]
    assert search.score_ == 1.0
    out = search.transform(p)
    assert out.dtype == np.int8
    assert out.tolist() == [[1, 0], [0, 1], [0, 1]]


def test_estimator_contract():
    p, y = make_data(0)
    search = ThresholdSearch(beta=1.0, step=0.05, average="micro", max_iter=5)
    assert search.get_params() == {"beta": 1.0, "step": 0.05, "average": "micro", "max_iter": 5}
    with pytest.raises(NotFittedError):
        search.transform(p)
    assert search.fit(p, y) is search
    copy = clone(search)
    assert copy.get_params() == search.get_params()
    assert not hasattr(copy, "thresholds_")
    copy.set_params(average="samples", step=0.1)
    assert (copy.average, copy.step) == ("samples", 0.1)
    assert np.array_equal(search.fit_transform(p, y), search.transform(p))
    assert np.array_equal(search.predict(p), search.transform(p))
    assert search.n_features_in_ == p.shape[1]
    assert search.thresholds_.shape == (p.shape[1],)


def test_works_inside_sklearn_model_selection():
    p, y = make_data(4, n=60)
    y[0] = 0.0  # every fold needs a known cell
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cross_val_predict(ThresholdSearch(step=0.05), p, y, cv=KFold(3))
    assert out.shape == p.shape and set(np.unique(out)) <= {0, 1}


def test_bad_inputs_are_refused():
    p, y = make_data(0)
    with pytest.raises(ValueError, match="average"):
        ThresholdSearch(average="weighted").fit(p, y)
    with pytest.raises(ValueError, match="max_iter"):
        ThresholdSearch(max_iter=0).fit(p, y)
    with pytest.raises(ValueError, match="step"):
        ThresholdSearch(step=0.0).fit(p, y)
    with pytest.raises(ValueError, match="shape"):
        ThresholdSearch().fit(p[:, :3], y)
    with pytest.raises(ValueError, match="no known cell"):
        ThresholdSearch().fit(p, np.full(y.shape, np.nan))
    search = ThresholdSearch().fit(p, y)
    with pytest.raises(ValueError, match="labels"):
        search.transform(p[:, :3])


def test_benchmark_writes_its_json(tmp_path, capsys):
    out = tmp_path / "bench" / "thresholds.json"
    argv = ["--n", "300", "--labels", "4", "--naive-labels", "2", "--repeats", "1"]
    assert bench_thresholds.main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["identical"] is True
    assert (result["n"], result["labels"], result["baseline_extrapolated_from_labels"]) == (
        300,
        4,
        2,
    )
    assert result["ratio"] == pytest.approx(result["baseline"] / result["ours"])
    assert capsys.readouterr().out.startswith("bench-thresholds: ours ")
    assert [f.name for f in out.parent.iterdir()] == ["thresholds.json"]  # no temp file left


def test_rate_rule_carries_the_positive_rate_to_the_scored_rows():
    from pipeline.ensemble.thresholds import rule_thresholds

    rng = np.random.default_rng(5)
    y = (rng.random((400, 3)) < [0.1, 0.3, 0.5]).astype(float)
    p = np.clip(0.6 * y + 0.4 * rng.random(y.shape), 0, 1)
    own = rule_thresholds(p, y, "per_label")
    rate = (p >= own).mean(axis=0)
    # scored rows on another scale (squashed towards 0): the same share is cut positive
    scored = 0.5 * np.clip(
        0.6 * (rng.random((200, 3)) < [0.1, 0.3, 0.5]) + 0.4 * rng.random((200, 3)), 0, 1
    )
    t = rule_thresholds(p, y, "rate", scored=scored)
    np.testing.assert_allclose((scored >= t).mean(axis=0), rate, atol=0.01)
    mixed = rule_thresholds(p, y, ["per_label", "rate", "global"], scored=scored)
    assert mixed[0] == own[0] and mixed[1] == t[1]
    with pytest.raises(ValueError, match="rate rule needs"):
        rule_thresholds(p, y, "rate")


def test_rate_rule_is_a_nested_cv_candidate_when_asked():
    from pipeline.ensemble.second_level import make_combiners, nested_cv

    rng = np.random.default_rng(6)
    y = (rng.random((150, 2)) < 0.3).astype(float)
    P = np.clip(y[:, None, :] * 0.5 + rng.random((150, 3, 2)) * 0.5, 0, 1)
    combiners = make_combiners(["mean_members"], columns=[("m", e) for e in range(3)])
    outer = nested_cv(P, y, combiners, rules=("per_label", "rate"), outer_folds=3)
    assert outer.candidates == [("mean_members", "per_label"), ("mean_members", "rate")]
    assert outer.per_label.shape == (2, 2) and (outer.per_label > 0).all()
