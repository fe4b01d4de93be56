"""The packed forests (pipeline.runtime.forest_arrays) predict what scikit-learn predicts, bit for
bit, and Two-Flow's predictions through them equal its forests' own."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from pipeline.members.twoflow import TwoFlowModel
from pipeline.runtime.forest_arrays import ForestArrays


def _forests(rng, n_forests=4, n_trees=7):
    X = rng.normal(size=(300, 12)).astype(np.float64)
    forests = []
    for j in range(n_forests):
        y = (X[:, j] + 0.5 * rng.normal(size=len(X)) > 0.3).astype(int)
        if j == 1:
            y = np.where(y == 1, 2, 1)  # classes [1, 2]: class 1 is not the second column
        forests.append(RandomForestClassifier(n_estimators=n_trees, random_state=j).fit(X, y))
    return X, forests


def test_packed_forests_equal_scikit_learn_bit_for_bit():
    rng = np.random.default_rng(0)
    X, forests = _forests(rng)
    # new rows, some on the thresholds' float32 boundary, in chunks smaller than the rows
    X_new = np.concatenate([rng.normal(size=(50, 12)), X[:20] + 1e-9])
    packed = ForestArrays(forests, positive=1)
    got = packed.predict_positive(X_new, chunk=16)
    for j, forest in enumerate(forests):
        want = forest.predict_proba(X_new)[:, list(forest.classes_).index(1)]
        np.testing.assert_array_equal(got[:, j], want)


def test_packed_forests_refuse_mixed_tree_counts():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    a = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    b = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="different tree counts"):
        ForestArrays([a, b])


def test_twoflow_predictions_equal_its_forests_and_survive_pickling():
    rng = np.random.default_rng(2)
    n, px = 120, 4
    pixels = rng.random((n, px * px * 3)).astype(np.float32)
    deep = rng.normal(size=(n, 8)).astype(np.float32)
    y = (rng.random((n, 3)) < [0.4, 0.2, 0.0]).astype(np.float64)  # label 2: one class
    y[:5, 0] = np.nan  # unknown cells
    model = TwoFlowModel(n_components=6, pixel_size=px, n_trees=9, top_features=10, seed=3)
    model.fit(pixels, deep, y)
    got = model.predict_proba(pixels[:30], deep[:30])
    kept = model._features(pixels[:30], deep[:30])[:, model.selected_]
    for j, forest in enumerate(model.forests_):
        if forest is None:
            assert np.all(got[:, j] == np.float32(model.constant_[j]))
        else:
            want = forest.predict_proba(kept)[:, list(forest.classes_).index(1)]
            np.testing.assert_array_equal(got[:, j], want.astype(np.float32))
    again = pickle.loads(pickle.dumps(model))  # the packed arrays are not saved
    assert "_packed_forests" not in again.__dict__
    np.testing.assert_array_equal(again.predict_proba(pixels[:30], deep[:30]), got)


@pytest.mark.parametrize("projection", ["gaussian", "sparse"])
def test_exported_twoflow_arrays_predict_as_the_model(projection, tmp_path):
    """``make export`` saves Two-Flow as arrays (projection matrix, selection, packed
    forests); the runtime's :class:`pipeline.runtime.exported.TwoFlow` predicts what the model
    does, without scikit-learn."""
    from pipeline.artifacts import save_npz_atomic
    from pipeline.export import twoflow_arrays
    from pipeline.runtime.exported import TwoFlow

    rng = np.random.default_rng(4)
    px = 4
    pixels = rng.random((80, px * px * 3)).astype(np.float32)
    deep = rng.normal(size=(80, 5)).astype(np.float32)
    y = (rng.random((80, 3)) < [0.5, 0.3, 0.0]).astype(np.float32)  # label 2: no forest
    model = TwoFlowModel(
        n_components=6, pixel_size=px, n_trees=9, top_features=8, projection=projection, seed=3
    ).fit(pixels, deep, y)
    save_npz_atomic(tmp_path / "tf.npz", **twoflow_arrays(model))
    got = TwoFlow(tmp_path / "tf.npz").predict_proba(pixels[:30], deep[:30])
    np.testing.assert_allclose(got, model.predict_proba(pixels[:30], deep[:30]), atol=1e-6)
