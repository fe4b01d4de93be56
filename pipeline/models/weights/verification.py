"""Verification: converted Keras logits vs a reference forward pass on real images."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.models.weights.builders import keras_builders
from pipeline.models.weights.converters import set_weights
from pipeline.models.weights.plans import MOBILENET_V2, Architecture
from pipeline.models.weights.reference import (
    preprocess,
    reference_logits_numpy,
    reference_logits_torch,
    torch_available,
)

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted, so a verification set is reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: verification image folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) to verify on")
    return files


def load_images(files: list[Path], size: int = 224) -> np.ndarray:
    """Centre square crop, resize to ``size`` (area filter), RGB uint8 (N, size, size, 3)."""
    import cv2

    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: unreadable image")
        h, w = bgr.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = bgr[top : top + side, left : left + side]
        out[i] = cv2.cvtColor(
            cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
        )
    return out


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _compare(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    diff = np.abs(logits - reference)
    return {
        "top1_agreement": float(np.mean(logits.argmax(1) == reference.argmax(1))),
        "top5_contains_reference_top1": float(
            np.mean(
                [
                    r in np.argsort(-row)[:5]
                    for row, r in zip(logits, reference.argmax(1), strict=True)
                ]
            )
        ),
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
    }


def verify(
    state_dict: dict[str, np.ndarray],
    images: np.ndarray,
    arch: Architecture = MOBILENET_V2,
    weights_path: str | os.PathLike | None = None,
    reference: str = "auto",
    batch_size: int = 20,
) -> dict[str, Any]:
    """Compare converted Keras logits with a torch-semantics reference forward pass.

    Args:
        state_dict: the torch weights; the reference runs on them directly.
        images: RGB 0..255, (N, S, S, 3); S = ``arch.native_size`` matches ImageNet training.
        weights_path: an include-top ``.weights.h5`` from :func:`save_keras_weights`, to
            check the written file itself; None converts ``state_dict`` in memory.
        reference: ``"torch"`` (``torch.nn.functional``, needs the optional extra),
            ``"numpy"`` (:func:`reference_logits_numpy`) or ``"auto"`` (torch if importable).

    Returns:
        ``{"reference", "n_images", "exact": {...}[, "stock": {...}]}``: ``exact`` is
        :func:`build_from_plan`'s layout, ``stock`` (MobileNetV2 only) is
        ``keras.applications.MobileNetV2``; each holds top-1 agreement with the reference,
        how often the reference's top-1 is in Keras' top 5, and max/mean absolute logit
        differences.
    """
    if reference == "auto":
        reference = "torch" if torch_available() else "numpy"
    if reference not in ("torch", "numpy"):
        raise ValueError(f"reference must be 'auto', 'torch' or 'numpy', got {reference!r}")
    ref_fn = reference_logits_torch if reference == "torch" else reference_logits_numpy
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be square (N, S, S, 3) RGB, got shape {images.shape}")
    size = int(images.shape[1])
    models = {key: build(size) for key, build in keras_builders(arch).items()}
    for model in models.values():
        if weights_path is None:
            set_weights(model, state_dict, arch)
        else:
            model.load_weights(weights_path)
    logits: dict[str, list[np.ndarray]] = {"reference": [], **{k: [] for k in models}}
    for sl in _batches(len(images), batch_size):
        x = preprocess(images[sl], arch.preprocess)
        logits["reference"].append(ref_fn(state_dict, x, arch))
        for key, model in models.items():
            logits[key].append(np.asarray(model.predict_on_batch(x)))
        log.info("%s: verified %d/%d images", arch.name, sl.stop, len(images))
    ref = np.concatenate(logits["reference"])
    result: dict[str, Any] = {
        "architecture": arch.name,
        "reference": reference,
        "n_images": len(images),
        "image_size": size,
        "preprocess": arch.preprocess,
        "reference_top1_classes": np.bincount(ref.argmax(1), minlength=1000)
        .argsort()[::-1][:5]
        .tolist(),
    }
    for key in models:
        result[key] = _compare(np.concatenate(logits[key]), ref)
    if reference == "torch":
        import torch

        result["torch_version"] = str(torch.__version__)
    return result


def verify_mobilenet_v2(
    state_dict: dict[str, np.ndarray],
    images: np.ndarray,
    weights_path: str | os.PathLike | None = None,
    reference: str = "auto",
    batch_size: int = 20,
) -> dict[str, Any]:
    """:func:`verify` for MobileNetV2 (reports ``exact`` and ``stock``)."""
    return verify(state_dict, images, MOBILENET_V2, weights_path, reference, batch_size)
