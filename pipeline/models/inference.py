"""Shared model code: load a fold checkpoint, predict image files with flip TTA, embed.

Every user of a trained model goes through here: training's per-epoch OOF + test
predictions, Two-Flow and the baseline (a fold checkpoint's embeddings), the frozen members,
similarity search, the predictor and the page. One flip-TTA batching (:func:`flip_batch`
builds a batch and its mirrors, :func:`flip_mean` folds the outputs back) serves the feed
of :func:`predict_paths` and the predictor's single batches, so a served prediction is
computed the way the trained one was; if the two drifted, served labels would silently
differ from the submission's.

The fold work-dir's file names are :mod:`pipeline.train.fold_dir`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.runtime.ops import flip_batch, flip_mean  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from pipeline.data.image_cache import ImageCache

EMBEDDING_LAYER = "pool"


def load_checkpoint(model_path: str | Path):
    """Load a fold checkpoint (``.keras``) for inference only."""
    import keras

    import pipeline.models.backbones  # noqa: F401  (registers the custom layers for load_model)
    import pipeline.models.losses  # noqa: F401  (registers the loss and LR schedule for load_model)

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} does not exist; run `make train-cnn` first")
    return keras.saving.load_model(model_path, compile=False)


def embedding_output(model):
    """The output tensor of ``model``'s pooled embedding (the ``pool`` layer)."""
    try:
        return model.get_layer(EMBEDDING_LAYER).output
    except ValueError as exc:
        raise ValueError(
            f"model {model.name!r} has no {EMBEDDING_LAYER!r} layer; embeddings need a model "
            "built by pipeline.models.backbones.build_model"
        ) from exc


def embedding_model(model):
    """The sub-model from the image input to the pooled embedding (the ``pool`` layer).

    It shares the model's layers, so it follows the model's weight swaps.
    """
    import keras

    return keras.Model(model.inputs, embedding_output(model), name=f"{model.name}_embedding")


# ---- flip TTA ------------------------------------------------------------------------------


def tta_inputs(paths: Sequence[str | Path], size: int, tta_flip: bool) -> np.ndarray:
    """Decode image files into one :func:`flip_batch` batch (float32, ``size`` px).

    Decoding happens before any model runs, so a bad file fails first with its name.
    """
    from pipeline.runtime.images import load_image

    batch = np.stack([load_image(p, size) for p in paths]).astype(np.float32)
    return flip_batch(batch, tta_flip)


def run_batch(model, inputs: np.ndarray, tta_flip: bool) -> np.ndarray:
    """(n, ...) float32 outputs of one :func:`tta_inputs` batch."""
    return flip_mean(np.asarray(model.predict_on_batch(inputs), dtype=np.float32), tta_flip)


def prediction_feed(
    paths: Sequence[Path],
    size: int,
    batch_size: int,
    tta_flip: bool,
    cache: ImageCache | None = None,
):
    """A ``keras.utils.PyDataset`` of image files in order, decoded batch by batch (read
    from ``cache``, the decode cache, when given).

    The last batch is padded (every batch has one shape, so the compiled step is traced
    once); with ``tta_flip`` a batch holds ``batch_size // 2`` images and their mirrors.
    """
    import keras

    from pipeline.data.image_cache import read_image

    per_batch = batch_size // 2 if tta_flip else batch_size

    class PredictionFeed(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=2, use_multiprocessing=False, max_queue_size=8)

        def __len__(self):
            return int(np.ceil(len(paths) / per_batch))

        def __getitem__(self, b):
            rows = paths[b * per_batch : (b + 1) * per_batch]
            batch = np.empty((per_batch, size, size, 3), dtype=np.float32)
            for i, path in enumerate(rows):
                batch[i] = read_image(path, size, cache)
            batch[len(rows) :] = batch[len(rows) - 1]  # pad: constant batch shape
            return (flip_batch(batch, tta_flip),)

    return PredictionFeed()


def predict_paths(
    model,
    paths: Sequence[Path],
    size: int,
    batch_size: int,
    tta_flip: bool,
    cache: ImageCache | None = None,
):
    """Model outputs (n, ...) float32 for image files in order; mirrored mean if TTA."""
    paths = list(paths)
    feed = prediction_feed(paths, size, batch_size, tta_flip, cache)
    p = flip_mean(model.predict(feed, verbose=0), tta_flip, len(feed))
    return p[: len(paths)].astype(np.float32)


# ---- embeddings ----------------------------------------------------------------------------


def embed_paths(
    model,
    paths: Sequence[str | Path],
    size: int,
    batch: int,
    tta_flip: bool,
    cache: ImageCache | None = None,
):
    """(n, D) float32 embeddings of image files by an embedding model (e.g. a frozen
    backbone or :func:`embedding_model`); mean with the mirrored image if TTA."""
    if len(paths) == 0:
        raise ValueError("no images to embed")
    if tta_flip and batch < 2:
        raise ValueError("tta_flip needs batch >= 2")
    return predict_paths(model, list(paths), size, batch, tta_flip, cache)


def embed(
    model_path: str | Path,
    paths: Sequence[str | Path],
    size: int,
    batch: int = 64,
    tta_flip: bool = False,
    model=None,
    cache: ImageCache | None = None,
) -> np.ndarray:
    """Pooled CNN embeddings (n, D) float32 of images, from a fold checkpoint.

    Args:
        model_path: the ``.keras`` checkpoint (ignored when ``model`` is given).
        paths: image files, in the order of the returned rows.
        size: the model's input size (``data.image_size``).
        batch: images per predict batch (halved per batch with ``tta_flip``).
        tta_flip: average the embedding with that of the mirrored image, as the CNN's own
            predictions do, so the features describe the same view the CNN scored.
        model: an already loaded model, to embed several image lists with one load.
        cache: the decode cache (``pipeline.data.image_cache``) to read the images from.
    """
    model = load_checkpoint(model_path) if model is None else model
    return embed_paths(embedding_model(model), paths, size, batch, tta_flip, cache)


def downsample_pixels(
    images: Sequence[str | Path] | np.ndarray, pixel_size: int, cache: ImageCache | None = None
) -> np.ndarray:
    """The model-free embedding: images -> (n, pixel_size * pixel_size * 3) float32 in [0, 1].

    Accepts image paths (decoded and area-resized) or an array of images (n, H, W, 3):
    uint8 is scaled by 1/255, float is taken as already in [0, 1]. Area resizing averages
    the pixels it merges, so a 16 x 16 thumbnail keeps the colour layout and drops the noise.
    Two-Flow's pixel flow and the similarity search's raw-pixel baseline. Paths are read
    from ``cache`` (the decode cache) when given.
    """
    import cv2
    from tqdm import tqdm

    from pipeline.runtime.images import load_image

    if pixel_size < 1:
        raise ValueError(f"pixel_size must be >= 1, got {pixel_size}")
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            if images.shape[1] != pixel_size * pixel_size * 3:
                raise ValueError(
                    f"flat pixel features have {images.shape[1]} columns, expected "
                    f"{pixel_size}*{pixel_size}*3 = {pixel_size * pixel_size * 3}"
                )
            return np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images must be (n, H, W, 3), got shape {images.shape}")
        scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
        out = np.empty((len(images), pixel_size, pixel_size, 3), dtype=np.float32)
        for i, img in enumerate(images):
            if img.shape[:2] != (pixel_size, pixel_size):
                img = cv2.resize(
                    np.ascontiguousarray(img),
                    (pixel_size, pixel_size),
                    interpolation=cv2.INTER_AREA,
                )
            out[i] = img * scale
        return out.reshape(len(images), -1)
    out = np.empty((len(images), pixel_size * pixel_size * 3), dtype=np.float32)
    for i, path in enumerate(tqdm(images, desc="pixels", unit="img", leave=False, mininterval=1)):
        if cache is not None:
            img = cache.thumbnail(path, pixel_size)
        else:
            img = thumbnail(load_image(path), pixel_size)
        out[i] = img.reshape(-1) / np.float32(255.0)
    return out


def thumbnail(img: np.ndarray, pixel_size: int) -> np.ndarray:
    """A decoded image area-resized to ``pixel_size`` x ``pixel_size`` (as it is)."""
    import cv2

    if img.shape[:2] != (pixel_size, pixel_size):
        img = cv2.resize(img, (pixel_size, pixel_size), interpolation=cv2.INTER_AREA)
    return img


def decoded_pixels(images: Sequence[np.ndarray], pixel_size: int) -> np.ndarray:
    """Decoded uint8 RGB images -> the features :func:`downsample_pixels` gives their files,
    bit for bit (an upload decoded once gets the pixels its file would)."""
    out = np.empty((len(images), pixel_size * pixel_size * 3), dtype=np.float32)
    for i, img in enumerate(images):
        out[i] = thumbnail(img, pixel_size).reshape(-1) / np.float32(255.0)
    return out
