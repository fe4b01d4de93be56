"""Garment masks on real photos against pixel-level ground truth (`make bench-masks`).

For a config with a ``[segmenter]`` (maps of some photos), scores the masks the
augmentation would use on the *held-out* photos that have a map (the segmenter is fitted
on the training split's maps only, so none of these were fitted):

* ``grabcut``: the box-seeded GrabCut foreground minus YCrCb skin (no segmenter);
* ``segmenter``: the segmenter's refined mask (:func:`pipeline.augment.segment.refine`).

For each: ``mask_iou`` (mean IoU with the union of garment classes = every class but
background, hair and skin), ``skin_in_mask`` (mean share of the mask's pixels that are
skin in the map), ``skin_recoloured`` (share of the map's skin pixels inside the mask) and,
for the one-garment mask of a colour-label plan (``whole=False``, no colour label: the
centre garment), ``one_garment_iou`` (IoU with the map's garment class it overlaps most).
Writes JSON and prints one summary line.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_json_atomic

METHODS = ("grabcut", "segmenter")


def _scores(mask: np.ndarray, cls: np.ndarray) -> dict:
    g, skin = cls == 1, cls == 3
    return {
        "iou": float((mask & g).sum() / max(1, (mask | g).sum())),
        "skin_in_mask": float((mask & skin).sum() / max(1, mask.sum())),
        "skin_recoloured": float((mask & skin).sum() / max(1, skin.sum())),
        "fraction": float(mask.mean()),
    }


def _one_garment_iou(mask: np.ndarray, raw: np.ndarray, garment_ids) -> float:
    """IoU with the garment class the one-garment mask overlaps most (0 if none)."""
    if not mask.any():
        return 0.0
    hits = np.bincount(raw[mask].ravel(), minlength=256)
    hits[[i for i in range(256) if i not in garment_ids]] = 0
    if hits.max() == 0:
        return 0.0
    true = raw == int(hits.argmax())
    return float((mask & true).sum() / max(1, (mask | true).sum()))


def _score_photo(args) -> dict:
    from pipeline.augment import garment_mask

    img, raw, cls, grid, garment_ids, cfg = args
    out = {}
    for method in METHODS:
        prob = grid if method == "segmenter" else None
        t = time.perf_counter()
        whole = garment_mask(img, cfg=cfg, grid_prob=prob, whole=True)
        elapsed = time.perf_counter() - t
        one = garment_mask(img, cfg=cfg, grid_prob=prob, whole=False)
        out[method] = {
            **_scores(whole, cls),
            "one_garment_iou": _one_garment_iou(one, raw, garment_ids),
            "seconds": elapsed,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline.augment.segment import (
        GarmentSegmenter,
        class_map,
        mapped_ids,
        read_label_names,
        read_map,
    )
    from pipeline.config.schema import load_config
    from pipeline.data.contract import image_paths, read_test_ids
    from pipeline.runtime.images import load_image

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument(
        "--segmenter", type=Path, default=None, help="default build/<name>/segmenter.npz"
    )
    ap.add_argument("--limit", type=int, default=0, help="score only the first N photos (0 = all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    seg_cfg = cfg.segmenter
    if not seg_cfg.maps_dir:
        raise SystemExit(f"error: {args.config} has no [segmenter] maps_dir to score masks against")
    test_ids, test_dir = read_test_ids(cfg.data.test_dir, cfg.data.id_column)
    pairs = mapped_ids([str(i) for i in test_ids], seg_cfg.maps_dir)
    if args.limit:
        pairs = pairs[: args.limit]
    names = read_label_names(seg_cfg.label_names)
    non_garment = set(seg_cfg.background) | set(seg_cfg.hair) | set(seg_cfg.skin)
    garment_ids = {i for i, n in enumerate(names) if n not in non_garment}
    by_id = dict(zip((str(i) for i in test_ids), image_paths(test_ids, test_dir), strict=True))
    images = [load_image(by_id[i]) for i, _ in pairs]
    raws = [read_map(p) for _, p in pairs]
    classes = [class_map(r, names, seg_cfg.hair, seg_cfg.skin, seg_cfg.background) for r in raws]
    seg = GarmentSegmenter.load(args.segmenter or Path("build") / cfg.name / "segmenter.npz")
    t = time.perf_counter()
    grids = seg.predict_grid(images)
    grid_s = (time.perf_counter() - t) / max(1, len(images))
    tasks = [
        (im, r, c, g, garment_ids, cfg.augment)
        for im, r, c, g in zip(images, raws, classes, grids, strict=True)
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        per_photo = list(pool.map(_score_photo, tasks, chunksize=4))
    result = {
        "config": str(args.config),
        "n_photos": len(pairs),
        "photos": "held-out photos with a map (the segmenter never fitted them)",
        "segmenter_grid_s_per_image": grid_s,
    }
    for method in METHODS:
        rows = [p[method] for p in per_photo]
        result[method] = {
            k: float(np.mean([r[k] for r in rows]))
            for k in (
                "iou",
                "skin_in_mask",
                "skin_recoloured",
                "one_garment_iou",
                "fraction",
                "seconds",
            )
        }
        result[method]["iou_p10"] = float(np.percentile([r["iou"] for r in rows], 10))
    best = result["segmenter"]
    result["mask_iou"] = best["iou"]
    result["skin_in_mask"] = best["skin_in_mask"]
    result["goals"] = {"mask_iou": 0.75, "skin_in_mask": 0.03}
    result["goals_met"] = bool(best["iou"] >= 0.75 and best["skin_in_mask"] <= 0.03)
    write_json_atomic(args.out, result)
    g = result["grabcut"]
    print(
        f"bench-masks {cfg.name}: {len(pairs)} held-out photos: segmenter IoU {best['iou']:.3f} "
        f"skin-in-mask {best['skin_in_mask']:.3f} (one garment {best['one_garment_iou']:.3f}) | "
        f"grabcut IoU {g['iou']:.3f} skin {g['skin_in_mask']:.3f} | goals "
        f"{'met' if result['goals_met'] else 'NOT met'} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
