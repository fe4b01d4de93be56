"""The Clothing Attribute Dataset's original release (Chen, Gallagher, Girod, ECCV 2012).

Layout: ``images/000001.jpg ... 001856.jpg`` and ``ground_truth/<attribute>_GT.mat``, one
MATLAB file per attribute holding ``GT``, a column vector with one entry per image (row i
= image ``%06d % (i+1)``). An entry is NaN where the six annotators did not agree: that is
*unknown*, and becomes an empty cell (masked out of losses and metrics), never a 0.

Value meanings (the dataset's README; the converted copy in
``../shared/data/clothing-attributes`` agrees, e.g. necktie 11% and female 55% positive):

* 23 binary attributes: 1 = no, 2 = yes (``positive_value``). ``gender`` 2 = female ->
  column ``female``; ``skin_exposure`` 2 = high -> ``skin_exposure_high``.
* ``sleevelength``: 1 no sleeve, 2 short, 3 long -> ``sleeve_none/short/long``.
* ``neckline``: 1 V-shape, 2 round, 3 other -> ``neckline_v/round/other``.
* ``category``: 1 shirt, 2 sweater, 3 t-shirt, 4 outerwear, 5 suit, 6 tank top, 7 dress.

Each multi-class attribute becomes a one-hot group; a NaN class empties the whole group.
Columns follow the order of the shared converted copy; an extra ``*_GT.mat`` with values
in {1, 2} becomes one more binary column named after its attribute.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.datasets.common import (
    atomic_dir,
    check_label_names,
    check_separate,
    finish,
    place_images,
    summarise,
    write_labels_csv,
)

log = logging.getLogger(__name__)

#: binary attribute file stem -> column name (order = the shared converted labels.csv)
BINARY: dict[str, str] = {
    "necktie": "necktie",
    "collar": "collar",
    "gender": "female",
    "placket": "placket",
    "skin_exposure": "skin_exposure_high",
    "scarf": "scarf",
    "pattern_solid": "pattern_solid",
    "pattern_floral": "pattern_floral",
    "pattern_spot": "pattern_spot",
    "pattern_graphics": "pattern_graphics",
    "pattern_plaid": "pattern_plaid",
    "pattern_stripe": "pattern_stripe",
    "red": "red",
    "yellow": "yellow",
    "green": "green",
    "cyan": "cyan",
    "blue": "blue",
    "purple": "purple",
    "brown": "brown",
    "white": "white",
    "gray": "gray",
    "black": "black",
    "many_colors": "many_colors",
}
#: multi-class attribute file stem -> column per class value 1..K
MULTICLASS: dict[str, tuple[str, ...]] = {
    "sleevelength": ("sleeve_none", "sleeve_short", "sleeve_long"),
    "neckline": ("neckline_v", "neckline_round", "neckline_other"),
    "category": ("shirt", "sweater", "tshirt", "outerwear", "suit", "tank_top", "dress"),
}


def load_gt(path: Path) -> np.ndarray:
    """``GT`` from one ``.mat`` file as a float vector (NaN = unknown)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{path}: MATLAB v7.3 file; re-save it with save(..., '-v7')") from exc
    except (ValueError, OSError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable .mat file: {exc}") from exc
    if "GT" not in mat:
        names = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path}: no variable 'GT' (found {names}); is this a *_GT.mat file?")
    gt = np.asarray(mat["GT"], dtype=np.float64)
    if gt.ndim != 2 or min(gt.shape) != 1:
        raise ValueError(f"{path}: GT has shape {gt.shape}; expected a vector (n, 1)")
    return gt.ravel()


def _check_values(gt: np.ndarray, allowed: range, path: Path) -> None:
    bad = ~np.isnan(gt) & ~np.isin(gt, list(allowed))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path} row {r + 1} (image {r + 1:06d}): value {gt[r]:g} is not one of "
            f"{list(allowed)} or NaN (unknown); fix the file"
        )


def convert_clothing_attribute_mat(
    src: str | Path,
    out_dir: str | Path,
    *,
    image_dir: str | Path | None = None,
    gt_dir: str | Path | None = None,
    positive_value: int = 2,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert the release folder ``src`` (``ground_truth/`` + ``images/``) into ``out_dir``.

    Args:
        src: the dataset's root folder.
        out_dir: the train folder to write (replaced atomically).
        image_dir: default ``src/images``.
        gt_dir: default ``src/ground_truth``.
        positive_value: the binary value meaning "yes" (the other of 1/2 means "no").
        overwrite: replace an existing ``out_dir`` this tool did not write.
    """
    src, out_dir = Path(src), Path(out_dir)
    image_dir = Path(image_dir) if image_dir is not None else src / "images"
    gt_dir = Path(gt_dir) if gt_dir is not None else src / "ground_truth"
    for d in (src, image_dir, gt_dir):
        check_separate(d, out_dir)
    if positive_value not in (1, 2):
        raise ValueError(f"positive_value must be 1 or 2, got {positive_value}")
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir} does not exist; expected <attribute>_GT.mat files there")
    files = {p.name[: -len("_GT.mat")]: p for p in sorted(gt_dir.glob("*_GT.mat"))}
    if not files:
        raise FileNotFoundError(f"{gt_dir} holds no *_GT.mat file")
    known = [*BINARY, *MULTICLASS]
    absent = [a for a in known if a not in files]
    if absent:
        log.warning(
            "%s: %d attribute file(s) absent, e.g. %s_GT.mat", gt_dir, len(absent), absent[0]
        )
    extra = sorted(a for a in files if a not in known)

    columns: list[str] = []
    blocks: list[np.ndarray] = []
    n: int | None = None
    first: Path | None = None
    for attr in [a for a in known if a in files] + extra:
        path = files[attr]
        gt = load_gt(path)
        if n is None:
            n, first = len(gt), path
        elif len(gt) != n:
            raise ValueError(f"{path}: {len(gt)} rows but {first} has {n}; all must match")
        if attr in MULTICLASS:
            names = MULTICLASS[attr]
            _check_values(gt, range(1, len(names) + 1), path)
            block = np.full((n, len(names)), np.nan, dtype=np.float32)
            known_rows = ~np.isnan(gt)
            block[known_rows] = 0
            block[np.flatnonzero(known_rows), gt[known_rows].astype(int) - 1] = 1
        else:
            _check_values(gt, range(1, 3), path)
            if attr not in BINARY:
                log.info("%s: not a documented attribute; kept as binary column %r", path, attr)
            names = (BINARY.get(attr, attr),)
            block = np.where(np.isnan(gt), np.nan, gt == positive_value)[:, None]
        columns.extend(names)
        blocks.append(block.astype(np.float32))
    assert n is not None
    check_label_names(columns, str(gt_dir))
    y = np.concatenate(blocks, axis=1)

    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} does not exist; expected 000001.jpg ... there")
    present = set(os.listdir(image_dir))
    ids = [f"{i + 1:06d}" for i in range(n)]
    for i in ids:
        if i + ".jpg" not in present:
            raise FileNotFoundError(
                f"{image_dir / (i + '.jpg')} not found: the GT files have {n} rows, so images "
                f"000001.jpg..{n:06d}.jpg must all exist; restore the file"
            )
    if len(present) > n:
        log.warning(
            "%s: %d files beyond the %d the GT files describe; ignored",
            image_dir,
            len(present) - n,
            n,
        )

    with atomic_dir(out_dir, "IMPORT.json", overwrite) as tmp:
        placed = place_images([(image_dir / (i + ".jpg"), i + ".jpg") for i in ids], tmp / "images")
        write_labels_csv(tmp / "labels.csv", ids, columns, y)
        summary = summarise(
            "clothing_attribute_mat",
            src,
            out_dir,
            ids,
            columns,
            y,
            placed,
            attribute_files=len(files),
            absent_attributes=absent,
            positive_value=positive_value,
        )
        finish(tmp, summary)
    return summary
