"""The scikit-learn baseline: per-label logistic regression, out of fold."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.members.baseline import PerLabelLogistic, run_baseline_fold
from tests.test_twoflow import embedding, fold_setup  # noqa: F401  (the shared fixture)


def test_learns_a_linear_signal_and_ignores_unknown_cells():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = np.stack([(X[:, 0] > 0), (X[:, 1] + X[:, 2] > 0.5), np.zeros(300)], 1).astype(float)
    y_masked = y.copy()
    y_masked[:100, 0] = np.nan  # unknown cells: left out of label 0's fit
    model = PerLabelLogistic().fit(X, y_masked)
    p = model.predict_proba(X)
    assert p.shape == (300, 3)
    assert ((p[:, 0] >= 0.5) == y[:, 0]).mean() > 0.95
    assert ((p[:, 1] >= 0.5) == y[:, 1]).mean() > 0.9
    np.testing.assert_array_equal(p[:, 2], 0.0)  # one class only -> its rate


def test_fold_file_is_out_of_fold_and_deterministic(fold_setup, monkeypatch):  # noqa: F811
    root, cfg, folds_csv, ids, folds, data = fold_setup
    fit_rows = []
    real_fit = PerLabelLogistic.fit

    def spy(self, X, y):
        fit_rows.append(len(X))
        return real_fit(self, X, y)

    monkeypatch.setattr(PerLabelLogistic, "fit", spy)
    out = root / "baseline" / "sklearn_lr.fold1.npz"
    run_baseline_fold(cfg, "small_cnn", 1, folds_csv, embedding(root, 1), out)
    assert fit_rows == [(folds != 1).sum()]  # fit on the other folds' rows only
    with np.load(out) as z:
        assert sorted(z["val_ids"]) == sorted(ids[folds == 1])
        assert z["oof"].shape == (1, (folds == 1).sum(), 3)
        assert z["test"].shape == (1, len(data["test"]), 3)
        assert z["epochs"].tolist() == [1]
        first = z["oof"].copy()
    run_baseline_fold(cfg, "small_cnn", 1, folds_csv, embedding(root, 1), out)
    with np.load(out) as z:
        np.testing.assert_array_equal(z["oof"], first)


def test_missing_or_mismatched_embedding_is_a_clear_error(fold_setup, tmp_path):  # noqa: F811
    root, cfg, folds_csv, *_ = fold_setup
    with pytest.raises(FileNotFoundError, match="make embed-cnn"):
        run_baseline_fold(cfg, "small_cnn", 0, folds_csv, tmp_path / "no.npz", tmp_path / "x.npz")
    with pytest.raises(ValueError, match="small_cnn embeddings at 32 px, not resnet50's"):
        run_baseline_fold(cfg, "resnet50", 0, folds_csv, embedding(root, 0), tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
