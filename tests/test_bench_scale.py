"""The competition-scale generator (benchmarks.scale_data) and the scale bench's helpers."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_scale import growth, write_config
from benchmarks.scale_data import JD_N_TRAIN, ScaleSpec, exact_labels, generate, jd_prevalences
from pipeline.config.schema import load_config
from pipeline.ensemble.select import group_pred_files, load_base_predictions
from pipeline.metrics import best_threshold_fbeta


def test_prevalences_span_the_jd_table():
    p = jd_prevalences(13)
    assert len(p) == 13 and np.all(np.diff(p) > 0)
    assert p[0] * JD_N_TRAIN == pytest.approx(104)
    assert p[-1] * JD_N_TRAIN == pytest.approx(49_893)
    y = exact_labels(54_908, p, np.random.default_rng(0))
    assert y.sum(axis=0)[0] == 104 and y.sum(axis=0)[-1] == 49_893


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    spec = ScaleSpec(n_train=1100, n_members=4, n_epochs=3)
    return spec, out, generate(spec, out)


def test_files_are_the_pipelines_formats_with_exact_prevalences(small_run):
    spec, out, info = small_run
    table = pd.read_csv(info["train_dir"] / "labels.csv", dtype={"image": str})
    y = table[info["labels"]].to_numpy()
    assert len(table) == 1100 and spec.test_rows == 200
    np.testing.assert_array_equal(
        y.sum(axis=0), np.maximum(1, np.round(jd_prevalences() * 1100)).astype(int)
    )
    truth = pd.read_csv(info["test_truth"])
    assert len(truth) == 200 and list(truth.columns) == ["image", *info["labels"]]
    base = load_base_predictions(group_pred_files(info["preds"]), table["image"].to_numpy())
    assert base.oof.shape == (1100, 4 * 3, 13) and base.test.shape == (5, 200, 4 * 3, 13)
    assert base.columns[:3] == [("m00", 1), ("m00", 2), ("m00", 3)]
    folds = pd.read_csv(info["folds"])
    assert sorted(np.bincount(folds["fold"])) == [220] * 5


def test_members_differ_in_strength_and_epochs_correlate(small_run):
    _, _, info = small_run
    table = pd.read_csv(info["train_dir"] / "labels.csv", dtype={"image": str})
    y = table[info["labels"]].to_numpy().astype(float)
    base = load_base_predictions(group_pred_files(info["preds"]), table["image"].to_numpy())
    j = 12  # the commonest label: the F2 of each member's last epoch
    f2 = [best_threshold_fbeta(y[:, j], base.oof[:, 3 * m + 2, j])[0] for m in range(4)]
    assert max(f2) - min(f2) > 0.005
    same_member = np.corrcoef(base.oof[:, 1, 6], base.oof[:, 2, 6])[0, 1]
    other_member = np.corrcoef(base.oof[:, 2, 6], base.oof[:, 5, 6])[0, 1]
    assert same_member > other_member > 0.3  # errors shared by all members, more by epochs


def test_generation_is_deterministic(small_run, tmp_path):
    spec, _, info = small_run
    again = generate(spec, tmp_path)
    for a, b in zip(info["preds"][:3], again["preds"][:3], strict=True):
        with np.load(a) as x, np.load(b) as z:
            assert (
                hashlib.sha256(x["oof"].tobytes()).digest()
                == hashlib.sha256(z["oof"].tobytes()).digest()
            )


def test_config_loads_and_growth_fits_a_power_law(small_run):
    _, out, info = small_run
    cfg = load_config(write_config(out / "c.toml", info, {"search": "halving", "eta": [0.1]}))
    assert cfg.stack.search == "halving" and cfg.stack.eta == (0.1,)
    assert growth([1000, 4000, 16000], [1.0, 4.0, 16.0]) == pytest.approx(1.0)
    assert growth([1000, 2000], [1.0, 8.0]) == pytest.approx(3.0)
