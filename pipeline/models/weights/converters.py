"""torch weights -> Keras weights along an :class:`~pipeline.models.weights.plans.Architecture`:
kernel layouts and the BatchNorm-epsilon difference folded into gamma."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.models.weights.plans import MOBILENET_V2, TORCH_BN_EPSILON, Architecture

log = logging.getLogger(__name__)


BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def state_tensor(state_dict: dict[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    try:
        value = np.asarray(state_dict[key], dtype=np.float32)
    except KeyError:
        raise ValueError(
            f"state dict has no {key!r}: not a checkpoint of this architecture"
        ) from None
    if value.ndim != ndim:
        raise ValueError(f"state dict {key!r} has shape {value.shape}, expected {ndim} dims")
    return value


def conv_kernel_to_keras(weight: np.ndarray, depthwise: bool) -> np.ndarray:
    """torch conv weight -> Keras kernel.

    Dense conv: (out, in, kh, kw) -> (kh, kw, in, out). Depthwise (groups == channels):
    torch (C, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, C, 1). Cross-correlation in both
    frameworks, so no kernel flip.
    """
    if depthwise:
        if weight.shape[1] != 1:
            raise ValueError(f"depthwise weight must be (C, 1, kh, kw), got {weight.shape}")
        return np.ascontiguousarray(weight.transpose(2, 3, 0, 1))
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def batchnorm_to_keras(
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    keras_epsilon: float,
    torch_epsilon: float = TORCH_BN_EPSILON,
) -> list[np.ndarray]:
    """torch BN -> Keras ``[gamma, beta, moving_mean, moving_variance]`` for ``keras_epsilon``.

    Folds the epsilon difference into gamma, so the stock Keras layer (epsilon 1e-3)
    computes exactly what torch's (1e-5) did: ``gamma * (x - mean) / sqrt(var + eps)`` is
    kept by scaling gamma with ``sqrt(var + eps_k) / sqrt(var + eps_t)``. Shifting the
    variance instead would go negative for channels with var < 1e-3. Fine-tuning later
    re-estimates mean/var with Keras' epsilon, which is the usual behaviour.
    """
    var64 = var.astype(np.float64)
    scale = np.sqrt(var64 + keras_epsilon) / np.sqrt(var64 + torch_epsilon)
    return [
        (gamma.astype(np.float64) * scale).astype(np.float32),
        beta.astype(np.float32),
        mean.astype(np.float32),
        var.astype(np.float32),
    ]


def convert(
    state_dict: dict[str, np.ndarray],
    arch: Architecture = MOBILENET_V2,
    keras_epsilon: float = 1e-3,
) -> dict[str, list[np.ndarray]]:
    """torch state dict -> ``{keras layer name: layer weights}`` for ``arch``.

    Keyed by layer name (not one flat list) so the same result fills the include-top and
    the headless model; ``predictions`` (Dense, kernel (in, out)) is the ImageNet
    classifier, whose 1000 classes are in the same order in torchvision and Keras.
    """
    out: dict[str, list[np.ndarray]] = {}
    for block in arch.blocks:
        for u in block.units:
            weight = state_tensor(state_dict, f"{u.torch_conv}.weight", 4)
            out[u.keras_conv] = [conv_kernel_to_keras(weight, u.depthwise)]
            out[u.keras_bn] = batchnorm_to_keras(
                *(state_tensor(state_dict, f"{u.torch_bn}.{k}", 1) for k in BN_KEYS),
                keras_epsilon=keras_epsilon,
                torch_epsilon=arch.torch_epsilon,
            )
    weight = state_tensor(state_dict, f"{arch.classifier}.weight", 2)
    bias = state_tensor(state_dict, f"{arch.classifier}.bias", 1)
    out["predictions"] = [np.ascontiguousarray(weight.T), bias]
    return out


def convert_mobilenet_v2(
    state_dict: dict[str, np.ndarray], keras_epsilon: float = 1e-3
) -> dict[str, list[np.ndarray]]:
    """torchvision MobileNetV2 state dict -> ``{keras layer name: layer weights}``."""
    return convert(state_dict, MOBILENET_V2, keras_epsilon)


def set_weights(
    model, state_dict: dict[str, np.ndarray], arch: Architecture = MOBILENET_V2
) -> None:
    """Load torch weights into a Keras model of ``arch`` (with or without top), in place.

    Each BatchNormalization's own ``epsilon`` is read from the model, so the gamma fold
    suits whatever model is passed. Every weighted layer of the model must be covered.
    """
    import keras

    eps = {
        float(layer.epsilon)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    if len(eps) > 1:
        raise ValueError(f"model mixes BatchNorm epsilons {sorted(eps)}")
    mapping = convert(state_dict, arch, keras_epsilon=eps.pop() if eps else 1e-3)
    loaded = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in mapping:
            raise ValueError(f"Keras layer {layer.name!r} has no torch counterpart in {arch.name}")
        new = mapping[layer.name]
        old = layer.get_weights()
        if [w.shape for w in old] != [w.shape for w in new]:
            raise ValueError(
                f"layer {layer.name!r}: Keras shapes {[w.shape for w in old]} != converted "
                f"{[w.shape for w in new]}"
            )
        layer.set_weights(new)
        loaded += 1
    log.info("set %d %s layers from the torch state dict", loaded, arch.name)


def set_mobilenet_v2_weights(model, state_dict: dict[str, np.ndarray]) -> None:
    """:func:`set_weights` for MobileNetV2 (stock Keras or torch-padding layout)."""
    set_weights(model, state_dict, MOBILENET_V2)
