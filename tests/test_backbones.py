import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pipeline.models.backbones import BACKBONES, build_model, get_backbone  # noqa: E402

FAST = ["small_cnn", "mobilenet_v2_035"]  # the Keras-application one is slow-tier (45 s)


def test_unknown_backbone_lists_known():
    with pytest.raises(ValueError, match="unknown backbone 'resnet5'.*mobilenet_v2"):
        get_backbone("resnet5")


def test_config_knows_every_minimum_size():
    """The config checks minimum sizes without Keras; its table must match the registry."""
    from pipeline.config.schema import min_image_size

    for name, spec in BACKBONES.items():
        assert min_image_size(name) == spec.min_size, name


def test_too_small_input():
    with pytest.raises(ValueError, match="needs image_size >= 71"):
        build_model("xception", 3, 32)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n == "small_cnn" else pytest.mark.slow) for n in FAST]
)
def test_head_and_one_step(name):
    m = build_model(name, 5, 32, head_layers=2, head_units=8, width=4)
    assert m.output_shape == (None, 5)
    assert [layer.name for layer in m.layers if layer.name.startswith("head")][:3] == [
        "head0",
        "head0_bn",
        "head0_relu",
    ]
    m.compile("adam", "binary_crossentropy")
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype("float32")
    m.train_on_batch(x, np.ones((4, 5), "float32"))
    p = m.predict(x, verbose=0)
    assert ((p >= 0) & (p <= 1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(BACKBONES) - set(FAST)))
def test_every_registered_backbone_trains_one_step(name):
    size = max(32, get_backbone(name).min_size)
    m = build_model(name, 3, size, head_units=8)
    m.compile("adam", "binary_crossentropy")
    x = np.zeros((2, size, size, 3), "float32")
    loss = m.train_on_batch(x, np.ones((2, 3), "float32"))
    assert np.isfinite(loss)


def test_local_weights_file_roundtrip(tmp_path):
    a = build_model("mobilenet_v2_035", 3, 32, seed=1)
    base = next(layer for layer in a.layers if layer.name.startswith("backbone_"))
    path = tmp_path / "w.weights.h5"
    base.save_weights(path)
    b = build_model("mobilenet_v2_035", 3, 32, weights=str(path), seed=2)
    base_b = next(layer for layer in b.layers if layer.name.startswith("backbone_"))
    for wa, wb in zip(base.get_weights(), base_b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("mobilenet_v2_035", 3, 32, weights=str(tmp_path / "nope.weights.h5"))


def test_converted_imagenet_weights_missing_says_make_weights(monkeypatch, tmp_path):
    import dataclasses

    from pipeline.models import backbones

    spec = dataclasses.replace(
        backbones.BACKBONES["mobilenet_v2_pt"], imagenet_file=str(tmp_path / "none.weights.h5")
    )
    monkeypatch.setitem(backbones.BACKBONES, "mobilenet_v2_pt", spec)
    with pytest.raises(FileNotFoundError, match="run `make weights`"):
        build_model("mobilenet_v2_pt", 3, 32, weights="imagenet")


def test_keras_imagenet_offline_fails_fast_with_a_hint(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(RuntimeError, match="put the Keras weights file"):
        build_model("mobilenet_v2", 3, 32, weights="imagenet")
