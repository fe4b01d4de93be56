"""A held-out split for data sets published without a labelled test part.

The evaluation table must be measured on images the pipeline never trained on, so a
data set with only ``labels.csv`` is split once, seeded and stratified, into

* ``train/labels.csv`` + ``train/images`` -> the source's ``images/`` (symlink),
* ``test/test.csv`` (ids only, what the pipeline predicts) + ``test/images`` (symlink),
* ``test_truth.csv`` (ids + labels, empty = unknown): read only by the final evaluation,
* ``SPLIT.json``: source, fraction, seed, counts, per-label prevalence in both parts.

Images are never copied: shared data sets stay where they are (and out of the project).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.contract import read_labels
from pipeline.data.datasets.common import atomic_dir, check_separate, write_labels_csv
from pipeline.data.duplicates import copy_groups, validate_images

log = logging.getLogger(__name__)

SPLIT_MARKER = "SPLIT.json"


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows: multi-label iterative stratification so every label,
    rare ones included, keeps about its prevalence in both parts. Unknown (NaN) cells count
    as 0 for stratification only."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    y = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0).astype(np.int8)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, test = next(splitter.split(np.zeros(len(y)), y))
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    return mask


def prevalence(y: np.ndarray) -> np.ndarray:
    """Positives / known cells per label (NaN where a label has no known cell)."""
    known = (~np.isnan(y)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, np.nansum(y, axis=0) / np.maximum(known, 1), np.nan)


def split_holdout(
    src_dir: str | Path,
    out_dir: str | Path,
    fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    near: int = 4,
) -> dict[str, Any]:
    """Split ``src_dir`` (a train folder) into ``out_dir/{train,test}`` + ``test_truth.csv``.

    Deterministic for a seed; rows keep the source's order in both parts. The whole
    ``out_dir`` is built beside it and renamed into place, so it is complete or absent.

    Args:
        src_dir: folder with ``labels.csv`` + ``images/`` (validated by ``read_labels``).
        out_dir: folder to write; replaced when it holds a previous ``SPLIT.json``.
        fraction: share of rows held out, in (0, 1).
        seed: seeds the stratified shuffle.
        overwrite: replace an existing ``out_dir`` this tool did not write.
        near: pHash distance of near copies kept on one side (-1: exact copies only), as
            ``[folds] near_duplicates``.

    Returns:
        The dict written to ``SPLIT.json``.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    check_separate(src_dir, out_dir)
    table = read_labels(src_dir)
    n = len(table.ids)
    n_test = int(np.ceil(fraction * n))
    if n_test < 1 or n - n_test < 1:
        raise ValueError(
            f"{src_dir / 'labels.csv'}: {n} row(s) cannot be split {fraction:g} held out"
        )
    held = stratified_holdout(table.y, fraction, seed)
    # copies of one photo (same bytes, or a near copy) stay on one side: a held-out row
    # whose copy trains would score a memorised image, so it joins the training part
    paths = table.paths()
    _, groups = copy_groups(paths, validate_images(paths, src_dir / "labels.csv"), near)
    trained = np.unique(groups[~held])
    moved = held & np.isin(groups, trained)
    held &= ~moved
    if moved.any():
        log.info(
            "%s: %d held-out row(s) copy a training image; moved to train", src_dir, moved.sum()
        )
    y_train, y_test = table.y[~held], table.y[held]
    p_train, p_test = prevalence(y_train), prevalence(y_test)
    diff = np.abs(p_train - p_test)
    images = table.image_dir.resolve()
    source_csv = src_dir / "labels.csv"
    info: dict[str, Any] = {
        "source": str(src_dir.resolve()),
        "source_labels_sha256": hashlib.sha256(source_csv.read_bytes()).hexdigest(),
        "images": str(images),
        "fraction": fraction,
        "seed": seed,
        "method": "iterstrat MultilabelStratifiedShuffleSplit (unknown cells as 0); "
        "held-out copies of a training image (same bytes or pHash near copy) moved to train",
        "near_duplicates": near,
        "counts": {
            "total": n,
            "train": int((~held).sum()),
            "test": int(held.sum()),
            "copies_moved_to_train": int(moved.sum()),
        },
        "prevalence": {
            name: {
                "train": _r(p_train[j]),
                "test": _r(p_test[j]),
                "unknown_train": int(np.isnan(y_train[:, j]).sum()),
                "unknown_test": int(np.isnan(y_test[:, j]).sum()),
            }
            for j, name in enumerate(table.labels)
        },
        "max_prevalence_diff": _r(np.nanmax(diff)),
        "mean_prevalence_diff": _r(np.nanmean(diff)),
    }
    with atomic_dir(out_dir, SPLIT_MARKER, overwrite) as tmp:
        for part in ("train", "test"):
            (tmp / part).mkdir()
            os.symlink(images, tmp / part / "images", target_is_directory=True)
        write_labels_csv(tmp / "train" / "labels.csv", table.ids[~held], table.labels, y_train)
        pd.DataFrame({"image": table.ids[held]}).to_csv(
            tmp / "test" / "test.csv", index=False, lineterminator="\n"
        )
        write_labels_csv(tmp / "test_truth.csv", table.ids[held], table.labels, y_test)
        (tmp / SPLIT_MARKER).write_text(json.dumps(info, indent=2) + "\n")
    log.info(
        "%s: %d rows -> %d train, %d held out (seed %d); prevalence differs by <= %.3f -> %s",
        src_dir,
        n,
        info["counts"]["train"],
        info["counts"]["test"],
        seed,
        info["max_prevalence_diff"],
        out_dir,
    )
    return info


def _r(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)
