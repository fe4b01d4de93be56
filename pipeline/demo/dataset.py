"""Writing the demo data set (layout: :mod:`pipeline.demo`): one random stream per image,
seeded by ``(seed, split, index)``, so serial and parallel runs write the same bytes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.artifacts import atomic_dir
from pipeline.demo.outfit import Outfit, sample_outfit
from pipeline.demo.palette import LABELS
from pipeline.demo.render import render

_SPLITS = {"train": (1, "tr"), "test": (2, "te")}  # split -> (stream id, file prefix)


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    return np.random.default_rng([seed, _SPLITS[split][0], index])


def outfits(seed: int, split: str, n: int) -> list[Outfit]:
    """Ground truth of the first ``n`` images of ``split`` without drawing them (the outfit
    is the first thing drawn from each image's stream), e.g. to check prevalences fast."""
    return [sample_outfit(_image_rng(seed, split, i)) for i in range(n)]


def make_image(
    seed: int, split: str, index: int, size: int
) -> tuple[Outfit, np.ndarray, np.ndarray, np.ndarray]:
    """Sample and draw image ``index`` of ``split``; depends only on its arguments.

    Returns:
        (outfit, BGR image, garment mask, skin mask).
    """
    rng = _image_rng(seed, split, index)
    outfit = sample_outfit(rng)
    supersample = 4 if size <= 128 else 2
    return (outfit, *render(outfit, size, rng, supersample))


def image_name(split: str, index: int) -> str:
    return f"{_SPLITS[split][1]}_{index:05d}.png"


# ------------------------------------------------------------------------------ writing


def _write_one(job: tuple[Path, int, str, int, int]) -> dict:
    root, seed, split, index, size = job
    outfit, img, gmask, smask = make_image(seed, split, index, size)
    name = image_name(split, index)
    for path, arr in (
        (root / split / "images" / name, img),
        (root / "masks" / name, gmask),
        (root / "skin_masks" / name, smask),
    ):
        if not cv2.imwrite(str(path), arr):
            raise OSError(f"could not write {path}")
    meta = {
        "image": name,
        "split": split,
        "garment": outfit.garment,
        "colour": outfit.colour,
        "hue": outfit.hue,
        "pattern": outfit.pattern,
        "sleeve": outfit.sleeve,
        "person": int(outfit.person),
    }
    return {"meta": meta, "labels": {"image": name, **outfit.labels()}}


def _run_jobs(jobs: list, workers: int, progress: bool) -> Iterator[dict]:
    bar = dict(total=len(jobs), desc="demo images", unit="img", disable=not progress)
    if workers <= 1:
        yield from tqdm(map(_write_one, jobs), **bar)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunk = max(1, len(jobs) // (workers * 8))
        yield from tqdm(pool.map(_write_one, jobs, chunksize=chunk), **bar)


def generate(
    out_dir: str | os.PathLike,
    n_train: int = 3000,
    n_test: int = 600,
    size: int = 64,
    seed: int = 0,
    *,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Write the demo data set to ``out_dir`` (layout: :mod:`pipeline.demo`).

    The set is built in ``<out_dir>.tmp-<pid>`` beside the target and renamed into place
    only when complete (an old ``out_dir`` is moved aside and deleted afterwards), so an
    interrupted run leaves any previous data set untouched and never a half one.

    Returns:
        Summary: ``n_train``, ``n_test``, ``size``, ``seed``, ``labels`` and
        ``prevalence`` (label -> fraction of positive train rows).
    """
    if int(size) != size or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train}, {n_test}")
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        for sub in ("train/images", "test/images", "masks", "skin_masks"):
            (tmp / sub).mkdir(parents=True)
        jobs = [(tmp, seed, "train", i, size) for i in range(n_train)]
        jobs += [(tmp, seed, "test", i, size) for i in range(n_test)]
        rows = list(_run_jobs(jobs, workers, progress))
        train = pd.DataFrame([r["labels"] for r in rows[:n_train]], columns=["image", *LABELS])
        truth = pd.DataFrame([r["labels"] for r in rows[n_train:]], columns=["image", *LABELS])
        train.to_csv(tmp / "train" / "labels.csv", index=False)
        truth[["image"]].to_csv(tmp / "test" / "test.csv", index=False)
        truth.to_csv(tmp / "test_truth.csv", index=False)
        pd.DataFrame([r["meta"] for r in rows]).to_csv(tmp / "meta.csv", index=False)
    prevalence = {k: round(float(train[k].mean()), 4) for k in LABELS}
    return {
        "out_dir": str(out),
        "n_train": n_train,
        "n_test": n_test,
        "size": size,
        "seed": seed,
        "labels": list(LABELS),
        "prevalence": prevalence,
    }
