"""Decoding image files: the one decode every stage goes through (:func:`decode_image`,
:func:`load_image`), the file types it reads (:data:`IMAGE_EXTENSIONS`), the pixel-count
check made from the header before any decode (:func:`check_pixels`: a 200-byte PNG can
declare 30000 x 30000 pixels, 2.7 GB decoded), EXIF orientation, the one resize rule,
and the check that a file decodes completely (OpenCV shows a cut-off JPEG as a partial
picture).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np

#: EXIF orientation tag -> how to turn the stored pixels upright (what photo viewers do).
_EXIF_ORIENTATION = 0x0112

#: The file types :func:`decode_image` reads (lower case; names match case-insensitively):
#: those OpenCV decodes (it tells formats by their bytes, so ``.jfif``/``.jpe`` are JPEGs)
#: whose header Pillow also reads, so :func:`check_pixels` sizes every one before its
#: decode. Left out: ``.exr`` (OpenCV's codec is off by default) and the float formats
#: ``.hdr``/``.pic``/``.pfm`` (Pillow cannot size them; not photos). The one list for
#: listing a test folder and for ids written without an extension.
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".bmp",
    ".dib",
    ".webp",
    ".avif",
    ".tif",
    ".tiff",
    ".gif",
    ".jp2",
    ".pbm",
    ".pgm",
    ".ppm",
    ".pnm",
    ".sr",
    ".ras",
)

#: Most pixels a data-set image may have (width x height, 2^27 = 134 megapixels, e.g.
#: 11,585 x 11,585): a 100-MP medium-format photo fits, its decode stays near 400 MB, and a
#: decompression bomb is refused from its header in milliseconds. OpenCV's own limit
#: (2^30, 3.2 GB decoded) and Pillow's (179 MP, met in :func:`check_complete` after the
#: decode) are both above it; files Pillow cannot size still meet OpenCV's.
MAX_PIXELS = 2**27


class DeclaredTooBig(ValueError):
    """Pillow's own bomb check (over 179 MP) refused to open an image: ``pixels`` is what
    its header declares (0 when the message did not say)."""

    def __init__(self, pixels: int):
        super().__init__(f"{pixels} pixels declared")
        self.pixels = pixels


def image_header(source: str | Path | bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) read from the header of a file or of its bytes,
    without decoding the pixels (Pillow opens lazily, ~50 us); None for data Pillow does
    not recognise.

    Raises:
        DeclaredTooBig: Pillow refused to open it as a decompression bomb.
    """
    from PIL import Image, UnidentifiedImageError

    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                width, height = im.size
                try:
                    orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                except Exception:  # broken EXIF: nothing to honour
                    orientation = 1
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise DeclaredTooBig(int(found.group(1)) if found else 0) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return None
    return width, height, orientation if 1 <= orientation <= 8 else 1


def check_pixels(
    source: str | Path | bytes,
    limit: int = MAX_PIXELS,
    name: str | None = None,
    fix: str = "downscale the image or remove its row",
) -> tuple[int, int, int] | None:
    """Refuse an image whose header declares more than ``limit`` pixels, before anything
    decodes it; return its :func:`image_header` (None: Pillow cannot read the header,
    the decoder's own limit applies).

    Raises:
        ValueError: naming ``name`` (default: the path), its size, the limit and ``fix``.
    """
    if name is None:
        name = "the upload" if isinstance(source, bytes | bytearray) else str(source)
    try:
        header = image_header(source)
    except DeclaredTooBig as exc:
        size = f"{exc.pixels / 1e6:,.0f} megapixels" if exc.pixels else "over 179 megapixels"
    else:
        if header is None or header[0] * header[1] <= limit:
            return header
        w, h, _ = header
        size = f"{w} x {h} = {w * h / 1e6:,.0f} megapixels"
    raise ValueError(
        f"{name}: too many pixels ({size}; the limit is {limit / 1e6:,.0f} megapixels): {fix}"
    )


def _decode_error(path: str, exc: Exception) -> ValueError:
    text = str(exc)
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return ValueError(
            f"{path}: too many pixels for OpenCV's decoder (limit 2^30 = "
            "CV_IO_MAX_IMAGE_PIXELS); downscale the image or remove its row"
        )
    return ValueError(
        f"{path}: OpenCV cannot decode it ({text.strip().splitlines()[-1]}); replace the file "
        "or remove its row"
    )


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (1..8; 1 = upright, also for files without EXIF).

    Reads the header only (Pillow opens lazily), ~50 us a file."""
    try:
        header = image_header(path)
    except DeclaredTooBig:  # too big to open: nothing to honour
        return 1
    return 1 if header is None else header[2]


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for an EXIF ``orientation`` (as Pillow's
    ``ImageOps.exif_transpose`` and photo viewers do)."""
    if orientation == 2:
        return img[:, ::-1].copy()
    if orientation == 3:
        return img[::-1, ::-1].copy()
    if orientation == 4:
        return img[::-1].copy()
    if orientation == 5:
        return np.ascontiguousarray(np.swapaxes(img, 0, 1))
    if orientation == 6:
        return np.ascontiguousarray(np.rot90(img, -1))
    if orientation == 7:
        return np.ascontiguousarray(np.rot90(img, 2).swapaxes(0, 1))
    if orientation == 8:
        return np.ascontiguousarray(np.rot90(img, 1))
    return img


#: When set, names a file :func:`decode_image` appends one line (the path) to per file
#: decode: ``make bench-speed`` counts how often a run decodes each image.
COUNT_DECODES_ENV = "FASHION_COUNT_DECODES"


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode an image to uint8 RGB (H, W, 3), upright, optionally resized to ``size`` x
    ``size``. Every stage decodes through this one function (or reads the decode cache,
    ``pipeline.data.image_cache``, which holds exactly its output).

    Grayscale, 4-channel and 16-bit images are converted rather than rejected. The EXIF
    orientation is honoured (as photo viewers show the photo); a decoder error becomes a
    ValueError naming the file.
    """
    return resize_image(decode_image(path), size)


def resize_image(img: np.ndarray, size: int | None) -> np.ndarray:
    """``img`` as :func:`load_image` sizes it: area-resized when shrinking (it averages the
    pixels it merges), bilinear when enlarging, untouched at ``size`` x ``size`` or None."""
    import cv2

    if size is not None and img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def decode_image(path: str | Path) -> np.ndarray:
    """The full-size upright uint8 RGB pixels of an image file (see :func:`load_image`).

    The header is read first (:func:`check_pixels`): an image over :data:`MAX_PIXELS` is
    refused before OpenCV allocates its pixels."""
    import cv2

    path = str(path)
    header = check_pixels(path)
    try:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise _decode_error(path, exc) from exc
    if img is None or img.size == 0:
        raise ValueError(
            f"{path}: cannot decode image (missing, empty, truncated or not an image); "
            "replace the file or remove its row"
        )
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"{path}: unsupported channel count {img.shape[2]}")
    img = apply_orientation(img, 1 if header is None else header[2])
    counter = os.environ.get(COUNT_DECODES_ENV)
    if counter:  # one short O_APPEND write per decode: safe from parallel processes
        with open(counter, "a", encoding="utf-8") as fh:
            fh.write(os.path.abspath(path) + "\n")
    return img


def check_complete(path: str) -> None:
    """Raise when only part of the file decodes (a cut-off JPEG decodes in OpenCV with the
    bottom of the picture grey): Pillow's decoders refuse truncated data."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":  # a 1/8-scale decode still reads every scan, 8x faster
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except UnidentifiedImageError:
        return  # a format only OpenCV reads; it decoded, nothing more to check
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"{path}: too many pixels to decode safely ({exc}); downscale it or remove its row"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"{path} is truncated or corrupt ({exc}): only part of the picture decodes; "
            "replace the file or remove its row"
        ) from exc
