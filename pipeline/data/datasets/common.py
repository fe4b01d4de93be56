"""Helpers the format adapters share: atomic output folders, image placement, label CSVs.

An adapter builds its whole output in ``<out>.tmp-<pid>`` and renames it onto ``<out>`` at
the end, so a failed or killed conversion leaves either the previous result or nothing,
never a folder that half passes :func:`pipeline.data.contract.read_labels`.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts import atomic_dir as replace_dir_atomically
from pipeline.data.contract import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

IMPORT_MARKER = "IMPORT.json"
ALL_EXTENSIONS = IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS)


def check_separate(src: Path, out_dir: Path) -> None:
    """Refuse an output inside the source or around it: replacing ``out_dir`` must never
    touch ``src`` (adapters never modify their source)."""
    s, o = Path(src).resolve(), Path(out_dir).resolve()
    if o == s or s in o.parents or o in s.parents:
        raise ValueError(
            f"output {out_dir} and source {src} overlap; choose an --out outside the source "
            "(and not one of its parents)"
        )


def _check_replaceable(out_dir: Path, marker: str, overwrite: bool) -> None:
    """An existing ``out_dir`` is replaced only when it is empty, was made by us (holds
    ``marker``) or ``overwrite`` is set, so a typo in --out cannot wipe unrelated work."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder; remove it or choose another --out")
    if overwrite or (out_dir / marker).is_file() or not any(out_dir.iterdir()):
        return
    raise ValueError(
        f"{out_dir} exists and was not written by this tool (no {marker}); remove it, choose "
        "another --out, or pass --overwrite"
    )


@contextmanager
def atomic_dir(out_dir: str | Path, marker: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``out_dir``; on success it replaces ``out_dir``.

    On any exception the temp folder is removed and ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir, marker, overwrite)
    with replace_dir_atomically(out_dir) as tmp:
        yield tmp


def place_image(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` to ``dst`` (no bytes copied), or copy it across file systems.

    Returns True when linked. A hard link shares the file: the pipeline only reads images,
    so the source is never modified through it.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


def place_images(files: Sequence[tuple[Path, str]], images_dir: Path) -> dict[str, int]:
    """Place every ``(source file, name under images/)``; count links and copies."""
    linked = 0
    for src, name in files:
        linked += place_image(src, images_dir / name)
    return {"linked": linked, "copied": len(files) - linked}


def same_file_content(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def check_label_names(names: Sequence[str], where: str, id_column: str = "image") -> None:
    """Label names become CSV header cells: non-empty, unique, not the id column."""
    seen: set[str] = set()
    for n in names:
        if not n or n != n.strip():
            raise ValueError(f"{where}: label name {n!r} is empty or has spaces around it")
        if n == id_column:
            raise ValueError(f"{where}: a label is named {id_column!r}, the id column; rename it")
        if n in seen:
            raise ValueError(f"{where}: two labels are named {n!r}; label names must be unique")
        seen.add(n)


def find_image(
    image_dir: Path, image_id: str, extension: str | None, present: set[str]
) -> str | None:
    """The file (relative to ``image_dir``) for ``image_id``: ``<id><extension>`` when an
    extension is given, else ``<id>`` itself or ``<id>.<image ext>``; None when absent.

    ``present`` is ``os.listdir(image_dir)``, so plain names cost no extra stat call.
    """
    if extension:
        candidates = [image_id + extension]
    else:
        candidates = [image_id] + [image_id + e for e in ALL_EXTENSIONS]
    for c in candidates:
        if c in present if "/" not in c else (image_dir / c).is_file():
            return c
    return None


def output_id(image_id: str, file_name: str) -> str:
    """Keep the source id when :func:`pipeline.data.contract.image_paths` resolves it to
    ``file_name`` (so submissions use the ids the source uses); else use the file name."""
    if file_name == image_id:
        return image_id
    if "/" not in image_id and file_name[len(image_id) :] in ALL_EXTENSIONS:
        return image_id
    return file_name


def normalise_extension(extension: str | None) -> str | None:
    if extension is None or extension == "":
        return None
    return extension if extension.startswith(".") else "." + extension


def write_labels_csv(path: Path, ids: Sequence[str], labels: Sequence[str], y: np.ndarray) -> None:
    """``image`` + one column per label; cells ``0``/``1``, NaN -> empty (unknown)."""
    y = np.asarray(y, dtype=np.float64)
    cells = np.where(np.isnan(y), "", np.nan_to_num(y).astype(np.int64).astype(str))
    df = pd.DataFrame(cells, columns=list(labels))
    df.insert(0, "image", list(ids))
    df.to_csv(path, index=False, lineterminator="\n")


def summarise(
    fmt: str,
    src: Path,
    out_dir: Path,
    ids: Sequence[str],
    labels: Sequence[str],
    y: np.ndarray,
    placed: dict[str, int],
    **extra: Any,
) -> dict[str, Any]:
    """What the conversion made, written as ``IMPORT.json`` (provenance + replace marker)."""
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    return {
        "format": fmt,
        "source": str(Path(src).resolve()),
        "out": str(out_dir),
        "images": len(ids),
        "labels": list(labels),
        "positives": {n: int(np.nansum(y[:, j])) for j, n in enumerate(labels)},
        "unknown_cells": int((~known).sum()),
        **placed,
        **extra,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def finish(tmp: Path, summary: dict[str, Any]) -> None:
    """Write the marker last inside the temp folder, then log one line."""
    write_json(tmp / IMPORT_MARKER, summary)
    log.info(
        "%s: %d images, %d labels, %d unknown cells (%d linked, %d copied) -> %s",
        summary["format"],
        summary["images"],
        len(summary["labels"]),
        summary["unknown_cells"],
        summary["linked"],
        summary["copied"],
        summary["out"],
    )
