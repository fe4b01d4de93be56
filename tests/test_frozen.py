"""Frozen-feature members: heads, the fold protocol, the embedding file, the config."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.artifacts import load_embeddings, save_embeddings
from pipeline.config.schema import config_from_dict, load_config
from pipeline.ensemble.select import load_base_predictions
from pipeline.members.frozen import load_head, save_head
from pipeline.members.frozen_fit import run_frozen_fold
from pipeline.metrics import fbeta_per_label
from pipeline.runtime.heads import KNNHead, LogisticHead, knn_normalise
from tests.conftest import tiny_config_text, write_dataset


def features(n=200, n_labels=3, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < [0.2, 0.4, 0.5][:n_labels]).astype(float)
    X = rng.normal(size=(n, 16))
    X[:, :n_labels] += 4.0 * y
    return X, y


@pytest.mark.parametrize("head", [LogisticHead(C=0.5), KNNHead(k=10)], ids=["logistic", "knn"])
def test_heads_learn_mask_unknown_and_round_trip(head, tmp_path):
    X, y = features()
    y[::5, 1] = np.nan
    head.fit(X[:150], y[:150])
    p = head.predict_proba(X[150:])
    assert p.shape == (50, 3) and ((p >= 0) & (p <= 1)).all()
    f = fbeta_per_label(y[150:], (p >= 0.3).astype(int))
    assert f.mean() > 0.8
    save_head(tmp_path / "h.npz", head)
    np.testing.assert_array_equal(load_head(tmp_path / "h.npz").predict_proba(X[150:]), p)


def test_knn_head_is_the_weighted_share_of_known_neighbours():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    y = np.array([[1.0], [np.nan], [0.0], [0.0]])
    head = KNNHead(k=2).fit(X, y)
    q = np.array([[1.0, 0.05]])
    z = knn_normalise(q, head.mean_) @ head.train_.T
    top = np.argsort(-z[0])[:2]
    w = np.maximum(z[0, top], 0) ** 3
    known = ~np.isnan(y[top, 0])
    prior = np.nanmean(y[:, 0])
    expect = (np.sum(w * np.nan_to_num(y[top, 0]) * known) + prior) / (np.sum(w * known) + 1)
    assert head.predict_proba(q)[0, 0] == pytest.approx(expect)


def frozen_config(root):
    write_dataset(root, n_train=45, n_test=9)
    text = tiny_config_text(root) + (
        '\n[[frozen]]\nname = "feat"\nbackbone = "small_cnn"\nweights = "none"\n'
        'image_size = 32\nheads = ["logistic", "knn"]\n'
    )
    (root / "c.toml").write_text(text)
    return load_config(root / "c.toml")


def test_fold_heads_fit_only_other_folds_and_write_the_fold_format(tmp_path):
    import pandas as pd

    from pipeline.data.contract import read_labels, read_test_ids

    cfg = frozen_config(tmp_path)
    table = read_labels(cfg.data.train_dir)
    test_ids, _ = read_test_ids(cfg.data.test_dir)
    folds = np.arange(len(table.ids)) % 3
    pd.DataFrame({"image": table.ids, "fold": folds}).to_csv(tmp_path / "folds.csv", index=False)
    rng = np.random.default_rng(0)
    train = rng.normal(size=(len(table.ids), 8)) + 2 * np.nan_to_num(table.y[:, :1])
    emb = tmp_path / "feat.npz"
    save_embeddings(emb, table.ids, test_ids, train, rng.normal(size=(9, 8)), "small_cnn", 32)
    assert load_embeddings(emb)["train"].dtype == np.float32
    files = {}
    for member in ("feat_logistic", "feat_knn"):
        files[member] = []
        for k in range(3):
            out = tmp_path / f"{member}.fold{k}.npz"
            run_frozen_fold(
                cfg, member, k, tmp_path / "folds.csv", emb, out, tmp_path / f"{member}{k}.h"
            )
            files[member].append(out)
    base = load_base_predictions(files, table.ids)
    assert base.oof.shape == (45, 2, 4) and base.test.shape == (3, 9, 2, 4)
    # fold 1's kNN head holds exactly the rows outside fold 1 (its training set)
    head = load_head(tmp_path / "feat_knn1.h")
    assert len(head.y_) == int((folds != 1).sum())
    np.testing.assert_array_equal(head.y_, table.y[folds != 1])
    with pytest.raises(ValueError, match="not a frozen member"):
        run_frozen_fold(cfg, "feat_svm", 0, tmp_path / "folds.csv", emb, tmp_path / "x.npz")


def test_frozen_config_is_validated(tmp_path):
    base = {
        "data": {"train_dir": "a", "test_dir": "b"},
        "train": {"backbones": [{"name": "small_cnn"}]},
    }
    cfg = config_from_dict({**base, "frozen": [{"name": "f", "backbone": "mobilenet_v2_pt"}]})
    assert cfg.frozen[0].image_size == 224 and cfg.frozen[0].heads == ("logistic",)
    with pytest.raises(ValueError, match="heads"):
        config_from_dict({**base, "frozen": [{"name": "f", "backbone": "x", "heads": ["svm"]}]})
    dup = [{"name": "f", "backbone": "x"}, {"name": "f", "backbone": "y"}]
    with pytest.raises(ValueError, match="unique"):
        config_from_dict({**base, "frozen": dup})
    clash = {**base, "train": {"backbones": [{"name": "f_knn"}]}}
    with pytest.raises(ValueError, match="differ from the backbone names"):
        config_from_dict({**clash, "frozen": [{"name": "f", "backbone": "x", "heads": ["knn"]}]})
    with pytest.raises(ValueError, match="stack.combiners.*choose one of"):
        config_from_dict({**base, "stack": {"combiners": ["xgb", "ridge"]}})
    with pytest.raises(ValueError, match="stack.mode"):
        config_from_dict({**base, "stack": {"mode": "best"}})
    guard = config_from_dict({**base, "stack": {"incumbent": "mean_members/shrunk"}})
    assert guard.stack.incumbent == "mean_members/shrunk"
    for bad in ("mean_members", "mean_members/rate", "ridge/shrunk"):
        with pytest.raises(ValueError, match="stack.incumbent.*not a candidate"):
            config_from_dict({**base, "stack": {"incumbent": bad}})


class PriorHead:
    """A new head kind for the test: every label's known prevalence, whatever the image."""

    name = "prior"

    @classmethod
    def from_config(cls, f):
        return cls()

    def fit(self, X, y, sample_weight=None):
        self.rate_ = np.nan_to_num(np.nanmean(np.asarray(y, dtype=np.float64), axis=0))
        return self

    @staticmethod
    def proba(state, X):
        return np.tile(state["rate"], (len(X), 1))

    def predict_proba(self, X):
        return self.proba(self.get_state(), X)

    def get_state(self):
        return {"rate": self.rate_}

    def set_state(self, state):
        self.rate_ = np.asarray(state["rate"], dtype=np.float64)
        return self


def test_a_new_head_kind_is_one_class_in_the_heads_module(tmp_path, monkeypatch):
    """Registering a class in ``pipeline.runtime.heads`` is all a new head kind needs: the
    config accepts it, the registry names its member, the fold fit writes its head file, and
    the predictor's loader and the export's ``head_proba`` score it."""
    from pipeline.members.registry import FROZEN, Registry
    from pipeline.runtime import heads

    monkeypatch.setitem(heads.HEADS, "prior", PriorHead)
    monkeypatch.setitem(heads.HEAD_KINDS, "PriorHead", PriorHead)
    write_dataset(tmp_path, n_train=45, n_test=9)
    text = tiny_config_text(tmp_path) + (
        '\n[[frozen]]\nname = "feat"\nbackbone = "small_cnn"\nweights = "none"\n'
        'image_size = 32\nheads = ["prior"]\n'
    )
    (tmp_path / "c.toml").write_text(text)
    cfg = load_config(tmp_path / "c.toml")
    assert Registry(cfg).names(FROZEN) == ["feat_prior"]

    import pandas as pd

    from pipeline.data.contract import read_labels, read_test_ids

    table = read_labels(cfg.data.train_dir)
    test_ids, _ = read_test_ids(cfg.data.test_dir)
    folds = np.arange(len(table.ids)) % 3
    pd.DataFrame({"image": table.ids, "fold": folds}).to_csv(tmp_path / "folds.csv", index=False)
    rng = np.random.default_rng(0)
    emb = tmp_path / "feat.npz"
    save_embeddings(emb, table.ids, test_ids, rng.normal(size=(45, 8)), rng.normal(size=(9, 8)),
                    "small_cnn", 32)  # fmt: skip
    out, head_file = tmp_path / "feat_prior.fold0.npz", tmp_path / "feat_prior0.h"
    run_frozen_fold(cfg, "feat_prior", 0, tmp_path / "folds.csv", emb, out, head_file)
    want = np.nanmean(table.y[folds != 0], axis=0)
    head = load_head(head_file)
    np.testing.assert_allclose(head.predict_proba(np.zeros((2, 8)))[1], want)
    with np.load(head_file) as z:
        state = {k: z[k] for k in z.files}
    np.testing.assert_allclose(heads.head_proba(state, np.zeros((3, 8)))[2], want)
