"""Tests for pipeline.models.inference: the flip-TTA feed, embeddings, a fold's checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.inference import (
    downsample_pixels,
    embed,
    embed_paths,
    load_checkpoint,
    predict_paths,
    run_batch,
    tta_inputs,
)
from pipeline.train.fold_dir import checkpoints, last_checkpoint
from tests.test_twoflow import fold_setup  # noqa: F401  (the shared fixture)


@pytest.fixture
def mirror_sensitive(tmp_path):
    """Five 8 px images and a model that reads only their left column (so a mirrored
    image scores differently and TTA must average), with the expected outputs."""
    import cv2
    import keras

    from pipeline.runtime.images import load_image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    inp = keras.Input((8, 8, 3))
    out = keras.layers.Lambda(lambda x: keras.ops.mean(x[:, :, :1, :], axis=(1, 2)) / 255)(inp)
    imgs = np.stack([load_image(p) for p in paths]).astype("float32")
    left = imgs[:, :, 0, :].mean(axis=1) / 255
    right = imgs[:, :, -1, :].mean(axis=1) / 255
    return keras.Model(inp, out), paths, left, right


def test_prediction_feed_pads_and_flips(mirror_sensitive):
    model, paths, left, right = mirror_sensitive
    np.testing.assert_allclose(predict_paths(model, paths, 8, 4, False), left, rtol=1e-5)
    np.testing.assert_allclose(
        predict_paths(model, paths, 8, 4, True), (left + right) / 2, rtol=1e-5
    )


@pytest.mark.parametrize("tta_flip", [False, True])
def test_one_batch_matches_the_feed(mirror_sensitive, tta_flip):
    """The predictor's single batch and training's padded feed give the same numbers."""
    model, paths, *_ = mirror_sensitive
    fed = predict_paths(model, paths, 8, 4, tta_flip)
    served = run_batch(model, tta_inputs(paths, 8, tta_flip), tta_flip)
    assert served.shape == fed.shape == (5, 3)
    np.testing.assert_allclose(served, fed, rtol=1e-6)


def test_downsample_pixels_scales_and_checks():
    imgs = np.full((2, 16, 16, 3), 255, dtype=np.uint8)
    out = downsample_pixels(imgs, 4)
    assert out.shape == (2, 48) and np.allclose(out, 1.0)
    with pytest.raises(ValueError, match="expected 4\\*4\\*3"):
        downsample_pixels(np.zeros((2, 10)), 4)


def test_embed_is_the_pool_layer(fold_setup):  # noqa: F811
    import keras

    from pipeline.runtime.images import load_image

    root, cfg, *_ = fold_setup
    paths = sorted((root / "train" / "images").iterdir())[:5]
    ckpt = last_checkpoint(root / "cnn0")
    emb = embed(ckpt, paths, 32, batch=4)
    model = load_checkpoint(ckpt)
    pool = keras.Model(model.inputs, model.get_layer("pool").output)
    batch = np.stack([load_image(p, 32) for p in paths]).astype(np.float32)
    np.testing.assert_allclose(emb, np.asarray(pool(batch)), rtol=1e-4, atol=1e-5)
    assert emb.shape == (5, 32)  # small_cnn width 8 -> 32 channels at the top
    with pytest.raises(ValueError, match="tta_flip needs batch >= 2"):
        embed_paths(pool, paths, 32, 1, True)
    with pytest.raises(ValueError, match="no images"):
        embed_paths(pool, [], 32, 4, False)


def test_checkpoints_in_epoch_order(tmp_path):
    for name in ("ckpt_epoch010.keras", "ckpt_epoch002.keras", "ckpt_epochx.keras", "a.keras"):
        (tmp_path / name).touch()
    assert [e for e, _ in checkpoints(tmp_path)] == [2, 10]
    assert last_checkpoint(tmp_path).name == "ckpt_epoch010.keras"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert checkpoints(empty) == []
    with pytest.raises(FileNotFoundError, match="no ckpt_epoch"):
        last_checkpoint(empty)
    with pytest.raises(FileNotFoundError, match="make train-cnn"):
        load_checkpoint(tmp_path / "missing.keras")
