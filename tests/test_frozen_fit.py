"""The frozen heads' refits: OOF-error filtering ([denoise]) and pseudo-labels ([pseudo]).

The leak checks: fold k's labels never change what fold k's head predicts for fold k's
rows (they are neither fitted nor used to pick rows or pseudo-labels), filtering never
removes a scored row, and a pseudo-label round never reads the test truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import load_fold_predictions, save_embeddings, save_single_epoch_predictions
from pipeline.config.schema import config_from_dict, load_config
from pipeline.members.frozen import load_head
from pipeline.members.frozen_fit import (
    confidence_cuts,
    denoise_weights,
    inner_oof_losses,
    pseudo_labels,
    row_losses,
    run_frozen_fold,
    teacher,
)
from pipeline.runtime.heads import KNNHead, LogisticHead
from tests.conftest import tiny_config_text, write_dataset

N_FOLDS = 3


def test_row_losses_average_the_known_cells():
    p = np.array([[0.9, 0.2], [0.5, 0.5]])
    y = np.array([[1.0, np.nan], [np.nan, np.nan]])
    np.testing.assert_allclose(row_losses(p, y), [-np.log(0.9), 0.0])


def test_denoise_marks_the_rows_above_the_quantile():
    losses = np.arange(10.0)
    np.testing.assert_array_equal(denoise_weights(losses, 0.8, 0.0), [1] * 8 + [0, 0])
    np.testing.assert_array_equal(denoise_weights(losses, 0.8, 0.5), [1] * 8 + [0.5, 0.5])


def test_inner_oof_losses_find_flipped_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 2)) < 0.4).astype(float)
    X = rng.normal(size=(300, 8))
    X[:, :2] += 5 * y
    noisy = y.copy()
    flipped = np.arange(0, 300, 30)
    noisy[flipped] = 1 - noisy[flipped]
    losses = inner_oof_losses(X, noisy, np.arange(300) % 4, k=15)
    top = np.argsort(-losses)[: len(flipped)]
    assert len(set(top) & set(flipped)) >= 8  # the mislabelled rows have the extreme losses
    with pytest.raises(ValueError, match="two folds"):
        inner_oof_losses(X, noisy, np.zeros(300, int))


def test_sample_weights_of_one_change_nothing_and_lower_ones_count_less():
    rng = np.random.default_rng(1)
    y = (rng.random((120, 2)) < 0.4).astype(float)
    X = rng.normal(size=(120, 6)) + y[:, :1]
    for make in (lambda: LogisticHead(C=0.5), lambda: KNNHead(k=10)):
        plain = make().fit(X, y).predict_proba(X[:10])
        ones = make().fit(X, y, sample_weight=np.ones(120)).predict_proba(X[:10])
        np.testing.assert_allclose(ones, plain, atol=1e-6)
        w = np.where(y[:, 0] == 1, 0.2, 1.0)  # label 0's positives count less
        pos = y[:, 0] == 1
        lowered = make().fit(X, y, sample_weight=w).predict_proba(X[pos])[:, 0]
        assert lowered.mean() < make().fit(X, y).predict_proba(X[pos])[:, 0].mean()


def test_confidence_cuts_reach_the_precision_on_enough_rows():
    p = np.linspace(0, 1, 101)[:, None]
    y = (p >= 0.7).astype(float)
    y[95, 0] = 0.0  # one false positive among the top
    y[3, 0] = 1.0  # one false negative among the bottom
    lo, hi = confidence_cuts(p, y, precision=0.9, min_rows=5)
    top = p[:, 0] >= hi[0]
    assert y[top, 0].mean() >= 0.9 and top.sum() >= 5
    assert hi[0] <= 0.7  # the lowest qualifying cut
    bottom = p[:, 0] <= lo[0]
    assert y[bottom, 0].sum() <= 0.1 * y[:, 0].sum() and lo[0] >= 0.6
    # a rare label: calling every row negative has an NPV of 95%, but misses every positive
    rare = np.zeros((100, 1))
    rare[[10, 50, 70, 80, 90], 0] = 1.0
    lo, _ = confidence_cuts(p[:100], rare, precision=0.9, min_rows=5)
    assert lo[0] < 0.1  # only the rows below the lowest positive
    # a label with too few rows gives no cut
    lo, hi = confidence_cuts(p[:3], y[:3], precision=0.9, min_rows=5)
    assert np.isinf(lo[0]) and np.isinf(hi[0])
    labels = pseudo_labels(np.array([[0.05], [0.5], [0.99]]), np.array([0.1]), np.array([0.9]))
    np.testing.assert_array_equal(labels, [[0.0], [np.nan], [1.0]])


# --- the fold job, end to end on a tiny data set --------------------------------------


def _setup(root, extra=""):
    write_dataset(root, n_train=60, n_test=12)
    text = tiny_config_text(root) + (
        '\n[[frozen]]\nname = "feat"\nbackbone = "small_cnn"\nweights = "none"\n'
        'image_size = 32\nheads = ["logistic", "knn"]\n' + extra
    )
    (root / "c.toml").write_text(text)
    cfg = load_config(root / "c.toml")
    from pipeline.data.contract import read_labels, read_test_ids

    table = read_labels(cfg.data.train_dir)
    test_ids, _ = read_test_ids(cfg.data.test_dir)
    folds = np.arange(len(table.ids)) % N_FOLDS
    pd.DataFrame({"image": table.ids, "fold": folds}).to_csv(root / "folds.csv", index=False)
    rng = np.random.default_rng(0)
    y0 = np.nan_to_num(table.y)
    train = rng.normal(size=(len(table.ids), 8))
    train[:, : y0.shape[1]] += 3 * y0
    test = rng.normal(size=(len(test_ids), 8))
    save_embeddings(root / "feat.npz", table.ids, test_ids, train, test, "small_cnn", 32)
    return cfg, table, test_ids, folds


def _teacher_files(root, table, test_ids, folds):
    """Two base members' fold files: OOF near the labels, test probabilities spread."""
    rng = np.random.default_rng(3)
    files = []
    for member in ("a", "b"):
        for k in range(N_FOLDS):
            va = folds == k
            oof = np.clip(
                np.nan_to_num(table.y[va]) * 0.8 + rng.random(table.y[va].shape) * 0.2, 0, 1
            )
            test = rng.random((len(test_ids), len(table.labels)))
            path = root / "base" / f"{member}.fold{k}.npz"
            path.parent.mkdir(exist_ok=True)
            save_single_epoch_predictions(path, table.labels, table.ids[va], test_ids, oof, test)
            files.append(path)
    return files


def _fold(cfg, root, member, k, teacher_files=(), tag="x"):
    out = root / f"{tag}.{member}.fold{k}.npz"
    head = root / f"{tag}.{member}.fold{k}.head.npz"
    summary = run_frozen_fold(
        cfg, member, k, root / "folds.csv", root / "feat.npz", out, head, teacher_files
    )
    return load_fold_predictions(out), load_head(head), summary


def _relabel_fold(root, table, folds, k):
    """Flip fold k's training labels in labels.csv (the other rows unchanged)."""
    path = root / "train" / "labels.csv"
    df = pd.read_csv(path, dtype={"image": str})
    rows = np.flatnonzero(folds == k)
    for col in table.labels:
        df.loc[rows, col] = 1 - df.loc[rows, col]
    df.to_csv(path, index=False)


def test_denoise_drops_training_rows_only_and_ignores_the_fold_own_labels(tmp_path):
    cfg, table, test_ids, folds = _setup(tmp_path, "\n[denoise]\nenabled = true\nquantile = 0.8\n")
    pred, head, summary = _fold(cfg, tmp_path, "feat_knn", 1)
    # every fold-1 row is scored; the fit lost the rows above the quantile
    np.testing.assert_array_equal(pred["val_ids"], table.ids[folds == 1])
    assert summary["denoised"] > 0 and len(head.y_) == (folds != 1).sum() - summary["denoised"]
    # flipping fold 1's own labels changes nothing fold 1's head predicts
    _relabel_fold(tmp_path, table, folds, 1)
    cfg = load_config(tmp_path / "c.toml")
    again, _, _ = _fold(cfg, tmp_path, "feat_knn", 1, tag="y")
    np.testing.assert_array_equal(again["oof"], pred["oof"])
    np.testing.assert_array_equal(again["test"], pred["test"])


def test_pseudo_twin_adds_confident_test_rows_and_never_reads_the_test_truth(tmp_path):
    cfg, table, test_ids, folds = _setup(
        tmp_path, "\n[pseudo]\nenabled = true\nprecision = 0.6\nmin_rows = 2\n"
    )
    files = _teacher_files(tmp_path, table, test_ids, folds)
    truth = tmp_path / "test" / "truth.csv"
    pd.DataFrame({"image": test_ids, **{c: 1 for c in table.labels}}).to_csv(truth, index=False)
    cfg = load_config(tmp_path / "c.toml")
    pred, head, summary = _fold(cfg, tmp_path, "feat_knn_pl", 0, files)
    assert summary["pseudo_rows"] > 0
    assert len(head.y_) == (folds != 0).sum() + summary["pseudo_rows"]
    np.testing.assert_array_equal(pred["val_ids"], table.ids[folds == 0])
    # the teacher of fold 0: fold 0's test predictions, the other folds' OOF only
    oof, p_test = teacher(files, table.ids, folds, test_ids, table.labels, 0)
    assert np.isnan(oof[folds == 0]).all() and not np.isnan(oof[folds != 0]).any()
    fold0 = [load_fold_predictions(f)["test"][0] for f in files if ".fold0." in f.name]
    np.testing.assert_allclose(p_test, np.mean(fold0, axis=0))
    # inverted test truth, and fold 0's own labels flipped: the same twin
    pd.DataFrame({"image": test_ids, **{c: 0 for c in table.labels}}).to_csv(truth, index=False)
    _relabel_fold(tmp_path, table, folds, 0)
    again, _, _ = _fold(load_config(tmp_path / "c.toml"), tmp_path, "feat_knn_pl", 0, files, "y")
    np.testing.assert_array_equal(again["oof"], pred["oof"])
    np.testing.assert_array_equal(again["test"], pred["test"])
    with pytest.raises(ValueError, match="teacher"):
        _fold(cfg, tmp_path, "feat_knn_pl", 0)


def test_pseudo_and_seed_repeat_configs_are_checked():
    base = {
        "data": {"train_dir": "a", "test_dir": "b"},
        "train": {"backbones": [{"name": "small_cnn"}]},
        "frozen": [{"name": "f", "backbone": "small_cnn", "image_size": 32, "heads": ["knn"]}],
    }
    cfg = config_from_dict({**base, "pseudo": {"enabled": True}})
    from pipeline.config.schema import pseudo_members

    assert pseudo_members(cfg) == ["f_knn"]
    with pytest.raises(ValueError, match="not frozen members"):
        config_from_dict({**base, "pseudo": {"enabled": True, "members": ["f_svm"]}})
    with pytest.raises(ValueError, match="taken"):
        config_from_dict(
            {
                **base,
                "train": {
                    "backbones": [{"name": "small_cnn"}, {"name": "f_knn_pl", "arch": "small_cnn"}]
                },
                "pseudo": {"enabled": True},
            }
        )
    repeat = config_from_dict(
        {
            **base,
            "train": {
                "backbones": [
                    {"name": "small_cnn"},
                    {"name": "cnn_s2", "arch": "small_cnn", "seed": 3},
                ]
            },
        }
    )
    b = repeat.backbone("cnn_s2")
    assert b.architecture == "small_cnn" and repeat.train.fold_seed(2, b.seed) == 3002
