"""The Keras models of the plans (used at train time through the backbone registry) and
writing converted ``.weights.h5`` files."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import write_atomic
from pipeline.models.weights.converters import set_weights
from pipeline.models.weights.plans import (
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE1,
    EFFICIENTNET_LITE2,
    MOBILENET_V2,
    Architecture,
)

log = logging.getLogger(__name__)


def build_keras_mobilenet_v2(include_top: bool, image_size: int = 224):
    """The stock ``keras.applications.MobileNetV2`` (alpha 1.0).

    With the top, the classifier outputs logits (no softmax), to compare with torch.
    """
    import keras

    kwargs = {"classifier_activation": None} if include_top else {}
    return keras.applications.MobileNetV2(
        include_top=include_top,
        weights=None,
        alpha=1.0,
        input_shape=(image_size, image_size, 3),
        **kwargs,
    )


def build_from_plan(
    arch: Architecture,
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
):
    """A Keras functional model that computes exactly what the torch model of ``arch`` does.

    ``keras.applications``-style signature so the backbone registry can call it like any
    factory. Padding follows the torch model: symmetric ``ZeroPadding2D(k // 2)`` +
    ``"valid"`` before stride-2 convolutions for torchvision, Keras ``"same"`` (= TF's)
    for TF-ported weights. Layer names, classes and creation order follow the plan (for
    MobileNetV2 the same as ``keras.applications.MobileNetV2``, whose ``.weights.h5``
    therefore loads here and vice versa). Only standard layers: ``.keras`` files of models
    built on it load without custom objects.

    Args:
        weights: None or a local ``.weights.h5`` path (no download: this is for offline use).
    """
    import keras
    from keras import layers

    if weights == "imagenet":
        raise ValueError(f"{arch.name}: no download here; pass a local .weights.h5 path")
    inputs = keras.Input(input_shape or (arch.native_size, arch.native_size, 3))
    x = inputs
    for block in arch.blocks:
        shortcut = x
        for u in block.units:
            padding = "same"
            if u.stride > 1 and not arch.tf_same_padding:
                pad = (
                    u.keras_conv.replace("depthwise", "pad")
                    if block.name
                    else f"{u.keras_conv}_pad"
                )
                x = layers.ZeroPadding2D(padding=u.kernel // 2, name=pad)(x)
                padding = "valid"
            if u.depthwise:
                conv = layers.DepthwiseConv2D(
                    u.kernel, strides=u.stride, padding=padding, use_bias=False, name=u.keras_conv
                )
            else:
                conv = layers.Conv2D(
                    u.filters,
                    u.kernel,
                    strides=u.stride,
                    padding=padding,
                    use_bias=False,
                    name=u.keras_conv,
                )
            x = conv(x)
            x = layers.BatchNormalization(epsilon=1e-3, momentum=arch.bn_momentum, name=u.keras_bn)(
                x
            )
            if u.relu6:
                x = layers.ReLU(6.0, name=f"{u.keras_conv}_relu")(x)
        if block.residual:
            x = layers.Add(name=f"{block.name}add")([shortcut, x])
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name or f"{arch.name}_{inputs.shape[1]}")
    if weights is not None:
        model.load_weights(weights)
    return model


def mobilenet_v2_torch_padding(include_top: bool = True, weights=None, input_shape=None, **kwargs):
    """``keras.applications.MobileNetV2`` (alpha 1.0) with torchvision's stride-2 padding.

    Same signature, layer names, classes and creation order as the Keras builder, so the
    same ``.weights.h5`` loads into either; but every stride-2 3x3 convolution pads one
    pixel on all sides, as torchvision does, instead of Keras' bottom/right-only padding.
    Only this layout reproduces the torch model: the stock layout's one-pixel grid shift,
    compounded over five stride-2 layers, changes the ImageNet top-1 class of about half
    of real photos (see :func:`verify`).
    """
    return build_from_plan(MOBILENET_V2, include_top, weights, input_shape, **kwargs)


def efficientnet_lite0(include_top: bool = True, weights=None, input_shape=None, **kwargs):
    """EfficientNet-Lite0 in Keras (no ``keras.applications`` equivalent exists).

    B0's topology without squeeze-excitation, with ReLU6 and TF "same" padding, built
    from :func:`efficientnet_lite_plan`; feed it ``"tf"`` preprocessing (-1..1). Native
    size 224.
    """
    return build_from_plan(EFFICIENTNET_LITE0, include_top, weights, input_shape, **kwargs)


def efficientnet_lite1(include_top: bool = True, weights=None, input_shape=None, **kwargs):
    """EfficientNet-Lite1 (depth 1.1: 21 blocks), as :func:`efficientnet_lite0`; native 240."""
    return build_from_plan(EFFICIENTNET_LITE1, include_top, weights, input_shape, **kwargs)


def efficientnet_lite2(include_top: bool = True, weights=None, input_shape=None, **kwargs):
    """EfficientNet-Lite2 (width 1.1, depth 1.2), as :func:`efficientnet_lite0`; native 260."""
    return build_from_plan(EFFICIENTNET_LITE2, include_top, weights, input_shape, **kwargs)


def keras_builders(arch: Architecture) -> dict[str, Any]:
    """Keras layouts to verify for ``arch``: {"exact": plan builder[, "stock": keras.applications]}."""
    builders: dict[str, Any] = {
        "exact": lambda size: build_from_plan(
            arch, include_top=True, input_shape=(size, size, 3), classifier_activation=None
        )
    }
    if arch is MOBILENET_V2:
        builders["stock"] = lambda size: build_keras_mobilenet_v2(True, size)
    return builders


def save_weights_atomic(model, out_path: str | os.PathLike) -> Path:
    """``model.save_weights`` to a temp name beside ``out_path``, then ``os.replace``
    (:func:`pipeline.artifacts.write_atomic`): a killed run leaves no half-written file for
    Make to mistake for a finished target."""
    out_path = Path(out_path)
    if not out_path.name.endswith(".weights.h5"):
        raise ValueError(f"{out_path}: Keras weights files must end in .weights.h5")
    # keras picks the format from the name: the temp name ends in .weights.h5 too
    write_atomic(out_path, model.save_weights, suffix=".weights.h5")
    return out_path


def save_keras_weights(
    state_dict: dict[str, np.ndarray],
    out_path: str | os.PathLike,
    arch: Architecture = MOBILENET_V2,
    include_top: bool = False,
) -> Path:
    """Convert and write ``.weights.h5`` for the Keras model of ``arch``.

    Conv weights do not depend on the input size, so the headless file loads into the
    backbone at any ``image_size``; both files are written from a model at the native size.
    """
    model = build_from_plan(arch, include_top=include_top)
    set_weights(model, state_dict, arch)
    path = save_weights_atomic(model, out_path)
    log.info("wrote %s (%s, include_top=%s)", path, arch.name, include_top)
    return path


def save_mobilenet_v2_keras(
    state_dict: dict[str, np.ndarray], out_path: str | os.PathLike, include_top: bool = False
) -> Path:
    """:func:`save_keras_weights` for MobileNetV2; loads into the stock Keras model too."""
    return save_keras_weights(state_dict, out_path, MOBILENET_V2, include_top)
