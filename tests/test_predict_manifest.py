"""stack/predict.json: the best epochs and thresholds `make stack` records for the predictor."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.artifacts import (
    MEMBER_SCORE_FIELDS,
    MEMBER_SCORES,
    PREDICT_MANIFEST_FORMAT,
    load_member_scores,
    load_predict_manifest,
    save_member_scores,
    save_predict_manifest,
)
from pipeline.ensemble.predict_manifest import best_epoch, build_manifest, member_records


def _base(seed=0, n=200, n_labels=3):
    """Member "a" has a noisy epoch 1 and a clean epoch 2; "b" one middling epoch."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < 0.3).astype(float)
    clean = np.clip(y * 0.7 + rng.random((n, n_labels)) * 0.3, 0, 1)
    noisy = rng.random((n, n_labels))
    middling = np.clip(y * 0.4 + rng.random((n, n_labels)) * 0.6, 0, 1)
    oof = np.stack([noisy, clean, middling], axis=1).astype(np.float32)
    base = SimpleNamespace(
        columns=[("a", 1), ("a", 2), ("b", 4)],
        oof=oof,
        test=np.zeros((5, 10, 3, n_labels), np.float32),
        labels=[f"l{j}" for j in range(n_labels)],
    )
    return base, y


def test_manifest_holds_each_members_best_epoch_and_the_used_columns(tmp_path):
    base, y = _base()
    level = SimpleNamespace(columns=base.columns, used_columns=[1, 2])
    records = member_records(base, y, beta=2.0, step=0.01, average="macro")
    m = build_manifest(base, y, level, records)
    assert m["n_folds"] == 5 and m["labels"] == base.labels
    assert m["used_columns"] == [["a", 2], ["b", 4]]
    assert m["members"]["a"]["epoch"] == 2 and m["members"]["b"]["epoch"] == 4
    score, c, ts = best_epoch(base, "a", y, 2.0, 0.01, "macro")
    assert c == 1 and m["members"]["a"]["oof_fbeta"] == score
    path = tmp_path / "predict.json"
    save_predict_manifest(path, m)
    back = load_predict_manifest(path)
    assert back == {"format": PREDICT_MANIFEST_FORMAT, **m}  # JSON keeps floats exactly
    assert next(iter(back)) == "format"  # stamped first, as the file always had it
    np.testing.assert_array_equal(back["members"]["a"]["thresholds"], ts.thresholds_)


def test_missing_or_foreign_manifest_says_which_stage_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make stack"):
        load_predict_manifest(tmp_path / "predict.json")
    (tmp_path / "predict.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 99.*make stack"):
        load_predict_manifest(tmp_path / "predict.json")


def test_member_scores_file_round_trips_what_the_report_reads(tmp_path):
    """``stack/members.npz``: each member's epoch curve, best epoch, thresholds, OOF column
    and fold-mean test probabilities, saved by the stack and read back exactly."""
    base, y = _base()
    base.test[:, :, 2] = np.arange(5, dtype=np.float32)[:, None, None] / 10  # fold k: k/10
    losses = {"a": np.array([0.7, 0.5], np.float32)}
    records = member_records(base, y, 2.0, 0.01, "macro", losses)
    assert list(records) == ["a", "b"]
    a, b = records["a"], records["b"]
    np.testing.assert_array_equal(a["epochs"], [1, 2])
    assert a["epoch"] == 2 and a["oof_fbeta"][1] == a["oof_fbeta"].max()
    np.testing.assert_array_equal(a["oof"], base.oof[:, 1])
    np.testing.assert_allclose(b["test_prob"], 0.2)  # the mean of the 5 folds' 0..0.4
    assert np.isnan(b["loss"]).all() and b["loss"].shape == (1,)
    save_member_scores(tmp_path / MEMBER_SCORES, records)
    back = load_member_scores(tmp_path / MEMBER_SCORES)
    assert list(back) == ["a", "b"]
    for name in back:
        for field in MEMBER_SCORE_FIELDS:
            np.testing.assert_array_equal(back[name][field], records[name][field])
    with pytest.raises(FileNotFoundError, match="make stack"):
        load_member_scores(tmp_path / "gone.npz")
