"""Reading and validating the data contract: labels.csv, test.csv, images.

Every error names the file, the row (1-based, as a spreadsheet shows it, header = row 1)
and what to do about it. Labels are read from the header, never hard-coded; an empty
cell means "unknown" and becomes NaN. Found, not trusted: an id resolves to a file inside
its ``images/`` folder (never a path), files are compared by resolved path and content
hash (two ids for one file, a test image that is a train image under another name), and
every image decodes completely (:func:`validate_images`, run by ``make folds``, which also
returns the perceptual hashes the duplicate-aware folds group by).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

#: Column names the pipeline writes beside the labels (the augmentation's ``labels.csv``
#: starts ``image,source,fold``; the folds file is ``image,fold``): a label may not use one.
RESERVED_COLUMNS = ("image", "source", "fold")

#: EXIF orientation tag -> how to turn the stored pixels upright (what photo viewers do).
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class LabelTable:
    """Training labels: ids (n,), y (n, L) float with NaN = unknown, label names (L,)."""

    ids: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    image_dir: Path

    def paths(self) -> list[Path]:
        return image_paths(self.ids, self.image_dir)


@dataclass(frozen=True)
class DataSet:
    """The whole data contract of a run: the training table and the test list, checked
    against each other (no test image is a training image by id, file or bytes)."""

    train: LabelTable
    test_ids: np.ndarray
    test_dir: Path
    train_csv: Path
    test_csv: Path

    def test_paths(self) -> list[Path]:
        return image_paths(self.test_ids, self.test_dir)


def read_csv_strings(
    path: Path, missing_hint: str = "the data folder needs this file"
) -> pd.DataFrame:
    """Every cell as a string, exactly as written (ids like ``001``, ``NA`` or ``None``
    stay intact), header names stripped of spaces.

    Parsed with the :mod:`csv` module rather than pandas, which would silently rename a
    repeated header (``a`` -> ``a.1``), turn ``NA`` ids into missing values and shift
    every column when rows have one field more than the header. A missing, empty or
    unparsable file, a repeated or blank header name and a row with the wrong number of
    fields are clear errors naming the file, row and column. Blank lines are skipped;
    rows are numbered as a spreadsheet shows them (header = row 1, blank lines not counted).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {missing_hint}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty; write a header row ('image,<label>,...') and rows")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig drops a BOM
            rows = [r for r in csv.reader(fh) if r]
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not a readable CSV: not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from exc
    except csv.Error as exc:
        raise ValueError(f"{path} is not a readable CSV: {exc}") from exc
    if not rows:
        raise ValueError(f"{path} is empty; write a header row and rows")
    raw = rows[0]
    names = [c.strip() for c in raw]
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        if name in seen and name:
            k = seen[name]
            spaces = " (they differ only in spaces)" if raw[k] != raw[j] else ""
            raise ValueError(
                f"{path} header: column {j + 1} {raw[j]!r} repeats column {k + 1} "
                f"{raw[k]!r}{spaces}; give every column a distinct name"
            )
        seen.setdefault(name, j)
    for r, row in enumerate(rows[1:]):
        if len(row) != len(names):
            raise ValueError(
                f"{path} row {r + 2}: {len(row)} fields but the header has {len(names)}; "
                "every row needs one cell per column (quote a value that holds a comma)"
            )
    return pd.DataFrame(rows[1:], columns=names, dtype=str)


def _resolves(i: str, present: set[str]) -> bool:
    return i in present or any(i + e in present for e in _EXTENSIONS_BOTH_CASES)


def _check_ids(df: pd.DataFrame, path: Path, id_column: str, image_dir: Path) -> np.ndarray:
    """Ids as written, unless only the id stripped of surrounding spaces names a file (said
    in a warning); an id is a file name inside ``image_dir``, never a path."""
    if id_column not in df.columns:
        raise ValueError(
            f"{path}: no {id_column!r} column in the header {list(df.columns)}; "
            f"name the image-id column {id_column!r} (or set data.id_column)"
        )
    raw = [str(x) for x in df[id_column]]
    if len(raw) == 0:
        raise ValueError(f"{path} has a header but no rows")
    present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
    ids, stripped = [], []
    for r, i in enumerate(raw):
        s = i.strip()
        if not s:
            raise ValueError(f"{path} row {r + 2}: empty {id_column!r}; every row needs an id")
        if s != i and not _resolves(i, present) and (_resolves(s, present) or not present):
            stripped.append((i, s))
            i = s
        if "/" in i or "\\" in i or i in (".", "..") or "\x00" in i:
            raise ValueError(
                f"{path} row {r + 2}: image id {i!r} is a path; an id is a file name inside "
                f"{image_dir} (no '/', '\\', '..' or absolute paths): put the file there "
                "and list its name"
            )
        ids.append(i)
    if stripped:
        log.warning(
            "%s: %d image id(s) have leading/trailing spaces and are matched without them, "
            "e.g. %r -> %r",
            path,
            len(stripped),
            *stripped[0],
        )
    ids = np.array(ids, dtype=str)
    dup = pd.Series(ids).duplicated(keep="first").to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero(ids == ids[r])[0])
        raise ValueError(
            f"{path} row {r + 2}: duplicate image id {str(ids[r])!r} (first at row {first + 2}); "
            "remove or rename the duplicate"
        )
    return ids


_EXTENSIONS_BOTH_CASES = IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS)


def image_paths(ids, image_dir: Path) -> list[Path]:
    """Each id's file: ``images/<id>`` itself, or ``images/<id>.<ext>`` for ids given without
    an extension (as many published data sets list them, e.g. ``000001`` -> ``000001.jpg``)."""
    image_dir = Path(image_dir)
    present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
    out = []
    for i in ids:
        i = str(i)
        if i in present:
            out.append(image_dir / i)
            continue
        for ext in _EXTENSIONS_BOTH_CASES:
            if i + ext in present:
                out.append(image_dir / (i + ext))
                break
        else:
            out.append(image_dir / i)
    return out


def _check_images_exist(ids: np.ndarray, image_dir: Path, csv_path: Path) -> list[Path]:
    """Every id names a file; no two ids name the same file (``x`` and ``x.png``, or a
    symlink to another row's image), compared by resolved path."""
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} does not exist; put the images for {csv_path} there")
    paths = image_paths(ids, image_dir)
    first: dict[str, int] = {}
    for r, (i, p) in enumerate(zip(ids, paths, strict=True)):
        if not p.is_file():
            spaces = f" (nor {i.strip()!r})" if i != i.strip() else ""
            raise FileNotFoundError(
                f"{csv_path} row {r + 2}: image {str(i)!r} not found in {image_dir}{spaces}; "
                "add the file or remove the row"
            )
        real = os.path.realpath(p)
        if real in first:
            k = first[real]
            raise ValueError(
                f"{csv_path} row {r + 2}: image {str(i)!r} is the same file as row {k + 2} "
                f"({str(ids[k])!r}): {real}; list each image once (remove one of the rows)"
            )
        first[real] = r
    return paths


def _label_cells(df: pd.DataFrame, name: str, path: Path) -> np.ndarray:
    """Column ``name`` of a labels table as float32: 0, 1, or NaN for an empty (unknown)
    cell; any other value is an error naming the row and column."""
    col = df[name].str.strip().to_numpy()
    ok = np.isin(col, ["0", "1", "", "0.0", "1.0"])
    if not ok.all():
        r = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"{path} row {r + 2}, column {name!r}: value {col[r]!r} is not 0, 1 or empty "
            "(empty = unknown); fix the cell"
        )
    out = np.full(len(col), np.nan, dtype=np.float32)
    known = col != ""
    out[known] = col[known].astype(float)
    return out


def read_labels(train_dir: str | Path, id_column: str = "image", check_images: bool = True):
    """Read ``train_dir/labels.csv``; return a :class:`LabelTable`.

    Cells must be 0, 1 or empty (unknown). A label column with no known cell is an error;
    a column with no positive (or no negative) is kept with a warning, since the
    threshold search and metrics handle it but the models cannot learn it. A label may
    not be named like a column the pipeline writes itself (:data:`RESERVED_COLUMNS`).
    """
    train_dir = Path(train_dir)
    path = train_dir / "labels.csv"
    image_dir = train_dir / "images"
    df = read_csv_strings(path)
    ids = _check_ids(df, path, id_column, image_dir)
    labels = tuple(c for c in df.columns if c != id_column)
    if not labels:
        raise ValueError(f"{path}: no label columns besides {id_column!r}")
    bad_names = [c for c in labels if c == "" or c.startswith("Unnamed:")]
    if bad_names:
        raise ValueError(f"{path}: a label column has no name in the header; name every column")
    reserved = [c for c in labels if c in RESERVED_COLUMNS]
    if reserved:
        raise ValueError(
            f"{path}: label column {reserved[0]!r} has a name the pipeline uses for its own "
            f"columns ({', '.join(RESERVED_COLUMNS)}); rename it, e.g. to {reserved[0] + '_'!r}"
        )
    y = np.full((len(df), len(labels)), np.nan, dtype=np.float32)
    for j, name in enumerate(labels):
        y[:, j] = _label_cells(df, name, path)
        known = ~np.isnan(y[:, j])
        if not known.any():
            raise ValueError(
                f"{path}: label column {name!r} is empty (no known value); drop the column"
            )
        pos = np.nansum(y[:, j])
        if pos == 0 or pos == known.sum():
            log.warning(
                "%s: label %r is %s in every known row; its model learns nothing",
                path,
                name,
                "0" if pos == 0 else "1",
            )
    if check_images:
        _check_images_exist(ids, image_dir, path)
    return LabelTable(ids=ids, y=y, labels=labels, image_dir=image_dir)


def read_test_ids(test_dir: str | Path, id_column: str = "image", check_images: bool = True):
    """Test image ids from ``test_dir/test.csv``, or every image file in ``test_dir/images``."""
    test_dir = Path(test_dir)
    path = test_dir / "test.csv"
    image_dir = test_dir / "images"
    if path.exists():
        ids = _check_ids(read_csv_strings(path), path, id_column, image_dir)
    else:
        if not image_dir.is_dir():
            raise FileNotFoundError(
                f"{test_dir}: neither test.csv nor images/ exists; add one of them"
            )
        ids = np.array(
            sorted(f for f in os.listdir(image_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
        )
        if len(ids) == 0:
            raise ValueError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if check_images:
        _check_images_exist(ids, image_dir, path)
    return ids, image_dir


def read_test_truth(
    path: str | Path,
    labels: Sequence[str],
    id_column: str = "image",
    test_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The held-out labels file (``data.test_truth``): one row per test image, indexed by
    its id (column ``id_column``, as written), the columns ``labels`` in that order, float32
    with NaN for an empty (unknown) cell.

    With ``test_ids`` the rows are exactly those ids in that order (the report and the
    benchmarks score a prediction matrix against it); an id the file lacks is an error.
    Parsed like ``labels.csv`` (:func:`read_csv_strings`: ids such as ``NA`` or ``001``
    stay strings; cells must be 0, 1 or empty).
    """
    path = Path(path)
    df = read_csv_strings(path, "set data.test_truth to the held-out labels file, or to ''")
    if id_column not in df.columns:
        raise ValueError(
            f"{path}: no {id_column!r} column in the header {list(df.columns)}; "
            f"name the image-id column {id_column!r} (or set data.id_column)"
        )
    missing = [c for c in labels if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing label column(s) {missing}; add them (empty = unknown)")
    ids = df[id_column].to_numpy()
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        raise ValueError(f"{path} row {r + 2}: duplicate image id {ids[r]!r}; list each once")
    truth = pd.DataFrame(
        {name: _label_cells(df, name, path) for name in labels},
        index=pd.Index(ids, name=id_column),
    )
    if test_ids is None:
        return truth
    wanted = [str(i) for i in test_ids]
    absent = [i for i in wanted if i not in truth.index]
    if absent:
        raise ValueError(
            f"{path}: does not list every test image ({len(absent)} missing, e.g. "
            f"{absent[0]!r}); add their rows"
        )
    return truth.loc[wanted]


def read_dataset(
    train_dir: str | Path,
    test_dir: str | Path,
    id_column: str = "image",
    check_images: bool = True,
) -> DataSet:
    """The data-contract check every stage that reads the data set runs: both tables, every
    id resolved to a file inside its images folder, and train/test disjoint by id,
    resolved path and content hash (:func:`check_disjoint`). Cheap (no decoding): about
    0.1 s for 3,000 photos; ``make folds`` decodes every image on top of it."""
    table = read_labels(train_dir, id_column, check_images)
    test_ids, image_dir = read_test_ids(test_dir, id_column, check_images)
    ds = DataSet(
        train=table,
        test_ids=test_ids,
        test_dir=image_dir,
        train_csv=Path(train_dir) / "labels.csv",
        test_csv=Path(test_dir) / "test.csv",
    )
    if check_images:
        check_disjoint(ds)
    else:
        _check_disjoint_ids(table.ids, test_ids, ds.train_csv, ds.test_csv)
    return ds


def _check_disjoint_ids(train_ids, test_ids, train_csv: Path, test_csv: Path) -> None:
    both = np.intersect1d(train_ids, test_ids)
    if len(both):
        raise ValueError(
            f"{len(both)} image id(s) appear in both {train_csv} and {test_csv}, e.g. "
            f"{str(both[0])!r}; a test image must not be in train"
        )


def check_disjoint(ds: DataSet) -> None:
    """A test image that is also a training image would leak its label: the same id, the
    same file (a symlink, ``x`` vs ``x.png``) or the same bytes (a copy) is an error."""
    _check_disjoint_ids(ds.train.ids, ds.test_ids, ds.train_csv, ds.test_csv)
    train_paths, test_paths = ds.train.paths(), ds.test_paths()
    where = f"{ds.test_csv} row" if ds.test_csv.is_file() else f"{ds.test_dir} image"
    real = {os.path.realpath(p): r for r, p in enumerate(train_paths)}
    for r, p in enumerate(test_paths):
        k = real.get(os.path.realpath(p))
        if k is not None:
            raise ValueError(
                f"{where} {r + 2}: test image {str(ds.test_ids[r])!r} is the same file as "
                f"train image {str(ds.train.ids[k])!r} ({ds.train_csv} row {k + 2}): "
                f"{os.path.realpath(p)}; a test image must not be in train: remove one of them"
            )
    digests = {d: r for r, d in enumerate(file_digests(train_paths))}
    for r, d in enumerate(file_digests(test_paths)):
        k = digests.get(d)
        if k is not None:
            raise ValueError(
                f"{where} {r + 2}: test image {test_paths[r]} has the same bytes as train "
                f"image {str(ds.train.ids[k])!r} ({ds.train_csv} row {k + 2}); a test image "
                "must not be in train: remove one of them"
            )


def file_digests(paths: Sequence[str | Path]) -> list[str]:
    """A content hash (BLAKE2b-128 hex) per file: exact duplicates under any name."""
    out = []
    for p in paths:
        with open(p, "rb") as fh:
            out.append(hashlib.blake2b(fh.read(), digest_size=16).hexdigest())
    return out


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
    from PIL import Image

    try:
        with Image.open(path) as im:
            value = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # not an image Pillow knows, or broken EXIF: nothing to honour
        return 1
    return value if 1 <= value <= 8 else 1


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


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode an image to uint8 RGB (H, W, 3), upright, optionally resized to ``size`` x
    ``size``. Every stage decodes through this one function.

    Grayscale, 4-channel and 16-bit images are converted rather than rejected. The EXIF
    orientation is honoured (as photo viewers show the photo); a decoder error becomes a
    ValueError naming the file.
    """
    import cv2

    path = str(path)
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
    img = apply_orientation(img, exif_orientation(path))
    if size is not None and img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def _check_complete(path: str) -> None:
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


#: Largest mean |difference| (0..255) of two 4x4 RGB thumbnails for a near copy: pHash
#: is colour-blind, and a recoloured garment (other colour labels) is not a copy.
NEAR_COLOUR_TOLERANCE = 16.0


@dataclass(frozen=True)
class Fingerprints:
    """Per image: a 64-bit DCT perceptual hash and a 4x4 RGB thumbnail (48 values)."""

    phash: np.ndarray
    thumb: np.ndarray

    def __len__(self) -> int:
        return len(self.phash)


def fingerprint(img: np.ndarray) -> tuple[np.uint64, np.ndarray]:
    """(pHash, thumbnail) of a decoded RGB image. pHash: grey 32x32, the 8x8 lowest DCT
    frequencies above their median; re-encodes, resizes and mild edits stay within a few
    bits."""
    import cv2

    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = np.packbits((low > np.median(low)).ravel())
    thumb = cv2.resize(img, (4, 4), interpolation=cv2.INTER_AREA).reshape(-1)
    return np.uint64(int.from_bytes(bits.tobytes(), "big")), thumb


def validate_images(
    paths: list[Path], csv: Path | None = None, desc: str = "check images"
) -> Fingerprints:
    """Decode every image once, up front, so a bad file stops the run before training;
    return each image's :class:`Fingerprints` for the duplicate search.

    Raises ValueError naming the file (and its row in ``csv``) for a zero-byte, truncated
    (even where OpenCV shows a partial picture), oversized or non-image file.
    """
    import cv2
    from tqdm import tqdm

    hashes = np.zeros(len(paths), dtype=np.uint64)
    thumbs = np.zeros((len(paths), 48), dtype=np.uint8)
    for r, path in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, mininterval=1)):
        where = f"{csv} row {r + 2}: " if csv is not None else ""
        try:
            if Path(path).stat().st_size == 0:
                raise ValueError("empty")
            img = load_image(path)
            _check_complete(str(path))
        except (ValueError, OSError, cv2.error) as exc:
            detail = str(exc)
            if not detail.startswith(str(path)):  # the generic case keeps its old wording
                detail = (
                    f"{path} is empty, truncated or not an image; replace the file or "
                    "remove its row"
                )
            raise ValueError(f"{where}{detail}") from exc
        hashes[r], thumbs[r] = fingerprint(img)
    return Fingerprints(hashes, thumbs)


def near_pairs(
    a: Fingerprints, b: Fingerprints | None = None, max_distance: int = 4
) -> list[tuple[int, int, int]]:
    """Index pairs (i, j, pHash distance) of near copies: within ``max_distance`` bits and
    with thumbnails within :data:`NEAR_COLOUR_TOLERANCE`; inside ``a`` (i < j) when ``b``
    is None, else between ``a`` and ``b``. Blocked, so 3,000 images take milliseconds."""
    same = b is None
    b = a if same else b
    ha, hb = np.asarray(a.phash, dtype=np.uint64), np.asarray(b.phash, dtype=np.uint64)
    out = []
    for s in range(0, len(ha), 512):
        d = _popcount64(ha[s : s + 512, None] ^ hb[None, :])
        i, j = np.nonzero(d <= max_distance)
        i = i + s
        keep = i < j if same else np.ones(len(i), bool)
        for x, y in zip(i[keep], j[keep], strict=True):
            colour = np.abs(a.thumb[x].astype(np.int16) - b.thumb[y].astype(np.int16)).mean()
            if colour <= NEAR_COLOUR_TOLERANCE:
                out.append((int(x), int(y), int(d[x - s, y])))
    return out


def _popcount64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x)
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)
    return table[np.ascontiguousarray(x).view(np.uint8)].reshape(*x.shape, 8).sum(-1)


def duplicate_groups(n: int, pairs) -> np.ndarray:
    """Group id per row (the smallest row index of its group) from duplicate ``pairs``
    (i, j, ...), joined transitively (union-find)."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, *_ in pairs:
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(x) for x in range(n)], dtype=np.int64)


def copy_groups(
    paths: Sequence[str | Path], prints: Fingerprints, max_distance: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(exact-copy group, exact-or-near-copy group) per image, as :func:`duplicate_groups`
    ids: same bytes, or :func:`near_pairs` within ``max_distance`` bits (-1: exact only)."""
    pairs: list[tuple[int, int, int]] = []
    by_digest: dict[str, int] = {}
    for r, d in enumerate(file_digests(paths)):
        if d in by_digest:
            pairs.append((by_digest[d], r, 0))
        else:
            by_digest[d] = r
    exact = duplicate_groups(len(paths), pairs)
    if max_distance >= 0:
        pairs += near_pairs(prints, max_distance=max_distance)
    return exact, duplicate_groups(len(paths), pairs)


def duplicate_report(
    ds: DataSet,
    train_prints: Fingerprints,
    test_prints: Fingerprints,
    max_distance: int = 4,
) -> tuple[np.ndarray, dict]:
    """Group the training rows that are copies of one photo, and find test images that
    nearly copy a training image.

    Exact copies share their bytes (content hash); near copies are within
    ``max_distance`` bits of pHash with similar colours (:func:`near_pairs`; -1: exact
    copies only). Groups join transitively.
    Exact train/test copies never reach here (:func:`check_disjoint` refuses them);
    near ones are reported, not refused: a user's test set is theirs.

    Returns:
        (group id per training row, the JSON-ready report ``make folds`` writes).
    """
    ids = ds.train.ids
    n = len(ids)
    exact_groups, groups = copy_groups(ds.train.paths(), train_prints, max_distance)
    members: dict[int, list[int]] = {}
    for r, g in enumerate(groups):
        members.setdefault(int(g), []).append(r)
    multi = [rows for rows in members.values() if len(rows) > 1]
    y = ds.train.y
    conflicting = 0
    for rows in multi:
        block = y[rows]
        if (
            (np.nanmax(block, axis=0, initial=0) == 1) & (np.nanmin(block, axis=0, initial=1) == 0)
        ).any():
            conflicting += 1
    cross = (
        near_pairs(train_prints, test_prints, max_distance=max_distance)
        if max_distance >= 0
        else []
    )
    report = {
        "train_images": n,
        "test_images": len(ds.test_ids),
        "near_duplicate_max_distance": max_distance,
        "method": "exact = same bytes (BLAKE2b); near = 64-bit DCT pHash within "
        f"{max_distance} bits and 4x4 RGB thumbnails within {NEAR_COLOUR_TOLERANCE:g} "
        "(mean |difference|); groups join transitively and stay in one fold",
        "train_groups": {
            "exact": int(sum(np.bincount(exact_groups) > 1)),
            "all": len(multi),
            "rows_in_groups": int(sum(len(rows) for rows in multi)),
            "largest": max((len(rows) for rows in multi), default=1),
            "with_conflicting_labels": conflicting,
        },
        "groups": [[str(ids[r]) for r in rows] for rows in multi],
        "train_test_near_duplicates": {
            "count": len(cross),
            "pairs": [
                {"train": str(ids[i]), "test": str(ds.test_ids[j]), "distance": d}
                for i, j, d in cross
            ],
        },
    }
    return groups, report
