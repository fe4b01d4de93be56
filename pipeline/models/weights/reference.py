"""Reference forward passes with PyTorch semantics, to check the converted Keras models
against: ``torch.nn.functional`` when torch is importable, else NumPy."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.models.weights.converters import BN_KEYS, state_tensor
from pipeline.models.weights.plans import MOBILENET_V2, Architecture

log = logging.getLogger(__name__)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(images: np.ndarray, mode: str) -> np.ndarray:
    """RGB 0..255 (N, H, W, 3) -> the normalisation the torch weights were trained with.

    ``"torch"``: /255, minus ImageNet mean, over ImageNet std (torchvision).
    ``"tf"``: (x - 127) / 128 (TensorFlow's EfficientNet-Lite training).
    """
    x = np.asarray(images, dtype=np.float32)
    if mode == "torch":
        return (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    if mode == "tf":
        return (x - 127.0) / 128.0
    raise ValueError(f"preprocess mode must be 'torch' or 'tf', got {mode!r}")


def preprocess_torch(images: np.ndarray) -> np.ndarray:
    """torchvision normalisation (ImageNet mean/std) of RGB 0..255 images."""
    return preprocess(images, "torch")


def _pads(size: int, kernel: int, stride: int, tf_same: bool) -> tuple[int, int]:
    """(before, after) padding of one spatial dim: torch symmetric or TF "same"."""
    if not tf_same:
        return kernel // 2, kernel // 2
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _np_conv(
    x: np.ndarray, weight: np.ndarray, stride: int, depthwise: bool, tf_same: bool = False
) -> np.ndarray:
    """NHWC conv with torch weights (OIHW) and torch (symmetric) or TF "same" padding."""
    kh, kw = weight.shape[2:]
    if kh == kw == 1 and stride == 1 and not depthwise:
        return x @ weight[:, :, 0, 0].T
    n, h, w, _ = x.shape
    ph, pw = _pads(h, kh, stride, tf_same), _pads(w, kw, stride, tf_same)
    xp = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    ho, wo = (h + sum(ph) - kh) // stride + 1, (w + sum(pw) - kw) // stride + 1
    offsets = [(dy, dx) for dy in range(kh) for dx in range(kw)]
    taps = [
        xp[:, dy : dy + stride * (ho - 1) + 1 : stride, dx : dx + stride * (wo - 1) + 1 : stride]
        for dy, dx in offsets
    ]
    if depthwise:
        out = np.zeros((n, ho, wo, weight.shape[0]), dtype=np.float32)
        for (dy, dx), tap in zip(offsets, taps, strict=True):
            out += tap * weight[:, 0, dy, dx]
        return out
    cols = np.stack(taps, axis=3)  # (n, ho, wo, kh*kw, in)
    kernel = weight.transpose(2, 3, 1, 0).reshape(kh * kw * weight.shape[1], weight.shape[0])
    return cols.reshape(n, ho, wo, -1) @ kernel


def reference_logits_numpy(
    state_dict: dict[str, np.ndarray], x: np.ndarray, arch: Architecture = MOBILENET_V2
) -> np.ndarray:
    """The torch model's forward in NumPy (float32), from the state dict alone.

    Independent of Keras: torch padding rule, torch epsilon, torch tensor names. Input is
    already normalised NHWC; returns (N, 1000) logits.
    """
    x = np.asarray(x, dtype=np.float32)
    for block in arch.blocks:
        inp = x
        for u in block.units:
            weight = state_tensor(state_dict, f"{u.torch_conv}.weight", 4)
            x = _np_conv(x, weight, u.stride, u.depthwise, arch.tf_same_padding)
            g, b, m, v = (state_tensor(state_dict, f"{u.torch_bn}.{k}", 1) for k in BN_KEYS)
            x = (x - m) / np.sqrt(v + arch.torch_epsilon) * g + b
            if u.relu6:
                x = np.clip(x, 0.0, 6.0)
        if block.residual:
            x = x + inp
    pooled = x.mean(axis=(1, 2))
    weight = state_tensor(state_dict, f"{arch.classifier}.weight", 2)
    return pooled @ weight.T + state_tensor(state_dict, f"{arch.classifier}.bias", 1)


def reference_logits_torch(
    state_dict: dict[str, np.ndarray], x: np.ndarray, arch: Architecture = MOBILENET_V2
) -> np.ndarray:
    """The same forward with ``torch.nn.functional`` (torchvision need not import).

    Only for verification when the optional ``torch`` extra is installed.
    """
    import torch
    import torch.nn.functional as F

    sd = {k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))
        for block in arch.blocks:
            inp = t
            for u in block.units:
                weight = sd[f"{u.torch_conv}.weight"]
                k = weight.shape[-1]
                (top, bottom), (left, right) = (
                    _pads(t.shape[2], k, u.stride, arch.tf_same_padding),
                    _pads(t.shape[3], k, u.stride, arch.tf_same_padding),
                )
                t = F.pad(t, (left, right, top, bottom))
                groups = weight.shape[0] if u.depthwise else 1
                t = F.conv2d(t, weight, stride=u.stride, groups=groups)
                t = F.batch_norm(
                    t,
                    sd[f"{u.torch_bn}.running_mean"],
                    sd[f"{u.torch_bn}.running_var"],
                    sd[f"{u.torch_bn}.weight"],
                    sd[f"{u.torch_bn}.bias"],
                    training=False,
                    eps=arch.torch_epsilon,
                )
                if u.relu6:
                    t = F.relu6(t)
            if block.residual:
                t = t + inp
        t = F.adaptive_avg_pool2d(t, 1).flatten(1)
        t = F.linear(t, sd[f"{arch.classifier}.weight"], sd[f"{arch.classifier}.bias"])
    return t.numpy()


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # a broken torch install is as good as none for an optional check
        return False
    return True
