"""iMaterialist-style JSON (``images`` with URLs + ``annotations`` with ``labelId`` lists).

The iMaterialist Fashion challenge ships ``{"images": [{"imageId", "url"}],
"annotations": [{"imageId", "labelId": [...]}]}`` and expects users to download the
images themselves. This machine has no internet, so the converter only *records* the URLs
(``urls.csv``) and reads local files ``<image_dir>/<imageId>.jpg``; a missing file is an
error that names the id, the URL and the fix. Label columns are the label ids (what the
challenge's submissions use), or names from an optional ``{id: name}`` JSON.
An image listed without an annotation entry gets empty (unknown) cells, not zeros.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.datasets.common import (
    atomic_dir,
    check_label_names,
    check_separate,
    finish,
    normalise_extension,
    output_id,
    place_images,
    summarise,
    write_labels_csv,
)

log = logging.getLogger(__name__)


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _key(label_id: str) -> tuple[int, int | str]:
    """Numeric ids sort as numbers (2 before 10), others after, alphabetically."""
    return (0, int(label_id)) if label_id.isdigit() else (1, label_id)


def _as_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise ValueError(f"{where}: id {value!r} must be a non-empty string or integer")
    return str(value).strip()


def _url(entry: dict[str, Any]) -> str:
    url = entry.get("url", "")
    return " ".join(map(str, url)) if isinstance(url, list) else str(url)


def read_label_names(path: Path) -> dict[str, str]:
    """``{"12": "red", ...}``: label id -> column name."""
    data = _load_json(path, "label-names file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping label id to name")
    return {_as_id(k, str(path)): str(v).strip() for k, v in data.items()}


def convert_imaterialist_json(
    src: str | Path,
    out_dir: str | Path,
    *,
    image_dir: str | Path | None = None,
    extension: str = ".jpg",
    label_names: str | Path | None = None,
    skip_missing: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert an iMaterialist-style JSON and its local images into ``out_dir``.

    Args:
        src: the JSON file (``train.json``).
        out_dir: the train folder to write (replaced atomically).
        image_dir: where ``<imageId><extension>`` files are; default ``images/`` beside src.
        extension: the image file extension.
        label_names: optional JSON file ``{label id: name}``; every id seen must be mapped.
        skip_missing: leave out (with a warning) images with no local file instead of failing;
            for partial downloads, since many of the challenge's URLs are dead.
        overwrite: replace an existing ``out_dir`` this tool did not write.
    """
    src, out_dir = Path(src), Path(out_dir)
    data = _load_json(src, "JSON file")
    image_dir = Path(image_dir) if image_dir is not None else src.parent / "images"
    check_separate(src, out_dir)
    check_separate(image_dir, out_dir)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{src}: expected a JSON object with an 'images' list")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(
            f"{src}: no 'annotations' list; a test file (images only) has no labels to convert"
        )
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"image folder {image_dir} does not exist; download the images there (this tool "
            "never downloads) or pass --image-dir"
        )
    ext = normalise_extension(extension) or ""

    urls: dict[str, str] = {}
    for k, entry in enumerate(data["images"]):
        where = f"{src} images[{k}]"
        if not isinstance(entry, dict) or "imageId" not in entry:
            raise ValueError(f"{where}: entry has no 'imageId'")
        image_id = _as_id(entry["imageId"], where)
        if image_id in urls:
            raise ValueError(f"{where}: duplicate imageId {image_id!r}; list each image once")
        urls[image_id] = _url(entry)
    if not urls:
        raise ValueError(f"{src}: the 'images' list is empty")

    tags: dict[str, list[str]] = {}
    for k, entry in enumerate(data["annotations"]):
        where = f"{src} annotations[{k}]"
        if not isinstance(entry, dict) or "imageId" not in entry:
            raise ValueError(f"{where}: entry has no 'imageId'")
        image_id = _as_id(entry["imageId"], where)
        if image_id not in urls:
            raise ValueError(f"{where}: imageId {image_id!r} is not in 'images'; add it there")
        if image_id in tags:
            raise ValueError(f"{where}: second annotation for imageId {image_id!r}; merge them")
        label_ids = entry.get("labelId")
        if not isinstance(label_ids, list):
            raise ValueError(f"{where}: 'labelId' must be a list of label ids, got {label_ids!r}")
        tags[image_id] = sorted({_as_id(v, where) for v in label_ids}, key=_key)

    present = set(os.listdir(image_dir))
    ids = [i for i in urls if i + ext in present]
    missing = [i for i in urls if i + ext not in present]
    if missing and not skip_missing:
        m = missing[0]
        raise FileNotFoundError(
            f"{src}: image {m!r} has no local file {image_dir / (m + ext)} ({len(missing)} of "
            f"{len(urls)} missing); this tool never downloads (URL: {urls[m] or 'none'}): put "
            "the file there, or pass --skip-missing to leave such images out"
        )
    if missing:
        log.warning(
            "%s: %d of %d images have no local file; left out", src, len(missing), len(urls)
        )
    if not ids:
        raise FileNotFoundError(f"{src}: none of the {len(urls)} images is in {image_dir}")

    label_ids = sorted({t for i in ids for t in tags.get(i, [])}, key=_key)
    if not label_ids:
        raise ValueError(f"{src}: no image with a local file has any labelId")
    names = label_ids
    if label_names is not None:
        mapping = read_label_names(Path(label_names))
        unmapped = [t for t in label_ids if t not in mapping]
        if unmapped:
            raise ValueError(
                f"{label_names}: label id {unmapped[0]!r} (used in {src}) has no name "
                f"({len(unmapped)} unmapped); add it to the file"
            )
        names = [mapping[t] for t in label_ids]
    check_label_names(names, str(label_names or src))

    col = {t: j for j, t in enumerate(label_ids)}
    y = np.zeros((len(ids), len(label_ids)), dtype=np.float32)
    for r, image_id in enumerate(ids):
        if image_id in tags:
            y[r, [col[t] for t in tags[image_id]]] = 1
        else:
            y[r] = np.nan  # listed but never annotated: nothing is known about it
    unannotated = sum(i not in tags for i in ids)
    if unannotated:
        log.warning("%s: %d image(s) without an annotation get unknown cells", src, unannotated)

    out_ids = [output_id(i, i + ext) for i in ids]
    with atomic_dir(out_dir, "IMPORT.json", overwrite) as tmp:
        placed = place_images([(image_dir / (i + ext), i + ext) for i in ids], tmp / "images")
        write_labels_csv(tmp / "labels.csv", out_ids, names, y)
        pd.DataFrame({"image": out_ids, "url": [urls[i] for i in ids]}).to_csv(
            tmp / "urls.csv", index=False, lineterminator="\n"
        )
        summary = summarise(
            "imaterialist_json",
            src,
            out_dir,
            ids,
            names,
            y,
            placed,
            label_ids=dict(zip(names, label_ids, strict=True)),
            skipped_missing=len(missing),
            unannotated=unannotated,
        )
        finish(tmp, summary)
    return summary
