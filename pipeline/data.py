"""Reading and validating the data contract: labels.csv, test.csv, images.

Every error names the file, the row (1-based, as a spreadsheet shows it, header = row 1)
and what to do about it. Labels are read from the header, never hard-coded; an empty
cell means "unknown" and becomes NaN.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class LabelTable:
    """Training labels: ids (n,), y (n, L) float with NaN = unknown, label names (L,)."""

    ids: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    image_dir: Path

    def paths(self) -> list[Path]:
        return image_paths(self.ids, self.image_dir)


def read_csv_strings(
    path: Path, missing_hint: str = "the data folder needs this file"
) -> pd.DataFrame:
    """Every cell as a string (ids like ``001`` stay intact), header names stripped; a
    missing, empty or unparsable file is a clear error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {missing_hint}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty; write a header row ('image,<label>,...') and rows")
    try:
        # utf-8-sig drops a BOM; dtype=str keeps ids like '001' intact.
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{path} is empty; write a header row and rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable CSV: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _check_ids(df: pd.DataFrame, path: Path, id_column: str) -> np.ndarray:
    if id_column not in df.columns:
        raise ValueError(
            f"{path}: no {id_column!r} column in the header {list(df.columns)}; "
            f"name the image-id column {id_column!r} (or set data.id_column)"
        )
    ids = df[id_column].str.strip()
    if len(ids) == 0:
        raise ValueError(f"{path} has a header but no rows")
    empty = np.flatnonzero(ids.to_numpy() == "")
    if len(empty):
        raise ValueError(f"{path} row {empty[0] + 2}: empty {id_column!r}; every row needs an id")
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero(ids.to_numpy() == ids.iloc[r])[0])
        raise ValueError(
            f"{path} row {r + 2}: duplicate image id {ids.iloc[r]!r} (first at row {first + 2}); "
            "remove or rename the duplicate"
        )
    return ids.to_numpy().astype(str)


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
        for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
            if i + ext in present:
                out.append(image_dir / (i + ext))
                break
        else:
            out.append(image_dir / i)
    return out


def _check_images_exist(ids: np.ndarray, image_dir: Path, csv: Path) -> None:
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} does not exist; put the images for {csv} there")
    for r, (i, p) in enumerate(zip(ids, image_paths(ids, image_dir), strict=True)):
        if not p.is_file():
            raise FileNotFoundError(
                f"{csv} row {r + 2}: image {str(i)!r} not found in {image_dir}; "
                "add the file or remove the row"
            )


def read_labels(train_dir: str | Path, id_column: str = "image", check_images: bool = True):
    """Read ``train_dir/labels.csv``; return a :class:`LabelTable`.

    Cells must be 0, 1 or empty (unknown). A label column with no known cell is an error;
    a column with no positive (or no negative) is kept with a warning, since the
    threshold search and metrics handle it but the models cannot learn it.
    """
    train_dir = Path(train_dir)
    path = train_dir / "labels.csv"
    df = read_csv_strings(path)
    ids = _check_ids(df, path, id_column)
    labels = tuple(c for c in df.columns if c != id_column)
    if not labels:
        raise ValueError(f"{path}: no label columns besides {id_column!r}")
    bad_names = [c for c in labels if c == "" or c.startswith("Unnamed:")]
    if bad_names:
        raise ValueError(f"{path}: a label column has no name in the header; name every column")
    y = np.full((len(df), len(labels)), np.nan, dtype=np.float32)
    for j, name in enumerate(labels):
        col = df[name].str.strip().to_numpy()
        ok = np.isin(col, ["0", "1", "", "0.0", "1.0"])
        if not ok.all():
            r = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"{path} row {r + 2}, column {name!r}: value {col[r]!r} is not 0, 1 or empty "
                "(empty = unknown); fix the cell"
            )
        known = col != ""
        y[known, j] = col[known].astype(float)
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
    image_dir = train_dir / "images"
    if check_images:
        _check_images_exist(ids, image_dir, path)
    return LabelTable(ids=ids, y=y, labels=labels, image_dir=image_dir)


def read_test_ids(test_dir: str | Path, id_column: str = "image", check_images: bool = True):
    """Test image ids from ``test_dir/test.csv``, or every image file in ``test_dir/images``."""
    test_dir = Path(test_dir)
    path = test_dir / "test.csv"
    image_dir = test_dir / "images"
    if path.exists():
        ids = _check_ids(read_csv_strings(path), path, id_column)
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


def check_disjoint(train_ids: np.ndarray, test_ids: np.ndarray, train_csv: Path, test_csv: Path):
    """A test image that is also a training image would leak its label."""
    both = np.intersect1d(train_ids, test_ids)
    if len(both):
        raise ValueError(
            f"{len(both)} image id(s) appear in both {train_csv} and {test_csv}, e.g. "
            f"{both[0]!r}; a test image must not be in train"
        )


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode an image to uint8 RGB (H, W, 3), optionally resized to ``size`` x ``size``.

    Grayscale, 4-channel and 16-bit images are converted rather than rejected.
    """
    import cv2

    path = str(path)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
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
    if size is not None and img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def validate_images(paths: list[Path], csv: Path | None = None, desc: str = "check images") -> None:
    """Decode every image once, up front, so a bad file stops the run before training.

    Raises ValueError naming the file (and its row in ``csv``) for a zero-byte, truncated
    or non-image file.
    """
    import cv2
    from tqdm import tqdm

    for r, path in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, mininterval=1)):
        ok = False
        try:
            if Path(path).stat().st_size > 0:
                ok = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None
        except OSError:
            ok = False
        if not ok:
            where = f"{csv} row {r + 2}: " if csv is not None else ""
            raise ValueError(
                f"{where}{path} is empty, truncated or not an image; replace the file or "
                "remove its row"
            )


def atomic_path(path: str | Path) -> Path:
    """A temp name beside ``path`` (same directory, so ``os.replace`` is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``out``; when the block succeeds it replaces
    ``out`` whole (the old folder is renamed aside, then removed). On any error the temp
    folder is removed and ``out`` is left as it was: never a half-written folder."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run that had our pid
    tmp.mkdir()
    try:
        yield tmp
        if out.exists() or out.is_symlink():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)  # does not follow symlinks inside


def _write_atomic(path: str | Path, write) -> None:
    """Call ``write(tmp)`` then rename onto ``path``; on any failure (a full disk, a kill
    signal turned exception) remove the temp file, so only the old file or the new one exists."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_npz_atomic(path: str | Path, **arrays) -> None:
    """``np.savez`` to a temp file then rename; arrays must not need pickle."""

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    _write_atomic(path, write)


def write_text_atomic(path: str | Path, text: str) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, payload) -> None:
    """Indented JSON (with a final newline), written to a temp file and renamed."""
    import json

    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> None:
    _write_atomic(path, lambda tmp: df.to_csv(tmp, index=False, lineterminator="\n"))
