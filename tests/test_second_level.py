"""The second level: combiners, threshold rules, nested-CV choice, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from pipeline.ensemble.combiners import (
    CaruanaCombiner,
    LogisticCombiner,
    MeanCombiner,
    ensemble_selection,
    row_folds,
)
from pipeline.ensemble.second_level import (
    COMBINERS,
    OuterCV,
    SecondLevel,
    choose,
    fit_second_level,
    global_winner,
    make_combiners,
    nested_cv,
)
from pipeline.ensemble.stack import PerLabelXGBStacker
from pipeline.ensemble.thresholds import ThresholdSearch, rule_thresholds
from pipeline.metrics import fbeta_per_label

COLUMNS = [(m, e) for m in ("a", "b", "c") for e in (1, 2)]


def cube(n=240, n_labels=3, seed=0, signal=1.5):
    """Base OOF cube whose columns carry the labels with noise, and the labels."""
    rng = np.random.default_rng(seed)
    prev = np.linspace(0.1, 0.4, n_labels)
    y = (rng.random((n, n_labels)) < prev).astype(float)
    P = np.empty((n, len(COLUMNS), n_labels))
    for c in range(len(COLUMNS)):
        z = y * signal * (1 + 0.3 * (c % 3)) + rng.normal(size=y.shape) - 1.0
        P[:, c] = 1 / (1 + np.exp(-z))
    return P, y


def small_stacker():
    return PerLabelXGBStacker(
        eta=(0.1,), max_depth=(2,), min_child_weight=(1,), n_estimators=40, n_folds=3
    )


def test_ensemble_selection_hand_worked_case():
    # y = [1, 1, 0, 0]; col0 ranks row 3 above row 1, col1 ranks row 2 above row 0, col2 is
    # constant. Step 1: col0 and col1 tie at F2 10/11, lower index col0. Step 2: col0+col1
    # separates the classes (F2 1) -> col1. Step 3: all three reach F2 1 -> col0. Step 4:
    # +col0 gives [.725 .375 .2 .4] (F2 10/11), +col1 and +col2 reach 1 -> col1.
    y = np.array([1.0, 1.0, 0.0, 0.0])
    p = np.array([[0.9, 0.2, 0.5], [0.2, 0.9, 0.5], [0.1, 0.5, 0.5], [0.5, 0.1, 0.5]])
    w = ensemble_selection(p, y, size=4)
    np.testing.assert_array_equal(w, [0.5, 0.5, 0.0])
    assert w.sum() == 1.0
    np.testing.assert_array_equal(ensemble_selection(p, y, size=1), [1.0, 0.0, 0.0])


def test_caruana_weights_sum_to_one_per_label_and_only_use_best_epochs():
    P, y = cube()
    est = CaruanaCombiner(columns=COLUMNS, n_bags=4, ensemble_size=10, inner_folds=0).fit(P, y)
    np.testing.assert_allclose(est.weights_.sum(axis=1), 1.0)
    assert (est.weights_ >= 0).all()
    for j in range(y.shape[1]):
        members = {COLUMNS[c][0] for c in np.flatnonzero(est.weights_[j])}
        used = np.flatnonzero(est.weights_[j])
        assert len(used) == len(members)  # at most one epoch per member
    assert est.oof_ is None


def test_mean_combiners_weights():
    P, y = cube()
    top = MeanCombiner(columns=COLUMNS, top_n=2, inner_folds=0).fit(P, y)
    for j in range(y.shape[1]):
        np.testing.assert_allclose(top.weights_[j, top.selection_.indices[j]], 0.5)
        assert np.count_nonzero(top.weights_[j]) == len(top.selection_.indices[j])
    members = MeanCombiner(columns=COLUMNS, pool="members", inner_folds=0).fit(P, y)
    np.testing.assert_allclose(members.weights_, np.where(members.weights_ > 0, 1 / 3, 0))
    expected = np.einsum("ncl,lc->nl", P, members.weights_)
    np.testing.assert_allclose(members.predict_proba(P), expected)


def test_inner_oof_never_sees_its_rows():
    """The inner-CV OOF of a row equals a fit without that row's fold."""
    P, y = cube(n=150)
    est = LogisticCombiner(columns=COLUMNS, inner_folds=3, seed=4).fit(P, y)
    folds = row_folds(y, 3, 4)
    other = clone(est).set_params(inner_folds=0).fit(P[folds != 1], y[folds != 1])
    np.testing.assert_allclose(est.oof_[folds == 1], other.predict_proba(P[folds == 1]))


def test_logistic_combiner_learns_and_handles_unknown_cells():
    P, y = cube(n=300)
    y[::7, 0] = np.nan
    est = LogisticCombiner(columns=COLUMNS, scope="all", C=1.0, inner_folds=3).fit(P, y)
    t = rule_thresholds(est.oof_, y, "per_label")
    f = fbeta_per_label(y, (est.oof_ >= t).astype(int))
    assert f.mean() > 0.75
    assert np.isfinite(est.oof_).all()


def test_threshold_rules():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 4)) < [0.05, 0.2, 0.4, 0.6]).astype(float)
    p = np.clip(y * 0.4 + rng.random(y.shape) * 0.6, 0, 1)
    own = rule_thresholds(p, y, "per_label")
    np.testing.assert_array_equal(own, ThresholdSearch().fit(p, y).thresholds_)
    glob = rule_thresholds(p, y, "global")
    assert len(set(glob)) == 1
    # the global threshold maximises the macro F2 over one shared threshold
    grid = np.round(np.arange(101) * 0.01, 10)
    macro = [fbeta_per_label(y, (p >= g).astype(int)).mean() for g in grid]
    assert fbeta_per_label(y, (p >= glob).astype(int)).mean() == pytest.approx(max(macro))
    shr = rule_thresholds(p, y, "shrunk", shrink=20.0)
    n_pos = y.sum(axis=0)
    expect = (n_pos * own + 20 * glob) / (n_pos + 20)
    np.testing.assert_allclose(shr, np.round(expect, 2), atol=1e-9)
    mixed = rule_thresholds(p, y, ["global", "per_label", "shrunk", "per_label"])
    np.testing.assert_allclose(mixed, [glob[0], own[1], shr[2], own[3]])
    with pytest.raises(ValueError, match="unknown threshold rule"):
        rule_thresholds(p, y, "median")


def test_shuffled_labels_leave_outer_cv_at_chance():
    """Columns built from the true labels (a strong, leaking feature) but labels shuffled:
    if the outer CV let a row's own label choose columns, weights or thresholds for it,
    the flexible candidates would score well above chance. They stay at chance."""
    rng = np.random.default_rng(7)
    n, n_labels = 300, 3
    y_true = (rng.random((n, n_labels)) < 0.3).astype(float)
    P = np.empty((n, len(COLUMNS), n_labels))
    for c in range(len(COLUMNS)):
        P[:, c] = np.clip(0.6 * y_true + 0.4 * rng.random(y_true.shape), 0, 1)
    y = y_true[rng.permutation(n)]
    combiners = make_combiners(
        ["xgb", "logistic_all", "caruana", "mean_top"],
        COLUMNS,
        small_stacker(),
        top_n=3,
        inner_folds=3,
    )
    outer = nested_cv(P, y, combiners, outer_folds=3, seed=0)
    prev = np.nanmean(y, axis=0)
    chance = (5 * prev / (4 * prev + 1)).mean()  # F2 of predicting every label
    assert outer.macro.max() < chance + 0.04, dict(zip(outer.candidates, outer.macro, strict=True))
    # power: a flexible stacker scored on the rows it was fit on (a leak) beats chance
    deep = PerLabelXGBStacker(
        eta=(0.3,),
        max_depth=(6,),
        min_child_weight=(0.1,),
        n_estimators=150,
        early_stopping_rounds=150,
        n_folds=3,
    )
    leaky = make_combiners(["xgb"], COLUMNS, deep, top_n=3, inner_folds=3)["xgb"].fit(P, y)
    p_in = leaky.predict_proba(P)
    in_sample = fbeta_per_label(y, (p_in >= rule_thresholds(p_in, y)).astype(int)).mean()
    assert in_sample > chance + 0.1


def test_choose_modes():
    P, y = cube(n=200)
    combiners = make_combiners(["mean_top", "logistic_own"], COLUMNS, top_n=2, inner_folds=3)
    outer = nested_cv(P, y, combiners, rules=("per_label", "global"), outer_folds=3)
    chosen, g = choose(outer, y, "global")
    assert (chosen == g).all() and g == int(np.argmax(outer.macro))
    per_label, _ = choose(outer, y, "per_label")
    np.testing.assert_array_equal(per_label, outer.per_label.argmax(axis=0))
    auto, _ = choose(outer, y, "auto")
    assert set(auto) <= set(per_label) | {g}
    with pytest.raises(ValueError, match="mode"):
        choose(outer, y, "best")


def test_second_level_is_deterministic_and_round_trips(tmp_path):
    P, y = cube(n=180, seed=3)
    labels = ["x", "y", "z"]

    def fit():
        combiners = make_combiners(COMBINERS, COLUMNS, small_stacker(), top_n=3, inner_folds=3)
        return fit_second_level(P, y, COLUMNS, labels, combiners, outer_folds=3, n_boot=200)

    a, b = fit(), fit()
    assert a.choice == b.choice
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    for f in ("second_level.json", "xgb/meta.json", "xgb/label0.fold0.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    loaded = SecondLevel.load(tmp_path / "a")
    np.testing.assert_array_equal(loaded.predict_proba(P), a.predict_proba(P))
    for name in COMBINERS:
        np.testing.assert_array_equal(
            loaded.combiners[name].predict_proba(P), a.combiners[name].predict_proba(P)
        )
    report = json.loads((tmp_path / "a" / "second_level.json").read_text())["report"]
    assert len(report["candidates"]) == len(COMBINERS) * 3
    assert set(report["chosen"]) == set(labels)
    assert set(loaded.used_columns) <= set(range(len(COLUMNS)))


def test_unknown_combiner_is_refused():
    with pytest.raises(ValueError, match="unknown combiner"):
        make_combiners(["ridge"], COLUMNS)


def test_pooled_xgb_fits_equal_one_by_one_fits():
    """The nested CV's XGBoost fits (every outer fold + the refit) run in one task pool;
    each must be exactly the model a fit of its own rows alone makes, and the outer CV
    built on them the same as one that fits in its loop."""
    from pipeline.ensemble.combiners import XGBCombiner
    from pipeline.ensemble.second_level import pooled_xgb_fits

    P, y = cube(n=180)
    y[::17, 1] = np.nan  # unknown cells are dropped per label in both paths
    stacker = PerLabelXGBStacker(
        eta=(0.1, 0.3), max_depth=(2,), min_child_weight=(1,), n_estimators=30, n_folds=3,
        n_jobs=2,
    )  # fmt: skip
    combiners = {
        "xgb": XGBCombiner(COLUMNS, stacker=stacker, inner_folds=3),
        "mean_top": MeanCombiner(COLUMNS, top_n=2, inner_folds=3),
    }
    folds = row_folds(y, 3, 0)
    pooled = pooled_xgb_fits(P, y, combiners, folds, refit=True)
    assert sorted(pooled, key=str) == sorted(
        [(0, "xgb"), (1, "xgb"), (2, "xgb"), (None, "xgb")], key=str
    )
    for (k, _), fitted in pooled.items():
        rows = slice(None) if k is None else folds != k
        alone = clone(combiners["xgb"]).fit(P[rows], y[rows])
        np.testing.assert_array_equal(fitted.oof_, alone.oof_)
        np.testing.assert_array_equal(fitted.predict_proba(P), alone.predict_proba(P))
        assert fitted.stacker_.best_params_ == alone.stacker_.best_params_
    looped = nested_cv(P, y, combiners, outer_folds=3, prefitted={})
    pooled_cv = nested_cv(P, y, combiners, outer_folds=3)
    np.testing.assert_array_equal(looped.per_label, pooled_cv.per_label)
    np.testing.assert_array_equal(looped.pred, pooled_cv.pred)


def test_the_exported_second_level_predicts_as_the_fitted_one(tmp_path):
    """``make export`` writes the chosen combiners as JSON (XGBoost's own JSON boosters);
    the runtime (``pipeline.runtime.exported.SecondLevel``, NumPy) predicts what they predict, for
    every combiner kind."""
    from pipeline.export import second_level_state
    from pipeline.runtime.exported import SecondLevel as ExportedSecondLevel

    P, y = cube(n=150, seed=5)
    labels = ["x", "y", "z"]
    combiners = make_combiners(COMBINERS, COLUMNS, small_stacker(), top_n=3, inner_folds=0)
    fitted = {name: est.fit(P, y) for name, est in combiners.items()}
    models = tmp_path / "models"
    SecondLevel(labels, COLUMNS, fitted, [("xgb", "per_label")] * 3, {}).save(models)
    for name in COMBINERS:
        level = SecondLevel(labels, COLUMNS, fitted, [(name, "per_label")] * 3, {})
        second_level_state(level, models, tmp_path / name)
        got = ExportedSecondLevel(tmp_path / name).predict_proba(P)
        np.testing.assert_allclose(got, level.predict_proba(P), atol=1e-7, err_msg=name)
    mixed = SecondLevel(
        labels, COLUMNS, fitted, [("xgb", "r"), ("caruana", "r"), ("logistic_all", "r")], {}
    )
    second_level_state(mixed, models, tmp_path / "mixed")
    np.testing.assert_allclose(
        ExportedSecondLevel(tmp_path / "mixed").predict_proba(P), mixed.predict_proba(P), atol=1e-7
    )


def _outer(y: np.ndarray, preds: dict[tuple[str, str], np.ndarray]) -> OuterCV:
    pred = np.stack(list(preds.values())).astype(bool)
    per_label = np.stack([fbeta_per_label(y, p) for p in pred])
    return OuterCV(list(preds), per_label, pred, np.zeros(len(y), dtype=np.int64))


def test_guard_keeps_the_incumbent_unless_beaten_with_an_interval_above_zero():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 4)) < 0.3).astype(np.float64)
    flip = rng.random(y.shape) < 0.3
    incumbent = np.where(flip, 1 - y, y)
    near = incumbent.copy()
    near[:3] = y[:3]  # three rows fixed: a better outer-CV score, within the noise
    far = np.where(rng.random(y.shape) < 0.05, 1 - y, y)  # far better everywhere
    inc = ("mean_members", "shrunk")

    outer = _outer(y, {("xgb", "per_label"): near, inc: incumbent})
    assert int(np.argmax(outer.macro)) == 0
    g, record = global_winner(outer, y, inc, n_boot=500)
    assert g == 1 and record["kept"] and record["low"] <= 0 < record["gain"]
    assert record["challenger"] == {"combiner": "xgb", "rule": "per_label"}
    chosen, g2 = choose(outer, y, "global", g=g)
    assert g2 == 1 and (chosen == 1).all()

    outer = _outer(y, {("xgb", "per_label"): near, inc: incumbent, ("caruana", "global"): far})
    g, record = global_winner(outer, y, inc, n_boot=500)
    assert g == 2 and not record["kept"] and record["low"] > 0

    assert global_winner(outer, y, None) == (2, None)  # no guard: the plain argmax
    with pytest.raises(ValueError, match="not a candidate"):
        global_winner(outer, y, ("logistic_all", "rate"))


def test_fit_second_level_records_the_guard_and_the_page_shows_it():
    from pipeline.report.page import second_level_tables

    P, y = cube(n=180, seed=5)
    combiners = make_combiners(
        ["mean_members", "logistic_own"], COLUMNS, small_stacker(), top_n=3, inner_folds=3
    )
    inc = ("mean_members", "shrunk")
    level = fit_second_level(
        P,
        y,
        COLUMNS,
        ["x", "y", "z"],
        combiners,
        ("per_label", "shrunk"),
        3,
        "global",
        n_boot=200,
        incumbent=inc,
    )
    guard = level.report["guard"]
    assert guard["incumbent"] == {"combiner": "mean_members", "rule": "shrunk"}
    winner = level.report["global_winner"]
    assert (winner == guard["incumbent"]) == guard["kept"]
    assert set(level.choice) == {(winner["combiner"], winner["rule"])}
    tables = second_level_tables(level.report, {"combiners": {}})
    (rows,) = [rows for title, (_, rows) in tables.items() if "guard" in title]
    assert rows[0][0] == "mean_members/shrunk"
