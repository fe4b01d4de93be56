"""Benchmark: colour-change augmentation against the demo generator's ground truth.

    python -m benchmarks.bench_augment --out build/bench/augment.json

On the demo data (``data/demo``; generated into ``build/bench/demo`` with the default demo
settings if absent) it measures what issue 6 asks for:

* ``mask_iou``: mean IoU of :func:`pipeline.augment.garment_mask` vs the generator's
  garment masks on the first ``--n-iou`` train images, as the augmentation uses it (seeded
  by the image's colour label where it has exactly one mapped colour), plus without the
  colour seed and with the HOG box tried first, for comparison;
* ``colour_match``: share of written copies whose rewritten colour label equals
  :func:`pipeline.demo.colours.classify_colour` of the copy's pixels under the *generator* mask;
* ``skin_changed``: share of generator skin pixels whose bytes differ in the copies.

With ``--train [FOLD ...]`` it also trains ``small_cnn`` on each fold (default 0) twice with the same seeds -- the
original training rows, then those plus the fold's augmented rows
(:func:`pipeline.augment.augmented_rows_for_fold`) -- and reports each rare label's F2 on
the demo test set at the threshold that is best on the fold's (original-only) OOF rows:
``rare_f2_with`` / ``rare_f2_without``. Without ``--train`` both stay null. Few rare
positives (about 8 per label in the 600 test images) make this a noisy, honest estimate.
Writes JSON atomically, prints one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.artifacts import load_fold_predictions, write_json_atomic
from pipeline.augment import AugmentConfig, garment_mask, read_augmented, run_augmentation
from pipeline.data.contract import read_labels
from pipeline.data.folds import make_folds
from pipeline.demo.colours import classify_colour
from pipeline.demo.dataset import generate
from pipeline.runtime.images import load_image

log = logging.getLogger("benchmarks.bench_augment")


def _read_mask(path: Path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise FileNotFoundError(f"{path}: generator mask missing; regenerate the demo data")
    return m > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def colour_hint(row: pd.Series, cfg: AugmentConfig) -> str | None:
    """The colour label the augmentation would seed the mask with (one positive, mapped)."""
    pos = [c for c in cfg.colours if c in row.index and row[c] == 1]
    return pos[0] if len(pos) == 1 else None


def mask_iou(data: Path, n: int, cfg: AugmentConfig, variants: bool = True) -> dict:
    """Mean IoU of estimated vs generator garment masks on the first ``n`` train images."""
    labels = pd.read_csv(data / "train" / "labels.csv").head(n)
    meta = pd.read_csv(data / "meta.csv").set_index("image")
    hog_cfg = dataclasses.replace(cfg, box="hog")
    rows = []
    for _, r in labels.iterrows():
        img = load_image(data / "train" / "images" / r["image"])
        gt = _read_mask(data / "masks" / r["image"])
        hint = colour_hint(r, cfg)
        rec = {"person": int(meta.loc[r["image"], "person"])}
        rec["seeded"] = _iou(garment_mask(img, colour=hint, cfg=cfg), gt)
        if variants:
            rec["unseeded"] = _iou(garment_mask(img, cfg=cfg), gt)
            rec["hog_first"] = _iou(garment_mask(img, colour=hint, cfg=hog_cfg), gt)
        rows.append(rec)
    df = pd.DataFrame(rows)
    out = {
        "mask_iou": round(float(df["seeded"].mean()), 4),
        "mask_iou_person": round(float(df.loc[df.person == 1, "seeded"].mean()), 4),
        "mask_iou_product": round(float(df.loc[df.person == 0, "seeded"].mean()), 4),
        "mask_iou_p10": round(float(df["seeded"].quantile(0.1)), 4),
        "n_iou_images": len(df),
    }
    if variants:
        out["mask_iou_unseeded"] = round(float(df["unseeded"].mean()), 4)
        out["mask_iou_hog_first"] = round(float(df["hog_first"].mean()), 4)
    return out


def copy_checks(data: Path, aug_dir: Path, cfg: AugmentConfig) -> dict:
    """Colour-label match (generator's classifier, generator masks) and skin changes."""
    df = read_augmented(aug_dir / "labels.csv")
    colour_cols = [c for c in cfg.colours if c in df.columns]
    match, skin_changed, skin_total, outside_changed, outside_total = 0, 0, 0, 0, 0
    mismatches = []
    for _, r in df.iterrows():
        src = r["source"]
        orig = load_image(data / "train" / "images" / src)
        new = load_image(aug_dir / "images" / r["image"])
        gmask = _read_mask(data / "masks" / src)
        skin = _read_mask(data / "skin_masks" / src)
        hsv = cv2.cvtColor(new, cv2.COLOR_RGB2HSV)
        seen = classify_colour(hsv[gmask])
        want = [c for c in colour_cols if r[c] == 1]
        if seen in want:
            match += 1
        else:
            mismatches.append(f"{r['image']}: labelled {want}, reads {seen}")
        changed = np.any(new != orig, axis=2)
        skin_changed += int(np.count_nonzero(changed & skin))
        skin_total += int(np.count_nonzero(skin))
        outside = ~gmask & ~skin
        outside_changed += int(np.count_nonzero(changed & outside))
        outside_total += int(np.count_nonzero(outside))
    n = len(df)
    return {
        "colour_match": round(match / n, 4) if n else None,
        "skin_changed": round(skin_changed / skin_total, 5) if skin_total else 0.0,
        "background_changed": round(outside_changed / outside_total, 5) if outside_total else 0.0,
        "n_copies": n,
        "mismatches": mismatches[:20],
    }


def rare_f2_compare(
    data: Path,
    folds_csv: Path,
    aug_dir: Path,
    rare: list[str],
    train_folds: tuple[int, ...] = (0,),
    epochs: int = 6,
    seed: int = 7,
    work: Path | None = None,
) -> dict:
    """Train small_cnn per fold without and with augmented rows; rare-label test F2.

    Same seeds, same settings as the demo config's small_cnn; the only difference is the
    augmented rows appended to the training side. Thresholds are picked per label on the
    fold's OOF rows (originals only) and applied to the test predictions (last epoch).
    Returns per-fold scores and their mean over ``train_folds``.
    """
    from pipeline.augment import augmented_rows_for_fold
    from pipeline.config.schema import BackboneConfig, TrainConfig
    from pipeline.data.contract import read_test_ids, read_test_truth
    from pipeline.data.folds import read_folds
    from pipeline.metrics import best_threshold_fbeta, fbeta_per_label
    from pipeline.train.fold import FoldJob, train_fold

    small_cnn = BackboneConfig(
        "small_cnn", epochs=epochs, batch_size=64, lr_min=3e-4, lr_max=3e-3, width=16
    )

    table = read_labels(data / "train")
    folds = read_folds(folds_csv, table.ids)
    test_ids, test_dir = read_test_ids(data / "test")
    y_test = read_test_truth(data / "test_truth.csv", table.labels, test_ids=test_ids).to_numpy()
    paths = table.paths()
    per_fold = []
    for fold in train_folds:
        tr, va = folds != fold, folds == fold
        a_ids, a_y, a_paths = augmented_rows_for_fold(aug_dir / "labels.csv", fold, table.labels)
        rec: dict = {"fold": fold, "n_aug_rows": len(a_ids)}
        for name, extra_paths, extra_y in (("without", [], a_y[:0]), ("with", a_paths, a_y)):
            job = FoldJob(
                backbone=small_cnn,
                train=TrainConfig((small_cnn,), seed=seed),
                fold=fold,
                image_size=64,
                labels=table.labels,
                train_paths=[p for p, t in zip(paths, tr, strict=True) if t] + list(extra_paths),
                train_y=np.concatenate([table.y[tr], extra_y]),
                val_ids=table.ids[va],
                val_paths=[p for p, v in zip(paths, va, strict=True) if v],
                test_ids=test_ids,
                test_paths=[test_dir / i for i in test_ids],
            )
            wdir = (work or Path("build")) / f"f2-{name}-fold{fold}"
            train_fold(job, wdir, wdir / "preds.npz")
            z = load_fold_predictions(wdir / "preds.npz")
            oof, test = z["oof"][-1], z["test"][-1]
            f2 = {}
            for lab in rare:
                j = table.labels.index(lab)
                _, thr = best_threshold_fbeta(table.y[va, j], oof[:, j], beta=2.0)
                pred = (test[:, j] >= thr)[:, None]
                f2[lab] = round(float(fbeta_per_label(y_test[:, j : j + 1], pred, 2.0)[0]), 4)
            rec[name] = f2
        per_fold.append(rec)
        log.info("fold %d rare F2 without %s with %s", fold, rec["without"], rec["with"])

    def mean_of(name: str) -> dict:
        m = {lab: round(float(np.mean([r[name][lab] for r in per_fold])), 4) for lab in rare}
        m["mean"] = round(float(np.mean(list(m.values()))), 4) if rare else None
        return m

    return {
        "epochs": epochs,
        "folds": list(train_folds),
        "with": mean_of("with"),
        "without": mean_of("without"),
        "per_fold": per_fold,
    }


def ensure_demo(data: Path | None) -> Path:
    """``data`` if given, else ``data/demo``, else a default demo set in build/bench/."""
    if data is not None:
        return data
    if (Path("data/demo") / "train" / "labels.csv").is_file():
        return Path("data/demo")
    out = Path("build/bench/demo")
    if not (out / "train" / "labels.csv").is_file():
        log.info("data/demo absent: generating the default demo set into %s", out)
        generate(out, 3000, 600, 64, 0, progress=False)
    return out


def run(
    data: Path, n_iou: int, workers: int, variants: bool, train_folds: tuple[int, ...] = ()
) -> dict:
    cfg = AugmentConfig()
    t0 = time.perf_counter()
    iou = mask_iou(data, n_iou, cfg, variants)
    t_iou = time.perf_counter() - t0
    table = read_labels(data / "train")
    with tempfile.TemporaryDirectory(dir="build") as tmp:
        folds_csv = Path(tmp) / "folds.csv"
        folds = make_folds(table.y, 5, 42)
        pd.DataFrame({"image": table.ids, "fold": folds}).to_csv(folds_csv, index=False)
        t1 = time.perf_counter()
        summary = run_augmentation(
            data / "train", folds_csv, cfg, Path(tmp) / "aug", workers=workers, progress=False
        )
        t_aug = time.perf_counter() - t1
        checks = copy_checks(data, Path(tmp) / "aug", cfg)
        f2 = None
        if train_folds:
            f2 = rare_f2_compare(
                data,
                folds_csv,
                Path(tmp) / "aug",
                summary["rare_labels"],
                train_folds,
                work=Path(tmp),
            )
    note = (
        f"small_cnn 6 epochs, folds {list(train_folds)}, same seeds with and without; "
        "per-label test F2 at the fold's OOF-best threshold, mean over folds"
        if f2
        else "not measured: run with --train FOLD [FOLD ...] (trains small_cnn twice per fold)"
    )
    return {
        **iou,
        **checks,
        "rare_f2_with": f2["with"] if f2 else None,
        "rare_f2_without": f2["without"] if f2 else None,
        "rare_f2_note": note,
        "rare_f2_details": f2,
        "rare_labels": summary["rare_labels"],
        "planned": summary["planned"],
        "written": summary["written"],
        "skipped": summary["skipped"],
        "per_target_colour": summary["per_target_colour"],
        "seconds_iou": round(t_iou, 1),
        "seconds_augment": round(t_aug, 1),
        "data": str(data),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("build/bench/augment.json"))
    ap.add_argument("--data", type=Path, default=None, help="demo data folder (default data/demo)")
    ap.add_argument("--n-iou", type=int, default=200, help="images for the mask IoU (default 200)")
    ap.add_argument("--workers", type=int, default=1, help="processes for the augmentation run")
    ap.add_argument("--no-variants", action="store_true", help="skip unseeded/HOG-first IoU")
    ap.add_argument(
        "--train",
        type=int,
        nargs="*",
        default=None,
        metavar="FOLD",
        help="also train small_cnn with/without augmentation on these folds (default 0; slow)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "WARNING"))
    Path("build").mkdir(exist_ok=True)
    train_folds = () if args.train is None else tuple(args.train or (0,))
    res = run(ensure_demo(args.data), args.n_iou, args.workers, not args.no_variants, train_folds)
    write_json_atomic(args.out, res)
    print(
        f"augment: mask IoU {res['mask_iou']:.3f} (unseeded {res.get('mask_iou_unseeded', float('nan')):.3f}), "
        f"colour match {res['colour_match']:.1%} of {res['n_copies']} copies, "
        f"skin changed {res['skin_changed']:.2%}"
        + (
            f", rare F2 {res['rare_f2_without']['mean']:.3f} -> {res['rare_f2_with']['mean']:.3f}"
            if res["rare_f2_with"]
            else ""
        )
        + f" -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
