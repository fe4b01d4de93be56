"""A Kaggle-style CSV (an id column + one space-separated label column) -> our contract.

Competitions such as Planet (``image_name,tags``) or iMaterialist's Kaggle mirrors publish
multi-label targets as one string per image; the pipeline wants one 0/1 column per label.
Every label seen anywhere becomes a column (sorted); an empty label cell means the image
has no label (0 everywhere), as in those competitions' submissions, not unknown.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.contract import read_csv_strings
from pipeline.data.datasets.common import (
    atomic_dir,
    check_label_names,
    check_separate,
    find_image,
    finish,
    normalise_extension,
    output_id,
    place_images,
    summarise,
    write_labels_csv,
)

log = logging.getLogger(__name__)


def convert_kaggle_csv(
    src: str | Path,
    out_dir: str | Path,
    *,
    id_column: str = "image_id",
    labels_column: str = "labels",
    image_dir: str | Path | None = None,
    extension: str | None = None,
    separator: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert a CSV of ``<id>,<label label ...>`` rows into ``out_dir``.

    Args:
        src: the CSV file.
        out_dir: the train folder to write (replaced atomically).
        id_column: the image-id column.
        labels_column: the column of separated labels.
        image_dir: where the images are; default ``images/`` beside the CSV.
        extension: appended to every id (``.jpg``) when ids carry none; without it an id
            resolves to ``<id>`` or ``<id>.<image ext>``.
        separator: between labels in a cell; default any whitespace.
        overwrite: replace an existing ``out_dir`` this tool did not write.
    """
    src, out_dir = Path(src), Path(out_dir)
    df = read_csv_strings(src, missing_hint="--src must be the CSV file")
    image_dir = Path(image_dir) if image_dir is not None else src.parent / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist; pass --image-dir")
    check_separate(src, out_dir)
    check_separate(image_dir, out_dir)
    for col, opt in ((id_column, "--id-column"), (labels_column, "--labels-column")):
        if col not in df.columns:
            raise ValueError(
                f"{src}: no {col!r} column in the header {list(df.columns)}; pass {opt}"
            )
    if len(df) == 0:
        raise ValueError(f"{src} has a header but no rows")
    extension = normalise_extension(extension)
    present = set(os.listdir(image_dir))

    ids: list[str] = []
    files: list[tuple[Path, str]] = []
    tags: list[list[str]] = []
    first_row: dict[str, int] = {}
    for r, (raw_id, cell) in enumerate(zip(df[id_column], df[labels_column], strict=True)):
        row = r + 2  # spreadsheet row, header = 1
        image_id = raw_id.strip()
        if not image_id:
            raise ValueError(f"{src} row {row}: empty {id_column!r}; every row needs an id")
        if image_id in first_row:
            raise ValueError(
                f"{src} row {row}: duplicate id {image_id!r} (first at row {first_row[image_id]}); "
                "merge the rows' labels into one row"
            )
        first_row[image_id] = row
        name = find_image(image_dir, image_id, extension, present)
        if name is None:
            want = image_id + extension if extension else f"{image_id}[.jpg|.png|...]"
            raise FileNotFoundError(
                f"{src} row {row}: image {want} not found in {image_dir}; add the file, fix "
                "--image-dir/--extension, or remove the row"
            )
        parts = cell.split(separator) if separator else cell.split()
        tags.append([p.strip() for p in parts if p.strip()])
        ids.append(output_id(image_id, name))
        files.append((image_dir / name, name))

    labels = sorted({t for row_tags in tags for t in row_tags})
    if not labels:
        raise ValueError(f"{src}: column {labels_column!r} holds no label in any row")
    check_label_names(labels, f"{src} column {labels_column!r}")
    col = {n: j for j, n in enumerate(labels)}
    y = np.zeros((len(ids), len(labels)), dtype=np.float32)
    for i, row_tags in enumerate(tags):
        y[i, [col[t] for t in row_tags]] = 1
    empty = sum(not t for t in tags)
    if empty:
        log.warning("%s: %d row(s) with no label (all 0)", src, empty)

    with atomic_dir(out_dir, "IMPORT.json", overwrite) as tmp:
        placed = place_images(files, tmp / "images")
        write_labels_csv(tmp / "labels.csv", ids, labels, y)
        summary = summarise(
            "kaggle_csv", src, out_dir, ids, labels, y, placed, rows_without_labels=empty
        )
        finish(tmp, summary)
    return summary
