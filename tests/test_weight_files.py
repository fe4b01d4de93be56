"""pipeline.models.weight_files: a weights file read by its learnt layout equals Keras' own load."""

import numpy as np
import pytest

from pipeline.models.backbones import build_model
from pipeline.models.weight_files import WeightFile


def _model(name: str, seed: int):
    return build_model(name, 4, 32, head_layers=2, head_units=8, width=4, seed=seed)


def _perturbed(model, seed: int):
    """Every variable (moving statistics too) set to distinct random values."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("name", ["small_cnn", "mobilenet_v3_small"])
def test_layout_load_equals_keras_load(tmp_path, name):
    src = _perturbed(_model(name, 1), 1)
    path = tmp_path / "w.weights.h5"
    src.save_weights(path)

    # another instance of the architecture (other auto layer names) learns the layout,
    # a third one is loaded by it; a fourth by Keras
    loader = WeightFile(_model(name, 2))
    assert loader.paths is not None and len(loader.paths) == len(src.weights)
    fast, slow = _model(name, 3), _model(name, 4)
    loader.load(fast, path)
    slow.load_weights(path)
    for a, b, c in zip(fast.get_weights(), slow.get_weights(), src.get_weights(), strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(fast(x, training=False), slow(x, training=False))


def test_learning_the_layout_keeps_the_model_weights():
    model = _perturbed(_model("small_cnn", 1), 5)
    before = [w.copy() for w in model.get_weights()]
    WeightFile(model)
    for a, b in zip(before, model.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_another_architectures_file_raises_keras_error(tmp_path):
    other = _model("small_cnn", 1)
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    model = _model("mobilenet_v3_small", 1)
    with pytest.raises(ValueError):
        WeightFile(model).load(model, path)
