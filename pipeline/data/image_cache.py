"""The decode cache: every image of a run decoded once, resized, kept as uint8 arrays.

Decoding is the same work in every stage (training decodes each image once per epoch, its
per-epoch predictions once more, Two-Flow, the baseline, similarity and the frozen embedder
again), so ``make`` builds, once per data set, one memory-mapped ``.npy`` per image size
(``build/<name>/cache/images.<size>.npy``) and an index (``images.index.json``: for each
row its path, byte size, mtime and BLAKE2b content hash). Stages read rows from the maps
instead of decoding; random crop, flip and stretch still happen per epoch on the arrays.

A row is exactly :func:`pipeline.runtime.images.load_image`'s output for that size (one full-size
decode, then :func:`pipeline.runtime.images.resize_image` per size), so predictions and the
submission stay byte-identical to decoding the files.

Never stale: opening the cache compares every file's size, mtime and content hash with
the index; a changed or unknown image is decoded from its file (with a warning) instead
of read from the map. Make rebuilds the cache when an image's mtime changes; the hash also
catches a same-size rewrite that kept its mtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_atomic
from pipeline.runtime.images import decode_image, load_image, resize_image

log = logging.getLogger(__name__)

FORMAT = "fashion-image-cache/1"


def _key(path: str | Path) -> str:
    return os.path.abspath(os.path.normpath(str(path)))


def _digest(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=16).hexdigest()


def _file_entry(path: str | Path) -> dict:
    st = os.stat(path)
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": _digest(path)}


def array_path(index: str | Path, size: int) -> Path:
    """Where the index ``index`` keeps its ``size`` px images (``images.<size>.npy``)."""
    index = Path(index)
    return index.with_name(f"{index.name.removesuffix('.index.json')}.{size}.npy")


def build_image_cache(paths: Sequence[str | Path], sizes: Sequence[int], index: str | Path):
    """Decode each image once; write one uint8 ``(n, s, s, 3)`` ``.npy`` per size in
    ``sizes`` beside ``index`` (:func:`array_path`), then the index. Atomic per file, index
    last, so a killed build leaves the old cache (or none) readable.

    Raises ValueError naming the file for an image that does not decode, and for a path
    listed twice (one row per file).
    """
    from tqdm import tqdm

    index = Path(index)
    sizes = sorted({int(s) for s in sizes})
    if not sizes or min(sizes) < 1:
        raise ValueError(f"image cache sizes must be positive integers, got {sizes}")
    keys = [_key(p) for p in paths]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"image cache: {dup} is listed twice; list every image once")
    index.parent.mkdir(parents=True, exist_ok=True)
    tmps = {s: index.with_name(f".{array_path(index, s).name}.tmp-{os.getpid()}") for s in sizes}
    maps = {
        s: np.lib.format.open_memmap(
            tmps[s], mode="w+", dtype=np.uint8, shape=(len(paths), s, s, 3)
        )
        for s in sizes
    }
    entries = []
    try:
        for r, p in enumerate(tqdm(paths, desc="decode cache", unit="img", mininterval=1)):
            full = decode_image(p)
            for s in sizes:
                maps[s][r] = resize_image(full, s)
            entries.append({"path": str(p), "shape": list(full.shape[:2]), **_file_entry(p)})
        for s in sizes:
            maps[s].flush()
            del maps[s]
            os.replace(tmps[s], array_path(index, s))
    finally:
        for t in tmps.values():
            Path(t).unlink(missing_ok=True)
    payload = {"format": FORMAT, "sizes": sizes, "files": entries}
    write_atomic(index, lambda tmp: tmp.write_text(json.dumps(payload) + "\n"))
    log.info("image cache: %d images x sizes %s -> %s", len(paths), sizes, index.parent)


class ImageCache:
    """Read side of :func:`build_image_cache`: ``get(path, size)`` is
    ``load_image(path, size)``, from the memory map when the file is unchanged.

    Opened once per stage; every file is checked against the index on open (size, mtime,
    content hash), so a changed image is decoded from its file, never served stale.
    """

    def __init__(self, index: str | Path, verify_hash: bool = True):
        self.index = Path(index)
        if not self.index.is_file():
            raise FileNotFoundError(f"{self.index} does not exist; build it with `make` first")
        try:
            payload = json.loads(self.index.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.index} is not a cache index ({exc}); rebuild it") from exc
        if payload.get("format") != FORMAT:
            raise ValueError(f"{self.index}: not a {FORMAT} index; rebuild it")
        self.sizes = tuple(payload["sizes"])
        self._rows: dict[str, int] = {}
        self._shapes: dict[str, tuple[int, int]] = {}
        stale = []
        for r, e in enumerate(payload["files"]):
            key = _key(e["path"])
            if self._fresh(e, verify_hash):
                self._rows[key] = r
                self._shapes[key] = tuple(e["shape"])
            else:
                stale.append(e["path"])
        if stale:
            log.warning(
                "%s: %d image(s) changed since the cache was built (e.g. %s); decoding "
                "them from their files (`make` rebuilds the cache)",
                self.index,
                len(stale),
                stale[0],
            )
        self.stale = tuple(stale)
        self._maps: dict[int, np.ndarray] = {}

    @staticmethod
    def _fresh(entry: dict, verify_hash: bool) -> bool:
        try:
            st = os.stat(entry["path"])
        except OSError:
            return False
        if st.st_size != entry["bytes"] or st.st_mtime_ns != entry["mtime_ns"]:
            return False
        return not verify_hash or _digest(entry["path"]) == entry["blake2b"]

    def __contains__(self, path: str | Path) -> bool:
        return _key(path) in self._rows

    def _map(self, size: int) -> np.ndarray:
        if size not in self._maps:
            self._maps[size] = np.load(array_path(self.index, size), mmap_mode="r")
        return self._maps[size]

    def get(self, path: str | Path, size: int) -> np.ndarray:
        """``load_image(path, size)``: a copy of the cached row, or a decode of the file
        when it is not cached (another size, a new or changed file)."""
        r = self._rows.get(_key(path))
        if r is None or size not in self.sizes:
            return load_image(path, size)
        return np.array(self._map(size)[r])

    def thumbnail(self, path: str | Path, size: int) -> np.ndarray:
        """``cv2.resize(load_image(path), (size, size), INTER_AREA)`` (the pixel features of
        ``pipeline.models.inference.downsample_pixels``): the cached row where that is the same
        array (an image already ``size`` x ``size``, or larger and area-shrunk by both),
        else a decode."""
        import cv2

        shape = self._shapes.get(_key(path))
        if (
            shape is not None
            and size in self.sizes
            and (shape == (size, size) or max(shape) > size)
        ):
            return self.get(path, size)
        img = load_image(path)
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        return img


def read_image(path: str | Path, size: int, cache: ImageCache | None = None) -> np.ndarray:
    """``load_image(path, size)``, through ``cache`` when one is given."""
    return load_image(path, size) if cache is None else cache.get(path, size)


def open_cache(index: str | Path | None) -> ImageCache | None:
    """An :class:`ImageCache` for a stage's ``--image-cache`` argument (None: decode files)."""
    return None if index is None else ImageCache(index)
