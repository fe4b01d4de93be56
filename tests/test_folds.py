import numpy as np
import pandas as pd
import pytest

from pipeline.folds import make_folds, read_folds


def test_each_label_spread_evenly():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 8)) < np.linspace(0.4, 0.03, 8)).astype(float)
    folds = make_folds(y, 5, seed=1)
    assert np.bincount(folds).tolist() == [100] * 5
    for j in range(y.shape[1]):
        per_fold = np.bincount(folds[y[:, j] == 1], minlength=5)
        # iterative stratification keeps each label's positives within +-1 of even
        assert per_fold.max() - per_fold.min() <= 2, (j, per_fold)
        assert abs(per_fold - y[:, j].sum() / 5).max() <= 1.0 + 1e-9, (j, per_fold)


def test_seeded_and_nan_tolerant():
    rng = np.random.default_rng(0)
    y = (rng.random((100, 3)) < 0.3).astype(float)
    y[::7, 1] = np.nan
    a, b, c = make_folds(y, 5, 3), make_folds(y, 5, 3), make_folds(y, 5, 4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_read_folds_checks_match(tmp_path):
    ids = np.array(["a", "b", "c", "d"])
    p = tmp_path / "f.csv"
    pd.DataFrame({"image": ids, "fold": [0, 1, 0, 1]}).to_csv(p, index=False)
    assert read_folds(p, ids[::-1], 2).tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="does not match labels.csv"):
        read_folds(p, np.array(["a", "b", "c", "e"]), 2)
    with pytest.raises(ValueError, match="config asks for 3"):
        read_folds(p, ids, 3)
    with pytest.raises(FileNotFoundError, match="run `make folds`"):
        read_folds(tmp_path / "none.csv", ids)
