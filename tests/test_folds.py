import numpy as np
import pandas as pd
import pytest

from pipeline.data.folds import make_folds, read_folds


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


def test_without_groups_equals_iterstrat_exactly():
    """The demo's folds (and everyone's builds) stay byte-identical when there are no
    duplicates: the group-aware splitter is iterstrat's algorithm step for step."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    rng = np.random.default_rng(3)
    for n, n_labels, k, seed in [(50, 3, 2, 0), (301, 12, 5, 42), (120, 30, 3, 7)]:
        y = (rng.random((n, n_labels)) < rng.random(n_labels) * 0.5).astype(float)
        y[rng.random(y.shape) < 0.1] = np.nan
        ref = np.zeros(n, np.int64)
        mskf = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        for f, (_, val) in enumerate(mskf.split(np.zeros(n), np.nan_to_num(y).astype(int))):
            ref[val] = f
        np.testing.assert_array_equal(make_folds(y, k, seed), ref)
        np.testing.assert_array_equal(make_folds(y, k, seed, groups=np.arange(n) * 3), ref)


def test_a_group_never_spans_folds_and_labels_stay_balanced():
    rng = np.random.default_rng(0)
    n, k = 600, 5
    y = (rng.random((n, 8)) < np.linspace(0.4, 0.03, 8)).astype(float)
    groups = np.arange(n)
    # 60 pairs and 10 triples of copies (same labels, as exact copies have)
    for a, b in rng.choice(n, (60, 2), replace=False).reshape(-1, 2):
        groups[b] = groups[a]
        y[b] = y[a]
    for t in rng.choice(np.setdiff1d(np.arange(n), groups[groups != np.arange(n)]), (10, 3)):
        groups[t] = t[0]
        y[t] = y[t[0]]
    folds = make_folds(y, k, seed=1, groups=groups)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    sizes = np.bincount(folds, minlength=k)
    assert sizes.max() - sizes.min() <= 3, sizes  # a triple is the largest unit
    for j in range(y.shape[1]):
        per_fold = np.bincount(folds[y[:, j] == 1], minlength=k)
        biggest = max(np.bincount(groups[y[:, j] == 1]))  # the largest unit of this label
        assert per_fold.max() - per_fold.min() <= max(1, biggest), (j, per_fold)
    np.testing.assert_array_equal(folds, make_folds(y, k, seed=1, groups=groups))


def test_too_few_groups_names_the_key():
    y = np.zeros((6, 2))
    with pytest.raises(ValueError, match=r"only 2 groups.*\[folds\] n_folds = 3"):
        make_folds(y, 3, groups=np.array([0, 0, 0, 1, 1, 1]))


def test_read_folds_keeps_ids_pandas_would_drop(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("image,fold\nNA,0\nnan,1\nNone,0\n001,1\n")
    ids = np.array(["NA", "nan", "None", "001"])
    assert read_folds(p, ids, 2).tolist() == [0, 1, 0, 1]
