"""Running the plan (masks, recolouring, ``images/`` + ``labels.csv`` + ``masks/`` +
``summary.json`` built in a temp folder and renamed into place), reading the copies back
for a fold's training rows, and the preview grid for the report."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.artifacts import atomic_dir, write_atomic
from pipeline.augment.colour import (
    HueStats,
    colour_name,
    colourise,
    dominant_hue,
    recolour,
    to_achromatic,
)
from pipeline.augment.masks import garment_mask
from pipeline.augment.plan import AugJob, plan_with_skips
from pipeline.config.augment import (
    DEFAULT_COLOUR_MAP,
    AugmentConfig,
    parse_colour_map,
)
from pipeline.data.contract import image_paths, read_csv_strings, read_labels
from pipeline.data.folds import read_folds
from pipeline.runtime.images import load_image

log = logging.getLogger(__name__)

OUTPUT_COLUMNS: tuple[str, ...] = ("image", "source", "fold")
"""Leading columns of the augmentation ``labels.csv``; the label columns follow."""


def _find_mask(mask_dir: Path, image_id: str) -> Path | None:
    for cand in (mask_dir / image_id, mask_dir / f"{Path(image_id).stem}.png"):
        if cand.is_file():
            return cand
    return None


def _make_copy(
    img: np.ndarray, mask: np.ndarray, stats: HueStats, job: AugJob, cfg: AugmentConfig
) -> np.ndarray:
    spec = cfg.colours[job.target_colour]
    if not spec.chromatic:
        return to_achromatic(img, mask, spec.kind, feather=cfg.feather)
    if stats.achromatic:
        return colourise(
            img,
            mask,
            job.target_hue,
            saturation=cfg.colourise_saturation,
            value_range=cfg.colourise_value,
            min_value=cfg.value_floor(job.target_colour),
            feather=cfg.feather,
        )
    return recolour(
        img,
        mask,
        job.target_hue,
        source_hue=stats.hue,
        saturation_scale=cfg.saturation_scale,
        min_value=cfg.value_floor(job.target_colour),
        feather=cfg.feather,
    )


def _process_source(args: tuple) -> list[tuple[AugJob, str, str]]:
    """Mask one source image once, make its copies; returns (job, outcome, mask source)."""
    jobs, image_path, mask_path, grid_prob, out_dir, cfg = args
    img = load_image(image_path)
    user = None
    if mask_path is not None:
        user = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if user is None:
            raise ValueError(f"{mask_path}: cannot decode mask image; replace or delete it")
    src = jobs[0].source_colour
    rotate = cfg.mode == "rotate"
    mask = garment_mask(img, user, colour=src, cfg=cfg, grid_prob=grid_prob, whole=rotate)
    cv2.imwrite(
        str(out_dir / "masks" / f"{Path(jobs[0].source).stem}.png"), mask.astype(np.uint8) * 255
    )
    how = "user" if user is not None else ("segmenter" if grid_prob is not None else "grabcut")
    if mask.sum() < cfg.min_mask_fraction * mask.size:
        return [(j, "mask_too_small", how) for j in jobs]
    stats = dominant_hue(img, mask, cfg)
    if rotate:
        return _rotate_copies(img, mask, stats, jobs, out_dir, cfg, how)
    seen = colour_name(stats, cfg)
    if src is None:  # recolour_unlabelled: only a chromatic colour no label names
        if stats.achromatic or seen is not None:
            return [(j, "unlabelled_but_mapped" if seen else "achromatic", how) for j in jobs]
    elif cfg.verify and seen != src:
        return [(j, "colour_mismatch", how) for j in jobs]
    if stats.achromatic and cfg.grey_policy == "skip":
        return [(j, "achromatic", how) for j in jobs]
    out = []
    for job in jobs:
        new = _make_copy(img, mask, stats, job, cfg)
        if cfg.verify and colour_name(dominant_hue(new, mask, cfg), cfg) != job.target_colour:
            out.append((job, "recolour_failed", how))
            continue
        _write_copy(out_dir, job, new)
        out.append((job, "ok", how))
    return out


def _write_copy(out_dir: Path, job: AugJob, img: np.ndarray) -> None:
    path = out_dir / "images" / job.new_id
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def _rotate_copies(img, mask, stats: HueStats, jobs, out_dir: Path, cfg: AugmentConfig, how):
    """``mode = "rotate"``: shift every masked hue by each job's offset (labels unchanged)."""
    if math.isnan(stats.hue):  # no chromatic pixel: a rotation changes nothing
        return [(j, "achromatic", how) for j in jobs]
    out = []
    for job in jobs:
        new = recolour(
            img,
            mask,
            (stats.hue + job.target_hue) % 180,
            source_hue=stats.hue,
            saturation_scale=cfg.saturation_scale,
            feather=cfg.feather,
        )
        _write_copy(out_dir, job, new)
        out.append((job, "ok", how))
    return out


def _segment_sources(paths: list[Path], cfg: AugmentConfig, progress: bool) -> dict:
    """Coarse segmenter probabilities per image path (empty without ``cfg.mask_model``).

    Computed here, in batches, so worker processes never load TensorFlow; a (28, 28, 4)
    grid per image is cheap to send."""
    if not cfg.mask_model or not paths:
        return {}
    from pipeline.augment.segment import GarmentSegmenter

    seg = GarmentSegmenter.load(cfg.mask_model)
    grids = seg.predict_grid([load_image(p) for p in paths], progress=progress)
    return dict(zip(paths, grids, strict=True))


def run_augmentation(
    train_dir: str | os.PathLike,
    folds_csv: str | os.PathLike,
    cfg: AugmentConfig,
    out_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None = None,
    *,
    id_column: str = "image",
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Plan and write the augmentation for ``train_dir`` into ``out_dir``.

    Writes ``out_dir/images/<new id>``, ``out_dir/labels.csv`` (``image,source,fold,
    <labels>``, NaN as an empty cell, rows sorted by id), ``out_dir/masks/<source stem>.png``
    (mask used) and ``out_dir/summary.json``. Everything is built in
    ``<out_dir>.tmp-<pid>`` and renamed into place at the end, so a killed run leaves the
    previous output (or none), never a half one. Output depends only on the inputs and
    ``cfg`` (not on ``workers``).

    Args:
        train_dir: folder with ``labels.csv`` and ``images/``.
        folds_csv: ``image,fold`` file of ``make folds``.
        cfg: augmentation settings.
        out_dir: output folder (replaced).
        masks_dir: user garment masks; overrides ``cfg.mask_dir``.
        id_column: image-id column of ``labels.csv``.
        workers: processes for masking/recolouring (1 = in this process).
        progress: show a tqdm bar.

    Returns:
        Summary dict (also ``summary.json``): counts of planned/written copies, skip
        reasons, copies per rare label and per target colour, mask sources.
    """
    train_dir, out = Path(train_dir), Path(out_dir)
    table = read_labels(train_dir, id_column)
    folds = read_folds(folds_csv, table.ids)
    jobs, skipped, rare = plan_with_skips(table, folds, cfg)
    mdir = Path(masks_dir) if masks_dir else (Path(cfg.mask_dir) if cfg.mask_dir else None)
    if mdir is not None and not mdir.is_dir():
        raise FileNotFoundError(
            f"mask folder {mdir} does not exist; fix augment.mask_dir / --masks-dir"
        )
    groups: dict[str, list[AugJob]] = {}
    for j in jobs:
        groups.setdefault(j.source, []).append(j)
    with atomic_dir(out) as tmp:
        for sub in ("images", "masks"):
            (tmp / sub).mkdir(parents=True)
        path_of = dict(zip(map(str, table.ids), table.paths(), strict=True))  # ids may lack .jpg
        user = {src: _find_mask(mdir, src) if mdir else None for src in groups}
        probs = _segment_sources([path_of[s] for s, m in user.items() if m is None], cfg, progress)
        tasks = [
            (g, path_of[src], user[src], probs.get(path_of[src]), tmp, cfg)
            for src, g in groups.items()
        ]
        bar = dict(total=len(tasks), desc="augment", unit="img", disable=not progress)
        if workers <= 1 or len(tasks) < 2:
            results = list(tqdm(map(_process_source, tasks), **bar))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(tqdm(pool.map(_process_source, tasks, chunksize=4), **bar))
        outcomes = [r for group in results for r in group]
        done = sorted((j for j, o, _ in outcomes if o == "ok"), key=lambda j: j.new_id)
        for _, o, _ in outcomes:
            if o != "ok":
                skipped[o] += 1
        rows = pd.DataFrame(
            {
                "image": [j.new_id for j in done],
                "source": [j.source for j in done],
                "fold": pd.array([j.fold for j in done], dtype="Int64"),
            }
        )
        y = np.array([j.y for j in done], dtype=np.float64).reshape(len(done), len(table.labels))
        for k, lab in enumerate(table.labels):
            rows[lab] = pd.array(
                np.where(np.isnan(y[:, k]), np.nan, y[:, k]), dtype="Float64"
            ).astype("Int64")
        rows.to_csv(tmp / "labels.csv", index=False, lineterminator="\n")
        summary = {
            "train_dir": str(train_dir),
            "folds_csv": str(folds_csv),
            "n_train": len(table.ids),
            "rare_labels": list(rare),
            "planned": len(jobs),
            "written": len(done),
            "sources": len({j.source for j in done}),
            "skipped": dict(sorted(skipped.items())),
            "per_rare_label": dict(sorted(Counter(j.reason for j in done).items())),
            "per_target_colour": dict(
                sorted(Counter(j.target_colour or "hue_rotation" for j in done).items())
            ),
            "mask_source": dict(sorted(Counter(h for _, o, h in outcomes).items())),
            "config": asdict(cfg),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=list) + "\n")
    log.info(
        "augment %s: rare %s, %d/%d copies written from %d sources -> %s; skipped %s",
        train_dir,
        list(rare),
        len(done),
        len(jobs),
        summary["sources"],
        out,
        summary["skipped"] or "none",
    )
    return summary


# ------------------------------------------------------------------------------ consuming


def read_augmented(
    aug_labels_csv: str | os.PathLike, labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """The augmentation ``labels.csv`` as a frame (label columns float, NaN = unknown)."""
    path = Path(aug_labels_csv)
    # strings as written: a source id 'NA' or 'None' stays an id (empty cell = unknown)
    df = read_csv_strings(path, "run `make augment`")
    head = list(df.columns[: len(OUTPUT_COLUMNS)])
    if head != list(OUTPUT_COLUMNS):
        raise ValueError(f"{path}: header must start with {','.join(OUTPUT_COLUMNS)}, got {head}")
    have = [c for c in df.columns if c not in OUTPUT_COLUMNS]
    if labels is not None:
        missing = [lab for lab in labels if lab not in have]
        if missing:
            raise ValueError(f"{path}: label column {missing[0]!r} missing; re-run `make augment`")
        have = list(labels)
    out = df[list(OUTPUT_COLUMNS)].copy()
    out["fold"] = out["fold"].astype(np.int64)
    for lab in have:
        out[lab] = pd.to_numeric(df[lab].replace("", np.nan)).astype(np.float32)
    return out


def augmented_rows_for_fold(
    aug_labels_csv: str | os.PathLike, fold: int, labels: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Augmented training rows for the model that validates on ``fold``.

    Only copies whose source lies outside ``fold`` are returned, so no copy of a
    validation image trains the model that predicts it (no OOF leakage); validation and
    OOF rows must be the original images of ``fold`` only.

    Args:
        aug_labels_csv: ``labels.csv`` written by :func:`run_augmentation`.
        fold: the fold held out for validation.
        labels: label columns in the order of the training table (default: file order).

    Returns:
        (ids (n,), y (n, L) float32 with NaN = unknown, image paths).
    """
    path = Path(aug_labels_csv)
    df = read_augmented(path, labels)
    df = df[df["fold"] != int(fold)]
    cols = [c for c in df.columns if c not in OUTPUT_COLUMNS]
    ids = df["image"].to_numpy().astype(str)
    y = df[cols].to_numpy(np.float32).reshape(len(df), len(cols))
    return ids, y, [path.parent / "images" / i for i in ids]


# ------------------------------------------------------------------------------ preview


def preview_png(
    out_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    train_dir: str | os.PathLike | None = None,
    n: int = 8,
    scale: int = 2,
) -> Path | None:
    """Grid for the report: original | mask | recoloured copies, one source per row.

    Sources are the first ``n`` with copies (ordered by id). ``train_dir`` defaults to the
    one recorded in ``summary.json``. Returns the path, or None if there is no copy.
    """
    out_dir = Path(out_dir)
    df = read_augmented(out_dir / "labels.csv")
    if df.empty:
        return None
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if train_dir is None:
        if "train_dir" not in summary:
            raise FileNotFoundError(f"{summary_path} missing; pass train_dir")
        train_dir = summary["train_dir"]
    image_dir = Path(train_dir) / "images"
    rotate = summary.get("config", {}).get("mode") == "rotate"
    cmap = summary.get("config", {}).get("colour_map", DEFAULT_COLOUR_MAP)
    colour_cols = [c for c in parse_colour_map(cmap) if c in df.columns]
    sources = list(dict.fromkeys(df["source"]))[:n]
    width = int(df.groupby("source").size().max())
    rows = []
    tile = None
    for src in sources:
        orig = load_image(image_paths([src], image_dir)[0])  # ids may lack their extension
        if tile is None:  # one tile size for the grid; real photos: at most 160 px, not 2x
            h, w = orig.shape[:2]
            if max(h, w) > 160:
                f = 160 / max(h, w)
                h, w, scale = round(h * f), round(w * f), 1
            tile = (w, h)
        if orig.shape[:2] != (h, w):
            orig = cv2.resize(orig, tile, interpolation=cv2.INTER_AREA)
        mpath = out_dir / "masks" / f"{Path(src).stem}.png"
        m = cv2.imread(str(mpath), cv2.IMREAD_GRAYSCALE)
        m = (
            np.zeros((h, w), np.uint8)
            if m is None
            else cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
        )
        shown = (orig * 0.35).astype(np.uint8)
        shown[m > 0] = orig[m > 0]  # the mask as a cut-out: garment bright, rest dimmed
        tiles = [(orig, "original"), (shown, "mask")]
        for _, r in df[df["source"] == src].iterrows():
            names = [c for c in colour_cols if r[c] == 1]
            copy = cv2.resize(
                load_image(out_dir / "images" / r["image"]), (w, h), interpolation=cv2.INTER_AREA
            )
            tiles.append((copy, "hue rotated" if rotate else ",".join(names) or "-"))
        tiles += [(np.full_like(orig, 255), "")] * (width + 2 - len(tiles))
        row = []
        for img, text in tiles:
            big = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
            cap = np.full((14, w * scale, 3), 255, np.uint8)
            cv2.putText(
                cap, text[:14], (2, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA
            )
            row.append(np.vstack([big, cap]))
            row.append(np.full((h * scale + 14, 2, 3), 255, np.uint8))
        rows.append(np.hstack(row))
    grid = np.vstack(rows)
    path = Path(path)

    def write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {tmp}")

    write_atomic(path, write, suffix=".png")
    return path
