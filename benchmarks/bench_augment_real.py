"""Does the colour-change augmentation help on real photos? (`make bench-augment-real`)

An ablation with everything else fixed: one backbone's K fold jobs are trained twice, from
the same folds, seed and settings, once with the config's augmentation (forced on, so a
config that leaves it off can still be measured) and once with an empty one. Both arms
are scored the same way:

* each arm's OOF = its final-epoch predictions of every fold's held-out rows; per-label
  thresholds are searched on that arm's OOF (``thresholds.step``, F-beta);
* held out = the mean of the K fold models' final-epoch test predictions, thresholded;
* F-beta macro over the rare labels (prevalence < ``--rare`` among known training cells)
  and over all labels, with a paired bootstrap 95% interval of with - without, on the
  held-out images and on the OOF rows.

For colour-label data sets the rewritten labels are checked on every copy by two
classifiers that did not make it: the dominant-hue rule on a mask re-segmented from the
copy's own pixels, and the without-copies fold model that never trained on the copy's
source (its most probable mapped colour). Writes ``build/bench/augment_real_<name>.json``
(``rare_f2_with``, ``rare_f2_without``, ``rare_gain_ci``, ``mask_iou``, ``skin_in_mask``,
``relabel_agreement``, …) and prints one summary line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _build_augmentation(cfg, folds: Path, out: Path, enabled: bool) -> dict:
    from pipeline.augment import run_augmentation

    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    acfg = dataclasses.replace(cfg.augment, enabled=enabled)
    return run_augmentation(cfg.data.train_dir, folds, acfg, out, workers=2)


def _train_arm(
    config: Path,
    backbone: str,
    folds: Path,
    n_folds: int,
    augmented: Path,
    arm_dir: Path,
    jobs: int,
) -> float:
    """Run the arm's missing fold jobs (``jobs`` at a time) through the real stage CLI."""
    t0 = time.perf_counter()
    todo = [k for k in range(n_folds) if not (arm_dir / f"{backbone}.fold{k}.npz").is_file()]
    running: list[subprocess.Popen] = []
    for k in todo + [None] * jobs:
        while len(running) >= jobs or (k is None and running):
            p = running.pop(0)
            if p.wait() != 0:
                raise SystemExit(f"error: training {arm_dir} fold job failed (exit {p.returncode})")
        if k is None:
            continue
        cmd = [
            sys.executable,
            "-m",
            "stages.train_cnn",
            "--config",
            str(config),
            "--backbone",
            backbone,
            "--fold",
            str(k),
            "--folds",
            str(folds),
            "--augmented",
            str(augmented),
            "--work-dir",
            str(arm_dir / "cnn" / f"{backbone}.fold{k}"),
            "--out",
            str(arm_dir / f"{backbone}.fold{k}.npz"),
        ]
        running.append(subprocess.Popen(cmd))
    return time.perf_counter() - t0


def _arm_predictions(arm_dir: Path, backbone: str, n_folds: int, train_ids):
    """(OOF (n, L), held-out mean (m, L), labels, test ids) at each fold's final epoch."""
    from pipeline.ensemble.select import load_base_predictions

    files = {backbone: [arm_dir / f"{backbone}.fold{k}.npz" for k in range(n_folds)]}
    base = load_base_predictions(files, train_ids)
    last = len(base.columns) - 1
    return base.oof[:, last], base.test[:, :, last].mean(axis=0), base.labels, base.test_ids


def _binary(p: np.ndarray, thr: np.ndarray) -> np.ndarray:
    return (p >= thr[None]).astype(np.float64)


def _compare(y, p_with, p_without, thr_with, thr_without, cols, beta, seed) -> dict:
    from pipeline.metrics import fbeta_score, paired_bootstrap

    a, b = _binary(p_with[:, cols], thr_with[cols]), _binary(p_without[:, cols], thr_without[cols])
    ci = paired_bootstrap(y[:, cols], a, b, beta=beta, seed=seed)
    return {
        "f_with": float(fbeta_score(y[:, cols], a, beta=beta, average="macro")),
        "f_without": float(fbeta_score(y[:, cols], b, beta=beta, average="macro")),
        "gain_ci": ci,
    }


def _relabel_checks(cfg, aug_dir: Path, table, folds, cnn_dir: Path | None, backbone: str) -> dict:
    """Agreement of independent colour classifiers with the copies' rewritten colour label."""
    import pandas as pd

    from pipeline.augment import colour_name, dominant_hue, garment_mask
    from pipeline.augment.segment import GarmentSegmenter
    from pipeline.runtime.images import load_image

    acfg = cfg.augment
    copies = pd.read_csv(aug_dir / "labels.csv", dtype={"image": str, "source": str})
    colours = [c for c in acfg.colours if c in table.labels]
    if copies.empty or not colours:
        return {"n_copies": int(len(copies))}
    target = []
    for _, row in copies.iterrows():
        pos = [c for c in colours if row[c] == 1]
        target.append(pos[0] if len(pos) == 1 else None)
    imgs = [load_image(aug_dir / "images" / i) for i in copies["image"]]
    seg = GarmentSegmenter.load(acfg.mask_model) if acfg.mask_model else None
    grids = seg.predict_grid(imgs) if seg else [None] * len(imgs)
    rule_hits = []
    for img, g, t in zip(imgs, grids, target, strict=True):
        if t is None:
            continue
        mask = garment_mask(img, colour=t, cfg=acfg, grid_prob=g)
        rule_hits.append(colour_name(dominant_hue(img, mask, acfg), acfg) == t)
    out = {
        "n_copies": int(len(copies)),
        "relabel_agreement": float(np.mean(rule_hits)) if rule_hits else None,
        "relabel_rule": "dominant-hue rule on a mask re-segmented from the copy",
    }
    if cnn_dir is not None:
        out.update(
            _cnn_agreement(copies, imgs, target, colours, table, folds, cnn_dir, backbone, cfg)
        )
    return out


def _cnn_agreement(copies, imgs, target, colours, table, folds, cnn_dir, backbone, cfg) -> dict:
    """The without-copies fold model of each copy's source fold (it never trained on the
    source) names the copy's colour: agreement on copies vs on the sources themselves."""
    import cv2

    from pipeline.models.inference import load_checkpoint
    from pipeline.runtime.images import load_image

    idx = [table.labels.index(c) for c in colours]
    src_fold = dict(zip(map(str, table.ids), folds, strict=True))
    row_of = {str(i): r for r, i in enumerate(table.ids)}
    path_of = dict(zip(map(str, table.ids), table.paths(), strict=True))
    size = cfg.data.image_size
    hits_copy, hits_src = [], []
    for k in sorted(set(int(f) for f in copies["fold"])):
        ckpts = sorted((cnn_dir / f"{backbone}.fold{k}").glob("ckpt_epoch*.keras"))
        if not ckpts:
            return {}
        model = load_checkpoint(ckpts[-1])
        rows = [i for i, f in enumerate(copies["fold"]) if int(f) == k and target[i] is not None]
        rows = [i for i in rows if src_fold[copies["source"][i]] == k]
        if not rows:
            continue
        batch = np.stack(
            [cv2.resize(imgs[i], (size, size), interpolation=cv2.INTER_AREA) for i in rows]
        )
        src = np.stack([load_image(path_of[copies["source"][i]], size) for i in rows])
        p_copy = model.predict(batch.astype(np.float32), verbose=0)[:, idx]
        p_src = model.predict(src.astype(np.float32), verbose=0)[:, idx]
        for r, pc, ps in zip(rows, p_copy, p_src, strict=True):
            hits_copy.append(colours[int(pc.argmax())] == target[r])
            src_row = table.y[row_of[copies["source"][r]]]
            src_col = [c for c, j in zip(colours, idx, strict=True) if src_row[j] == 1]
            if len(src_col) == 1:
                hits_src.append(colours[int(ps.argmax())] == src_col[0])
    return {
        "relabel_agreement_cnn": float(np.mean(hits_copy)) if hits_copy else None,
        "source_agreement_cnn": float(np.mean(hits_src)) if hits_src else None,
        "cnn_rule": f"{backbone} fold model trained without copies, argmax over mapped colours",
    }


def main(argv: list[str] | None = None) -> int:
    from pipeline.artifacts import write_json_atomic
    from pipeline.config.schema import load_config
    from pipeline.data.contract import read_labels, read_test_truth
    from pipeline.data.folds import read_folds
    from pipeline.ensemble.thresholds import rule_thresholds

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--backbone", default="", help="default: the config's first backbone")
    ap.add_argument("--folds", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="arms' fold files and checkpoints")
    ap.add_argument(
        "--without",
        type=Path,
        default=None,
        help="reuse the fold files of a run of the same config with augmentation "
        "off (e.g. build/<name>/preds) instead of training that arm",
    )
    ap.add_argument(
        "--without-cnn",
        type=Path,
        default=None,
        help="checkpoints of that run (<dir>/<backbone>.fold<k>/ckpt_epoch*.keras) for "
        "the CNN relabel check; default: the trained arm's own",
    )
    ap.add_argument("--masks-json", type=Path, default=None, help="bench-masks result to quote")
    ap.add_argument("--rare", type=float, default=0.05)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    backbone = args.backbone or cfg.train.backbones[0].name
    table = read_labels(cfg.data.train_dir, cfg.data.id_column)
    folds = read_folds(args.folds, table.ids)
    n_folds = cfg.folds.n_folds
    work = args.work
    aug_on = _build_augmentation(cfg, args.folds, work / "augment", True)
    _build_augmentation(cfg, args.folds, work / "augment_off", False)
    seconds = {}
    without_dir = args.without or work / "without"
    if args.without is None:
        seconds["without"] = _train_arm(
            args.config,
            backbone,
            args.folds,
            n_folds,
            work / "augment_off" / "labels.csv",
            without_dir,
            args.jobs,
        )
    seconds["with"] = _train_arm(
        args.config,
        backbone,
        args.folds,
        n_folds,
        work / "augment" / "labels.csv",
        work / "with",
        args.jobs,
    )

    y = table.y
    oof_w, test_w, labels, test_ids = _arm_predictions(work / "with", backbone, n_folds, table.ids)
    oof_o, test_o, _, _ = _arm_predictions(without_dir, backbone, n_folds, table.ids)
    beta, step = cfg.thresholds.beta, cfg.thresholds.step
    thr_w = rule_thresholds(oof_w, y, "per_label", beta=beta, step=step)
    thr_o = rule_thresholds(oof_o, y, "per_label", beta=beta, step=step)
    known = ~np.isnan(y)
    prev = np.nansum(y, axis=0) / np.maximum(known.sum(axis=0), 1)
    rare = np.flatnonzero(prev < args.rare)
    every = np.arange(len(labels))
    y_test = read_test_truth(cfg.data.test_truth, labels, cfg.data.id_column, test_ids).to_numpy(
        dtype=np.float64
    )
    res = {
        "config": str(args.config),
        "backbone": backbone,
        "rare_threshold": args.rare,
        "rare_labels": [labels[j] for j in rare],
        "augmentation": {
            k: aug_on[k]
            for k in (
                "rare_labels",
                "planned",
                "written",
                "sources",
                "skipped",
                "per_rare_label",
                "per_target_colour",
                "mask_source",
            )
        },
        "train_seconds": seconds,
        "without_from": str(without_dir),
    }
    for where, (yy, pw, po) in {
        "heldout": (y_test, test_w, test_o),
        "oof": (y, oof_w, oof_o),
    }.items():
        for name, cols in (("rare", rare), ("all", every)):
            res[f"{where}_{name}"] = _compare(yy, pw, po, thr_w, thr_o, cols, beta, seed=0)
    res["rare_f2_with"] = res["heldout_rare"]["f_with"]
    res["rare_f2_without"] = res["heldout_rare"]["f_without"]
    res["rare_gain_ci"] = res["heldout_rare"]["gain_ci"]
    res["oof_rare_gain_ci"] = res["oof_rare"]["gain_ci"]
    res["f2_with"], res["f2_without"] = (
        res["heldout_all"]["f_with"],
        res["heldout_all"]["f_without"],
    )
    masks = (
        json.loads(args.masks_json.read_text())
        if args.masks_json and args.masks_json.is_file()
        else {}
    )
    res["mask_iou"] = masks.get("mask_iou")
    res["skin_in_mask"] = masks.get("skin_in_mask")
    res["mask_measured_on"] = masks.get("config")
    cnn_dir = args.without_cnn or (None if args.without else without_dir / "cnn")
    if cfg.augment.mode == "labels":
        res.update(_relabel_checks(cfg, work / "augment", table, folds, cnn_dir, backbone))
    else:
        res["relabel_agreement"] = 1.0
        res["relabel_rule"] = "mode = rotate: no label names a colour, labels are copied unchanged"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, res)
    ci, ca = res["rare_gain_ci"], res["heldout_all"]["gain_ci"]
    print(
        f"bench-augment-real {cfg.name} ({backbone}): rare-label held-out F{beta:g} "
        f"{res['rare_f2_without']:.4f} -> {res['rare_f2_with']:.4f} "
        f"({ci['gain']:+.4f} [{ci['low']:+.4f}, {ci['high']:+.4f}]), all labels "
        f"{ca['gain']:+.4f} [{ca['low']:+.4f}, {ca['high']:+.4f}]; {aug_on['written']} copies; "
        f"relabel agreement {res.get('relabel_agreement')} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
