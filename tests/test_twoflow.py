"""Tests for pipeline.members.twoflow: the Two-Flow estimator and the per-fold stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from pipeline.members.twoflow import TwoFlowModel, person_product_accuracy
from tests.conftest import tiny_config_text, write_dataset

SMALL = dict(n_components=24, pixel_size=8, n_trees=30, top_features=16, selector_trees=10)


def _synthetic(n: int, seed: int):
    """Label 0 paints the top-left quadrant (pixels), label 1 shifts deep feature 0 (deep),
    label 2 is noise; label 3 has one class only."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 4)) < [0.4, 0.3, 0.3, 0.0]).astype(np.float64)
    imgs = rng.integers(0, 60, (n, 16, 16, 3), dtype=np.uint8)
    imgs[y[:, 0] == 1, :8, :8] = (220, 40, 40)
    deep = rng.normal(size=(n, 6)).astype(np.float32)
    deep[:, 0] += 3.0 * y[:, 1]
    return imgs, deep, y


def test_learns_visible_signal_better_than_prevalence():
    imgs, deep, y = _synthetic(240, 0)
    y[::7, 0] = np.nan  # unknown cells are dropped from that label only
    model = TwoFlowModel(**SMALL, seed=3).fit(imgs[:160], deep[:160], y[:160])
    p = model.predict_proba(imgs[160:], deep[160:])
    assert p.shape == (80, 4) and p.dtype == np.float32
    assert ((p >= 0) & (p <= 1)).all()
    truth = y[160:]
    for j in (0, 1):  # the pixel signal and the deep signal are both found
        known = ~np.isnan(truth[:, j])
        prev = np.nanmean(y[:160, j])
        brier = np.mean((p[known, j] - truth[known, j]) ** 2)
        brier_prev = np.mean((prev - truth[known, j]) ** 2)
        assert brier < 0.5 * brier_prev, (j, brier, brier_prev)
    assert model.forests_[3] is None and np.all(p[:, 3] == 0.0)  # single class -> prevalence
    assert len(model.selected_) == SMALL["top_features"]
    assert model.n_deep_ == 6


def test_deterministic_and_sklearn_contract():
    imgs, deep, y = _synthetic(80, 1)
    a = TwoFlowModel(**SMALL, seed=5)
    b = clone(a)
    assert b.get_params() == a.get_params()
    pa = a.fit(imgs, deep, y).predict_proba(imgs, deep)
    pb = b.fit(imgs, deep, y).predict_proba(imgs, deep)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.selected_, b.selected_)
    pc = TwoFlowModel(**SMALL, seed=6).fit(imgs, deep, y).predict_proba(imgs, deep)
    assert not np.array_equal(pa, pc)
    with pytest.raises(ValueError, match="X_deep has 5 columns"):
        a.predict_proba(imgs, deep[:, :5])


def test_person_product_accuracy():
    assert person_product_accuracy([1, 0, np.nan, 1], [1, 1, 0, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="binary"):
        person_product_accuracy([1, 0], [0.7, 0.2])


@pytest.fixture(scope="module")
def fold_setup(tmp_path_factory):
    """Tiny data, a folds file, an untrained-but-real small_cnn checkpoint per fold and
    its embedding file."""
    import keras

    from pipeline.config.schema import load_config
    from pipeline.data.folds import make_folds
    from pipeline.models.backbones import build_model
    from pipeline.models.cnn_embed import embed_fold

    root = tmp_path_factory.mktemp("twoflow")
    data = write_dataset(root, n_train=30, n_test=6, size=32, n_labels=3)
    cfg_path = root / "tiny.toml"
    cfg_path.write_text(tiny_config_text(root))
    cfg = load_config(cfg_path)
    ids = data["train"]["image"].to_numpy()
    folds = make_folds(data["train"].iloc[:, 1:].to_numpy(float), 3, 0)
    folds_csv = root / "folds.csv"
    pd.DataFrame({"image": ids, "fold": folds}).to_csv(folds_csv, index=False)
    model = build_model("small_cnn", 3, 32, "none", 1, 16, 8, seed=0)
    for k in range(3):
        (root / f"cnn{k}").mkdir()
        model.save(root / f"cnn{k}" / "ckpt_epoch002.keras")
        embed_fold(cfg, "small_cnn", k, folds_csv, root / f"cnn{k}", embedding(root, k))
    keras.utils.set_random_seed(0)
    return root, cfg, folds_csv, ids, folds, data


def embedding(root, k: int):
    """Where the fixture keeps fold ``k``'s embedding file (`make embed-cnn`)."""
    return root / "embed" / f"cnn.small_cnn.fold{k}.npz"


def test_fold_files_match_cnn_format_no_leak_and_deterministic(fold_setup, monkeypatch):
    from pipeline.ensemble.select import load_base_predictions
    from pipeline.members.twoflow import run_twoflow_fold

    root, cfg, folds_csv, ids, folds, data = fold_setup
    seen = []
    real_fit = TwoFlowModel.fit

    def spy_fit(self, X_pixels, X_deep, y):
        seen.append((len(X_pixels), len(X_deep), y.shape))
        return real_fit(self, X_pixels, X_deep, y)

    monkeypatch.setattr(TwoFlowModel, "fit", spy_fit)
    twoflow_files, cnn_files = [], []
    test_ids = data["test"]["image"].to_numpy()
    for k in range(3):
        out = root / "preds" / f"twoflow.fold{k}.npz"
        res = run_twoflow_fold(
            cfg, "small_cnn", k, folds_csv, embedding(root, k), out, model=TwoFlowModel(**SMALL)
        )
        # No leakage: the forests never saw fold k, and fold k is exactly what was predicted.
        assert not set(res["fit_paths"]) & set(res["val_paths"])
        assert sorted(res["val_ids"]) == sorted(ids[folds == k])
        assert seen[-1][0] == seen[-1][1] == (folds != k).sum()
        twoflow_files.append(out)
        # A CNN file for the same fold, as pipeline.train.fold.train_fold writes it.
        cnn = root / "preds" / f"small_cnn.fold{k}.npz"
        n_val = (folds == k).sum()
        np.savez(
            cnn,
            labels=np.array(["lab0", "lab1", "lab2"]),
            val_ids=ids[folds == k].astype(str),
            test_ids=test_ids.astype(str),
            epochs=np.arange(1, 3),
            oof=np.full((2, n_val, 3), 0.5, np.float32),
            test=np.full((2, len(test_ids), 3), 0.5, np.float32),
            loss=np.array([0.5, 0.4], np.float32),
        )
        cnn_files.append(cnn)

    with np.load(twoflow_files[0]) as tf_npz, np.load(cnn_files[0]) as cnn_npz:
        assert sorted(tf_npz.files) == sorted(cnn_npz.files)
        for key in cnn_npz.files:
            assert tf_npz[key].dtype.kind == cnn_npz[key].dtype.kind, key
            assert tf_npz[key].ndim == cnn_npz[key].ndim, key
        assert tf_npz["epochs"].tolist() == [1]
        assert tf_npz["oof"].shape == (1, (folds == 0).sum(), 3)
        assert np.isnan(tf_npz["loss"]).all()

    base = load_base_predictions({"small_cnn": cnn_files, "twoflow": twoflow_files}, ids)
    assert base.columns == [("small_cnn", 1), ("small_cnn", 2), ("twoflow", 1)]
    assert base.oof.shape == (30, 3, 3) and base.test.shape == (3, 6, 3, 3)

    # Determinism: the same fold again gives the same file, bit for bit.
    again = root / "again.npz"
    run_twoflow_fold(
        cfg, "small_cnn", 0, folds_csv, embedding(root, 0), again, model=TwoFlowModel(**SMALL)
    )
    with np.load(again) as a, np.load(twoflow_files[0]) as b:
        for key in ("oof", "test", "val_ids"):
            np.testing.assert_array_equal(a[key], b[key])


def test_stage_cli_and_missing_inputs(fold_setup, tmp_path):
    from stages.embed_cnn import main as embed_main
    from stages.twoflow import main

    root, cfg, folds_csv, *_ = fold_setup
    common = ["--config", str(root / "tiny.toml"), "--backbone", "small_cnn", "--fold", "1"]
    common += ["--folds", str(folds_csv)]
    out = tmp_path / "x.npz"
    # no embedding file: a clear error, nothing written
    assert main([*common, "--embedding", str(tmp_path / "none.npz"), "--out", str(out)]) == 2
    assert not out.exists()
    # a work dir without checkpoints cannot be embedded
    empty = tmp_path / "empty"
    empty.mkdir()
    emb = tmp_path / "emb.npz"
    assert embed_main([*common, "--cnn-work-dir", str(empty), "--out", str(emb)]) == 2
    assert not emb.exists()
    # the CLI writes what the library does
    assert main([*common, "--embedding", str(embedding(root, 1)), "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["oof"].shape == (1, len(z["val_ids"]), 3)
