"""Vote bagging and the submission validator (DESIGN step 8).

For each CNN fold k the stacked test probabilities are thresholded into binary votes; the
K fold votes are combined by majority. The writer refuses a frame that does not hold
every test image exactly once, in order, with the label columns in order and 0/1 values.

A competition's sample submission (:func:`sample_format`) overrides that layout: the
submission then lists the sample's ids as written, in its row order, under its column
names, either wide (one 0/1 column per label, in the sample's column order) or as one
column of space-separated label names (Planet's ``tags``, iMaterialist's ``labels``), and
is checked against the sample before it is written (:func:`validate_against_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.contract import IMAGE_EXTENSIONS
from pipeline.runtime.ops import fold_votes, majority_vote  # noqa: F401 (re-exported)


def submission_frame(test_ids: np.ndarray, pred: np.ndarray, labels, id_column="image"):
    """Wide 0/1 frame: ``image,<label1>,...``."""
    df = pd.DataFrame(np.asarray(pred, dtype=np.int8), columns=list(labels))
    df.insert(0, id_column, np.asarray(test_ids).astype(str))
    return df


def labels_frame(test_ids: np.ndarray, pred: np.ndarray, labels) -> pd.DataFrame:
    """Kaggle style ``image_id,labels`` with space-separated label names (may be empty)."""
    names = np.asarray(list(labels))
    strings = [" ".join(names[row.astype(bool)]) for row in np.asarray(pred)]
    return pd.DataFrame({"image_id": np.asarray(test_ids).astype(str), "labels": strings})


def validate_submission(df: pd.DataFrame, test_ids, labels, id_column: str = "image") -> None:
    """Raise ValueError naming the first problem; return None if the frame is a valid submission."""
    test_ids = [str(i) for i in test_ids]
    expected_cols = [id_column, *labels]
    if list(df.columns) != expected_cols:
        raise ValueError(
            f"submission columns {list(df.columns)[:6]}... do not match the expected "
            f"{expected_cols[:6]}... (id column then the labels, in labels.csv order)"
        )
    ids = df[id_column].astype(str).tolist()
    dup = pd.Series(ids).duplicated()
    if dup.any():
        r = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"submission row {r + 2}: image {ids[r]!r} appears twice")
    missing = sorted(set(test_ids) - set(ids))
    if missing:
        raise ValueError(f"submission lacks {len(missing)} test image(s), e.g. {missing[0]!r}")
    extra = sorted(set(ids) - set(test_ids))
    if extra:
        raise ValueError(
            f"submission has {len(extra)} id(s) not in the test list, e.g. {extra[0]!r}"
        )
    if ids != test_ids:
        r = next(i for i, (a, b) in enumerate(zip(ids, test_ids, strict=True)) if a != b)
        raise ValueError(
            f"submission row {r + 2}: image {ids[r]!r} out of order (test list has {test_ids[r]!r})"
        )
    values = df[list(labels)].to_numpy()
    ok = np.isin(values, [0, 1]) & ~pd.isna(values)
    if not ok.all():
        r, c = (int(v[0]) for v in np.nonzero(~ok))
        bad = values[r, c].item() if hasattr(values[r, c], "item") else values[r, c]
        raise ValueError(
            f"submission row {r + 2}, column {labels[c]!r}: value {bad!r} is not 0 or 1"
        )


@dataclass(frozen=True)
class SampleFormat:
    """What a sample submission asks for. ``kind`` is ``"wide"`` (``columns`` = the label
    columns in the sample's order) or ``"tags"`` (``columns`` = the one column of
    space-separated label names); ``ids`` as the sample writes them, in its order."""

    path: Path
    id_column: str
    ids: tuple[str, ...]
    kind: str
    columns: tuple[str, ...]


def sample_format(sample: pd.DataFrame, path, labels, id_column: str) -> SampleFormat:
    """Detect the sample's layout against our ``labels`` (from labels.csv).

    Wide: its non-id columns are exactly our labels as a set. Its cells are ignored: they
    are placeholders (0, 1 or a probability), and we always write the 0/1 majority vote,
    the only thing a vote of thresholded folds has. Tags: exactly one other column,
    whose cells must be empty or space-separated names of our labels. A tag we do not know
    is an error rather than a placeholder, since it usually means the competition encodes
    labels differently (``1 17`` for attribute ids) and a submission in our names would
    score zero. Anything else is an error naming the sample and the fix.
    """
    path = Path(path)
    labels = [str(c) for c in labels]
    others = [str(c) for c in sample.columns if c != id_column]
    ids = tuple(str(i) for i in sample[id_column])
    if set(others) == set(labels):
        return SampleFormat(path, id_column, ids, "wide", tuple(others))
    if len(others) == 1 and others[0] not in labels:
        known = set(labels)
        for r, cell in enumerate(sample[others[0]]):
            unknown = [t for t in str(cell).split() if t not in known]
            if unknown:
                raise ValueError(
                    f"{path} row {r + 2}, column {others[0]!r}: tag {unknown[0]!r} is not a "
                    f"label of labels.csv ({', '.join(labels[:8])}{', ...' if len(labels) > 8 else ''}); "
                    "name the labels.csv columns as the competition names its tags, or empty "
                    "the sample's tag cells"
                )
        return SampleFormat(path, id_column, ids, "tags", (others[0],))
    if not others:
        raise ValueError(
            f"{path} header: only the id column {id_column!r}; a sample submission needs one "
            "column per label or one column of space-separated labels"
        )
    unknown = [c for c in others if c not in labels]
    missing = [c for c in labels if c not in others]
    what = (
        f"column {unknown[0]!r} is not a label of labels.csv"
        if unknown
        else f"lacks label column(s) {missing[:5]}"
    )
    raise ValueError(
        f"{path} header: {what}; a sample submission is either the id column plus one "
        f"column per label ({len(labels)} in labels.csv) or the id column plus one column of "
        "space-separated labels: rename the columns to labels.csv's (or the reverse)"
    )


def _stem(i: str) -> str:
    low = i.lower()
    for ext in IMAGE_EXTENSIONS:
        if low.endswith(ext):
            return i[: -len(ext)]
    return i


def match_ids(ids, test_ids, where: str | Path, test_list: str | Path) -> np.ndarray:
    """For each of ``ids`` (a sample's rows), the index of its test image in ``test_ids``.

    An id matches a test id as written or, when that is not one, without an image
    extension on either side (``000001`` is ``000001.jpg``), if exactly one test id has
    that stem. Every test image must be matched exactly once: an id that is not a test
    image, two rows for one image, or a test image with no row is an error naming the row.
    """
    test_ids = [str(t) for t in test_ids]
    exact = {t: k for k, t in enumerate(test_ids)}
    by_stem: dict[str, list[int]] = {}
    for k, t in enumerate(test_ids):
        by_stem.setdefault(_stem(t), []).append(k)
    out = np.empty(len(ids), dtype=np.int64)
    first: dict[int, int] = {}
    for r, i in enumerate(str(i) for i in ids):
        k = exact.get(i, exact.get(i.strip()))
        if k is None:
            found = by_stem.get(_stem(i.strip()), [])
            k = found[0] if len(found) == 1 else None
        if k is None:
            raise ValueError(
                f"{where} row {r + 2}: id {i!r} is not a test image (not in {test_list}); "
                "remove the row, or add the image to the test list"
            )
        if k in first:
            raise ValueError(
                f"{where} row {r + 2}: id {i!r} names the same test image {test_ids[k]!r} as "
                f"row {first[k] + 2}; list each test image once"
            )
        first[k] = r
        out[r] = k
    if len(first) < len(test_ids):
        k = next(k for k in range(len(test_ids)) if k not in first)
        row = f" (row {k + 2})" if str(test_list).endswith(".csv") else ""
        raise ValueError(
            f"{where} lacks test image {test_ids[k]!r} of {test_list}{row} "
            f"({len(test_ids) - len(first)} missing); add a row for every test image"
        )
    return out


def format_like_sample(
    fmt: SampleFormat, test_ids, pred: np.ndarray, labels, test_list: str | Path
) -> pd.DataFrame:
    """The (m, L) 0/1 ``pred`` (rows in ``test_ids`` order, columns in ``labels`` order)
    laid out as the sample: its ids as written, its row order, its column names; a tag
    cell lists an image's positive labels in labels.csv order (empty for none)."""
    labels = [str(c) for c in labels]
    pred = np.asarray(pred, dtype=np.int8)[match_ids(fmt.ids, test_ids, fmt.path, test_list)]
    if fmt.kind == "wide":
        order = [labels.index(c) for c in fmt.columns]
        df = pd.DataFrame(pred[:, order], columns=list(fmt.columns))
    else:
        names = np.asarray(labels)
        df = pd.DataFrame({fmt.columns[0]: [" ".join(names[row.astype(bool)]) for row in pred]})
    df.insert(0, fmt.id_column, list(fmt.ids))
    return df


def validate_against_sample(df: pd.DataFrame, fmt: SampleFormat, labels) -> None:
    """Raise ValueError naming the first way ``df`` differs from what the sample asks for:
    its columns, its ids and their order, or a cell (0/1 when wide; known label names,
    each once, when tags)."""
    expected = [fmt.id_column, *fmt.columns]
    if list(df.columns) != expected:
        raise ValueError(
            f"submission columns {list(df.columns)[:6]} do not match {fmt.path}'s "
            f"{expected[:6]} (names and order)"
        )
    ids = [str(i) for i in df[fmt.id_column]]
    if len(ids) != len(fmt.ids):
        raise ValueError(f"submission has {len(ids)} rows, {fmt.path} has {len(fmt.ids)}")
    for r, (a, b) in enumerate(zip(ids, fmt.ids, strict=True)):
        if a != b:
            raise ValueError(f"submission row {r + 2}: id {a!r} where {fmt.path} has {b!r}")
    if fmt.kind == "wide":
        values = df[list(fmt.columns)].to_numpy()
        ok = np.isin(values, [0, 1]) & ~pd.isna(values)
        if not ok.all():
            r, c = (int(v[0]) for v in np.nonzero(~ok))
            bad = values[r, c].item() if hasattr(values[r, c], "item") else values[r, c]
            raise ValueError(
                f"submission row {r + 2}, column {fmt.columns[c]!r}: value {bad!r} is not 0 or 1"
            )
        return
    known = {str(c) for c in labels}
    for r, cell in enumerate(df[fmt.columns[0]]):
        tags = str(cell).split()
        bad = [t for t in tags if t not in known]
        if bad or len(set(tags)) != len(tags) or not isinstance(cell, str):
            raise ValueError(
                f"submission row {r + 2}, column {fmt.columns[0]!r}: {cell!r} is not a "
                "space-separated list of distinct labels"
            )


def votes_from_submission(
    df: pd.DataFrame, test_ids, labels, id_column: str, where: str | Path
) -> np.ndarray:
    """Read a written submission back as (m, L) 0/1 in ``test_ids`` order and ``labels``
    column order, whichever layout it has (wide, or one tag column): what the report scores.
    The id column is ``id_column`` when present, else the first."""
    labels = [str(c) for c in labels]
    id_col = id_column if id_column in df.columns else str(df.columns[0])
    others = [str(c) for c in df.columns if c != id_col]
    rows = match_ids(df[id_col].tolist(), test_ids, where, "the stacked file's test ids")
    out = np.zeros((len(df), len(labels)), dtype=np.int8)
    if set(labels) <= set(others):
        out[:] = df[labels].astype(float).to_numpy().astype(np.int8)
    elif len(others) == 1:
        index = {name: j for j, name in enumerate(labels)}
        for r, cell in enumerate(df[others[0]].fillna("")):
            for tag in str(cell).split():
                if tag not in index:
                    raise ValueError(f"{where} row {r + 2}: tag {tag!r} is not a label")
                out[r, index[tag]] = 1
    else:
        raise ValueError(
            f"{where}: neither one column per label nor one tag column; re-run `make submit`"
        )
    votes = np.zeros_like(out)
    votes[rows] = out
    return votes
