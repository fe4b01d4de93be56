"""A folder-per-class tree (``src/<class>/*.jpg``) -> labels.csv + images/.

Many scraped fashion sets are published this way with compound class names such as
``red_dress`` or ``blue_shirt``: each name splits on ``_`` into several labels, so the
multi-label structure (colour x garment) the folder names hide becomes explicit. An image
filed under several folders (same file name, same bytes) gets the union of their labels.
The tree is closed-world: a label not implied by any of an image's folders is 0, not unknown.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.datasets.common import (
    ALL_EXTENSIONS,
    atomic_dir,
    check_label_names,
    check_separate,
    finish,
    place_images,
    same_file_content,
    summarise,
    write_labels_csv,
)

log = logging.getLogger(__name__)


def split_class_name(name: str, separator: str, folder: Path) -> list[str]:
    parts = name.split(separator)
    if any(not p.strip() or p != p.strip() for p in parts):
        raise ValueError(
            f"{folder}: folder name {name!r} splits on {separator!r} into {parts}, which has "
            "an empty or space-padded part; rename the folder (e.g. 'red_dress')"
        )
    return parts


def convert_folder_per_class(
    src: str | Path, out_dir: str | Path, *, separator: str = "_", overwrite: bool = False
) -> dict[str, Any]:
    """Convert ``src/<class_name>/<image>`` into ``out_dir/labels.csv`` + ``out_dir/images/``.

    Args:
        src: the tree's root; every visible sub-folder is a class.
        out_dir: the train folder to write (replaced atomically).
        separator: splits a class folder name into labels (``red_dress`` -> red, dress).
        overwrite: replace an existing ``out_dir`` this tool did not write.

    Returns:
        The summary also written to ``out_dir/IMPORT.json``.
    """
    src, out_dir = Path(src), Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder; --src must be the tree's root")
    check_separate(src, out_dir)
    if not separator:
        raise ValueError("separator must be a non-empty string")
    classes = sorted(d for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{src} has no class folders; expected {src}/<class_name>/<image>.jpg")
    stray = [f.name for f in src.iterdir() if f.is_file() and not f.name.startswith(".")]
    if stray:
        log.warning(
            "%s: %d file(s) outside any class folder ignored, e.g. %s", src, len(stray), stray[0]
        )

    file_of: dict[str, Path] = {}
    labels_of: dict[str, set[str]] = {}
    n_folders: dict[str, int] = {}
    all_labels: set[str] = set()
    for folder in classes:
        parts = split_class_name(folder.name, separator, folder)
        all_labels.update(parts)
        entries = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
        images = [f for f in entries if f.is_file() and f.suffix in ALL_EXTENSIONS]
        if len(images) < len(entries):
            other = next(f for f in entries if f not in images)
            log.warning(
                "%s: %d non-image entr(y/ies) ignored (nested folders are not classes), e.g. %s",
                folder,
                len(entries) - len(images),
                other.name,
            )
        if not images:
            log.warning("%s: no images; its labels %s get no positives from it", folder, parts)
        for f in images:
            first = file_of.setdefault(f.name, f)
            if first != f and not same_file_content(first, f):
                raise ValueError(
                    f"{f} and {first} share the file name {f.name!r} but differ; an image in "
                    "several class folders must be the same file: rename one of them"
                )
            labels_of.setdefault(f.name, set()).update(parts)
            n_folders[f.name] = n_folders.get(f.name, 0) + 1
    if not file_of:
        raise ValueError(f"{src}: no images in any class folder ({', '.join(ALL_EXTENSIONS[:7])})")

    labels = sorted(all_labels)
    check_label_names(labels, f"{src} (class folder names)")
    ids = sorted(file_of)
    col = {n: j for j, n in enumerate(labels)}
    y = np.zeros((len(ids), len(labels)), dtype=np.float32)
    for i, name in enumerate(ids):
        y[i, [col[n] for n in labels_of[name]]] = 1
    multi = sum(c > 1 for c in n_folders.values())

    with atomic_dir(out_dir, "IMPORT.json", overwrite) as tmp:
        placed = place_images([(file_of[n], n) for n in ids], tmp / "images")
        write_labels_csv(tmp / "labels.csv", ids, labels, y)
        summary = summarise(
            "folder_per_class",
            src,
            out_dir,
            ids,
            labels,
            y,
            placed,
            class_folders=len(classes),
            images_in_several_folders=multi,
        )
        finish(tmp, summary)
    return summary
