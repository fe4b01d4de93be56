"""Reading and validating the data contract: labels.csv, test.csv, test truth, ids -> files.

Every error names the file, the row (1-based, as a spreadsheet shows it, header = row 1)
and what to do about it. Labels are read from the header, never hard-coded; an empty
cell means "unknown" and becomes NaN. Found, not trusted: an id resolves to a file inside
its ``images/`` folder (never a path), and files are compared by resolved path and content
hash (two ids for one file, a test image that is a train image under another name).
Decoding lives in :mod:`pipeline.runtime.images`; the up-front decode of every image that
``make folds`` runs, and the near-duplicate search, in :mod:`pipeline.data.duplicates`.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import logging
import os
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.schema import SAMPLE_SUBMISSION_NAME
from pipeline.runtime.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS"]  # the decoder's list, re-exported for the data adapters

#: Column names the pipeline writes beside the labels (the augmentation's ``labels.csv``
#: starts ``image,source,fold``; the folds file is ``image,fold``): a label may not use one.
RESERVED_COLUMNS = ("image", "source", "fold")


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

    @property
    def test_list(self) -> Path | None:
        """The file that lists the test images (``test.csv``), None when they are every
        image in ``test_dir``: messages cite the folder then, never a missing file."""
        return self.test_csv if self.test_csv.is_file() else None


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
    _check_separator(path, raw)
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


#: Separators a spreadsheet may save a "CSV" with (Excel in many locales writes ``;``).
_OTHER_SEPARATORS = {";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}


def _check_separator(path: Path, header: list[str]) -> None:
    """A header read as one column that holds another separator: the file is not
    comma-separated, which would otherwise surface as a missing ``image`` column."""
    if len(header) != 1:
        return
    for sep, name in _OTHER_SEPARATORS.items():
        if sep in header[0]:
            raise ValueError(
                f"{path} header: {header[0]!r} looks {name}-separated; save the file "
                "comma-separated (in a spreadsheet: Save As > CSV, comma delimited)"
            )


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


class _Folder:
    """The file names of an images folder, indexed the ways an id may name one: as is,
    without its image extension (any case; where ``x.png`` and ``x.jpg`` both exist, the
    earlier in IMAGE_EXTENSIONS wins) and by Unicode NFC form (built on first need)."""

    def __init__(self, present: set[str]):
        self.present = present
        rank = {e: k for k, e in enumerate(IMAGE_EXTENSIONS)}
        best: dict[str, tuple[int, str]] = {}
        for f in present:
            stem, dot, ext = f.rpartition(".")
            k = rank.get("." + ext.lower()) if dot else None
            if k is not None and (stem not in best or k < best[stem][0]):
                best[stem] = (k, f)
        self.stems = {stem: f for stem, (_, f) in best.items()}
        self._nfc: dict[str, set[str]] | None = None

    def normalised(self, i: str) -> str | None:
        """The one file whose name (or name without extension) equals the id only after
        NFC normalisation (``café`` typed with one code point for é, stored with two by
        macOS), or None (none, or more than one)."""
        if self._nfc is None:
            self._nfc = {}
            for name, f in [*((f, f) for f in self.present), *self.stems.items()]:
                self._nfc.setdefault(_nfc(name), set()).add(f)
        found = self._nfc.get(_nfc(i), set())
        return next(iter(found)) if len(found) == 1 else None


def _find_file(i: str, folder: _Folder) -> str | None:
    """The file name in the folder an id names: itself, or with an image extension."""
    if i in folder.present:
        return i
    return folder.stems.get(i)


def _resolves(i: str, folder: _Folder) -> bool:
    return _find_file(i, folder) is not None


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
    folder = _Folder(present)
    ids, stripped, normalised = [], [], []
    for r, i in enumerate(raw):
        s = i.strip()
        if not s:
            raise ValueError(f"{path} row {r + 2}: empty {id_column!r}; every row needs an id")
        if s != i and not _resolves(i, folder) and (_resolves(s, folder) or not present):
            stripped.append((i, s))
            i = s
        if "/" in i or "\\" in i or i in (".", "..") or "\x00" in i:
            raise ValueError(
                f"{path} row {r + 2}: image id {i!r} is a path; an id is a file name inside "
                f"{image_dir} (no '/', '\\', '..' or absolute paths): put the file there "
                "and list its name"
            )
        if present and _find_file(i, folder) is None:
            other = folder.normalised(i)
            if other is not None:
                normalised.append((i, other))
        ids.append(i)
    if normalised:
        log.warning(
            "%s: %d image id(s) match a file only after Unicode normalisation (the same "
            "letters, encoded differently, e.g. by macOS) and are matched to it, e.g. %r -> "
            "file %r; the ids stay as written",
            path,
            len(normalised),
            *normalised[0],
        )
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


def image_paths(ids, image_dir: Path) -> list[Path]:
    """Each id's file: ``images/<id>`` itself, or ``images/<id>.<ext>`` for ids given without
    an extension (as many published data sets list them, e.g. ``000001`` -> ``000001.jpg``;
    any :data:`IMAGE_EXTENSIONS`, any case), or the one file whose name equals the id after
    Unicode normalisation (:func:`_check_ids` warns about those)."""
    image_dir = Path(image_dir)
    present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
    folder = _Folder(present)
    out = []
    for i in ids:
        i = str(i)
        name = _find_file(i, folder)
        if name is None:
            name = folder.normalised(i) or i
        out.append(image_dir / name)
    return out


def _not_a_readable_file(p: Path) -> str | None:
    """Why ``p`` cannot be read as an image file (a directory, a symlink loop or to
    nothing, a pipe, no read permission), or None when it can (or is simply missing)."""
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop (it points back at itself)"
        if os.path.islink(p):
            return f"is a symlink to {os.readlink(p)!r}, which does not exist"
        return None  # missing: the caller says "not found"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not an image file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a pipe, socket or device)"
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc}): make it readable (chmod a+r) or"
    return None


def _near_names(i: str, present: set[str]) -> str:
    """A hint naming files that differ from the id only in letter case."""
    want = i.lower()
    close = sorted(f for f in present if f.lower() == want or f.lower().startswith(want + "."))
    if not close:
        return ""
    return f" (ids are case-sensitive: {close[0]!r} differs only in letter case)"


def _check_images_exist(ids: np.ndarray, image_dir: Path, csv_path: Path | None) -> list[Path]:
    """Every id names a readable file; no two ids name the same file (``x`` and ``x.png``,
    or a symlink to another row's image), compared by resolved path. ``csv_path`` None:
    the ids are the folder's own listing (no test.csv), so messages name the file."""
    if not image_dir.is_dir():
        owner = csv_path if csv_path is not None else "the test set"
        raise FileNotFoundError(f"{image_dir} does not exist; put the images for {owner} there")
    paths = image_paths(ids, image_dir)
    present = set(os.listdir(image_dir))
    first: dict[str, int] = {}
    for r, (i, p) in enumerate(zip(ids, paths, strict=True)):
        where = f"{csv_path} row {r + 2}: image {str(i)!r}" if csv_path else f"{p}"
        why = _not_a_readable_file(p)
        if why is not None:
            fix = "replace it or remove the row" if csv_path else "replace it or move it out"
            sep = " " if why.endswith(" or") else "; "
            file = f" ({p})" if csv_path else ""
            raise ValueError(f"{where}{file} {why}{sep}{fix}")
        if not p.is_file():
            spaces = f" (nor {i.strip()!r})" if i != i.strip() else ""
            raise FileNotFoundError(
                f"{where} not found in {image_dir}{spaces}{_near_names(i, present)}; "
                "add the file or remove the row"
            )
        real = os.path.realpath(p)
        if real in first:
            k = first[real]
            other = f"row {k + 2} ({str(ids[k])!r})" if csv_path else str(paths[k])
            raise ValueError(
                f"{where} is the same file as {other}: {real}; list each image once "
                "(remove one of them)"
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
    """Test image ids from ``test_dir/test.csv``; else, in a competition folder that ships
    only the images and the sample submission, that file's ids in its order; else every
    image file in ``test_dir/images``."""
    test_dir = Path(test_dir)
    path = test_dir / "test.csv"
    image_dir = test_dir / "images"
    sample = test_dir / SAMPLE_SUBMISSION_NAME
    if path.exists():
        ids = _check_ids(read_csv_strings(path), path, id_column, image_dir)
    elif sample.is_file():
        path = sample
        df, sample_id = read_sample_submission(sample, id_column)
        ids = _check_ids(df, sample, sample_id, image_dir)
    else:
        if not image_dir.is_dir():
            raise FileNotFoundError(
                f"{test_dir}: neither test.csv nor images/ exists; add one of them"
            )
        ids = np.array(
            sorted(f for f in os.listdir(image_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
        )
        if len(ids) == 0:
            raise ValueError(
                f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}, any case) and "
                f"{path} does not exist; add the images or a test.csv listing them"
            )
    if check_images:
        _check_images_exist(ids, image_dir, path if path.exists() else None)
    return ids, image_dir


def read_sample_submission(path: str | Path, id_column: str = "image") -> tuple[pd.DataFrame, str]:
    """A competition's sample submission, every cell a string as written (ids like ``001``
    keep their zeros), and the name of its id column: ``id_column`` when the header has it,
    else the first column (Kaggle names it per competition: ``image_name``, ``Id``, ...).

    Only the file's shape is checked here (rows, non-empty and distinct ids); what its
    other columns mean is :func:`pipeline.ensemble.submit.sample_format`'s business."""
    path = Path(path)
    df = read_csv_strings(
        path, "set submit.sample_submission to the competition's sample submission, or to ''"
    )
    id_col = id_column if id_column in df.columns else str(df.columns[0])
    ids = df[id_col].str.strip()
    if len(ids) == 0:
        raise ValueError(f"{path} has a header but no rows; it must list every test image")
    empty = (ids == "").to_numpy()
    if empty.any():
        r = int(np.flatnonzero(empty)[0])
        raise ValueError(f"{path} row {r + 2}: empty id in column {id_col!r}; every row needs one")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iloc[r]).to_numpy())[0])
        raise ValueError(
            f"{path} row {r + 2}: duplicate id {ids.iloc[r]!r} (first at row {first + 2}); "
            "list each test image once"
        )
    return df, id_col


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
        _check_disjoint_ids(table.ids, test_ids, ds.train_csv, ds.test_list or image_dir)
    return ds


def _check_disjoint_ids(train_ids, test_ids, train_csv: Path, test_list: Path) -> None:
    """``test_list``: test.csv, or the test images folder when there is none."""
    both = np.intersect1d(train_ids, test_ids)
    if len(both):
        raise ValueError(
            f"{len(both)} image id(s) appear in both {train_csv} and {test_list}, e.g. "
            f"{str(both[0])!r}; a test image must not be in train: remove it from one of them"
        )


def check_disjoint(ds: DataSet) -> None:
    """A test image that is also a training image would leak its label: the same id, the
    same file (a symlink, ``x`` vs ``x.png``) or the same bytes (a copy) is an error."""
    _check_disjoint_ids(ds.train.ids, ds.test_ids, ds.train_csv, ds.test_list or ds.test_dir)
    train_paths, test_paths = ds.train.paths(), ds.test_paths()

    def test_image(r: int, name: str) -> str:
        """How a message names test image ``r``: its test.csv row, or its file."""
        if ds.test_list is None:
            return f"test image {test_paths[r]}"
        return f"{ds.test_list} row {r + 2}: test image {name}"

    real = {os.path.realpath(p): r for r, p in enumerate(train_paths)}
    for r, p in enumerate(test_paths):
        k = real.get(os.path.realpath(p))
        if k is not None:
            raise ValueError(
                f"{test_image(r, repr(str(ds.test_ids[r])))} is the same file as "
                f"train image {str(ds.train.ids[k])!r} ({ds.train_csv} row {k + 2}): "
                f"{os.path.realpath(p)}; a test image must not be in train: remove one of them"
            )
    digests = {d: r for r, d in enumerate(file_digests(train_paths))}
    for r, d in enumerate(file_digests(test_paths)):
        k = digests.get(d)
        if k is not None:
            raise ValueError(
                f"{test_image(r, str(test_paths[r]))} has the same bytes as train "
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
