"""An XGBoost booster scored in NumPy from its JSON (pipeline.runtime.xgb_trees) predicts
what ``Booster.inplace_predict`` predicts, missing values and split boundaries included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from pipeline.runtime.xgb_trees import BoosterArrays


def _booster(rng, objective="binary:logistic", rounds=25, **params):
    X = rng.normal(size=(400, 8)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan  # missing values learn a default side
    y = (np.nan_to_num(X[:, 0]) + 0.7 * np.nan_to_num(X[:, 3]) + 0.3 * rng.normal(size=400)) > 0.2
    dtrain = xgb.DMatrix(X, label=y.astype(np.float32), missing=np.nan)
    params = {"objective": objective, "max_depth": 4, "eta": 0.3, "seed": 0, "nthread": 1}
    return X, xgb.train({**params}, dtrain, num_boost_round=rounds)


def _arrays(booster) -> BoosterArrays:
    return BoosterArrays(json.loads(booster.save_raw(raw_format="json")))


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:logistic"])
def test_numpy_trees_equal_xgboost(objective):
    rng = np.random.default_rng(0)
    X, booster = _booster(rng, objective)
    new = rng.normal(size=(300, 8)).astype(np.float32)
    new[rng.random(new.shape) < 0.2] = np.nan
    arrays = _arrays(booster)
    # rows exactly on split values: equal values go right, as in XGBoost
    model = json.loads(booster.save_raw(raw_format="json"))
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    on_split = np.zeros((1, 8), dtype=np.float32)
    on_split[0, tree["split_indices"][0]] = tree["split_conditions"][0]
    for rows in (X, new, on_split):
        want = booster.inplace_predict(rows)
        got = arrays.predict(rows)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("positives", [0, 400])
def test_a_label_of_one_class_keeps_xgboosts_clipped_base_score(positives):
    """A fold where a rare label has no positive stores base score 0 (or 1 with no
    negative): XGBoost clips it to 1e-6 before the logit, and so do the NumPy trees."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = np.full(400, float(positives > 0), dtype=np.float32)
    params = {"objective": "binary:logistic", "max_depth": 3, "seed": 0, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=3)
    np.testing.assert_allclose(_arrays(booster).predict(X), booster.inplace_predict(X), rtol=1e-5)


def test_other_objectives_are_refused_by_name():
    rng = np.random.default_rng(2)
    _, booster = _booster(rng, "reg:squarederror", rounds=2)
    with pytest.raises(ValueError, match="reg:squarederror.*only gbtree"):
        _arrays(booster)


def test_benchmark_writes_its_json(tmp_path, capsys):
    from benchmarks import bench_xgb_trees

    out = tmp_path / "bench" / "xgb_trees.json"
    argv = ["--rows", "120", "--labels", "3", "--folds", "2", "--repeats", "1"]
    assert bench_xgb_trees.main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["boosters"] == 6 and result["largest_difference"] <= 1e-6
    assert result["import_xgboost_s"] > 0 and result["numpy_all_rows_s"] > 0
    assert capsys.readouterr().out.startswith("bench-xgb-trees: 6 boosters")
    assert [f.name for f in out.parent.iterdir()] == ["xgb_trees.json"]
