"""Garment segmenter and the augmentation's mask path on a small real fixture: photos and
pixel-level maps of clothing-co-parsing (read in place from ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.augment import garment_mask, run_augmentation, skin_mask
from pipeline.augment.segment import (
    CLASSES,
    GarmentSegmenter,
    class_map,
    mapped_ids,
    read_label_names,
    read_map,
    refine,
)
from pipeline.config.augment import AugmentConfig
from pipeline.config.schema import SegmenterConfig
from pipeline.runtime.images import load_image

ROOT = Path(__file__).resolve().parents[1]
CCP = ROOT.parent / "shared" / "data" / "clothing-co-parsing"
N_FIT, N_EVAL = 24, 8


def _ccp() -> Path:
    if not (CCP / "masks").is_dir():
        msg = f"{CCP} is missing: the real-photo mask tests need ../shared/data"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return CCP


@pytest.fixture(scope="module")
def fixture():
    """(fit photos, fit class maps, eval photos, eval class maps, eval raw maps, names)."""
    d = _ccp()
    names = read_label_names(d / "label_names.txt")
    ids = sorted(p.stem for p in (d / "masks").glob("*.png"))[: N_FIT + N_EVAL]
    pairs = mapped_ids(ids, d / "masks")
    imgs = [load_image(d / "images" / f"{i}.jpg") for i, _ in pairs]
    raws = [read_map(p) for _, p in pairs]
    cls = [class_map(r, names, ["hair"], ["skin"], ["null"]) for r in raws]
    return imgs[:N_FIT], cls[:N_FIT], imgs[N_FIT:], cls[N_FIT:], raws[N_FIT:], names


@pytest.fixture(scope="module")
def segmenter(fixture):
    fit_imgs, fit_cls, *_ = fixture
    # weights="none": tests train from scratch (no ImageNet file in CI); a seeded random
    # encoder still carries colour and position, which is what a small decoder learns from
    params = SegmenterConfig(
        weights="none", image_size=96, grid=12, epochs=200, width=32, learning_rate=3e-3
    )
    return GarmentSegmenter(params).fit(fit_imgs, fit_cls, progress=False)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_class_map_groups_the_data_sets_classes():
    names = ["null", "bag", "hair", "skin", "dress"]
    raw = np.array([[0, 1, 2], [3, 4, 4]], np.uint8)
    out = class_map(raw, names, ["hair"], ["skin"], ["null"])
    assert out.tolist() == [[0, 1, 2], [3, 1, 1]]
    assert CLASSES[1] == "garment"
    with pytest.raises(ValueError, match="'face' is not in the label names"):
        class_map(raw, names, ["face"], ["skin"], ["null"])


def test_real_maps_hold_garment_skin_and_hair(fixture):
    _, fit_cls, *_ = fixture
    share = np.bincount(np.concatenate([c.ravel() for c in fit_cls]), minlength=4) / sum(
        c.size for c in fit_cls
    )
    # street photos: mostly background, a garment share of about a fifth, some skin/hair
    assert 0.5 < share[0] < 0.85 and 0.1 < share[1] < 0.4
    assert share[2] > 0.005 and share[3] > 0.005


def _mean_iou(seg, imgs, cls) -> float:
    grids = seg.predict_grid(imgs)
    assert grids.shape == (len(imgs), 12, 12, 4)
    np.testing.assert_allclose(grids.sum(-1), 1.0, atol=1e-5)
    return float(
        np.mean(
            [
                _iou(garment_mask(img, grid_prob=g, whole=True), c == 1)
                for img, c, g in zip(imgs, cls, grids, strict=True)
            ]
        )
    )


@pytest.mark.slow
def test_segmenter_learns_the_real_maps(fixture, segmenter):
    """From scratch on 24 photos the decoder fits its maps and carries over a little; the
    ImageNet encoder's held-out IoU (0.80 on 164 photos) is `make bench-masks`' number."""
    fit_imgs, fit_cls, ev_imgs, ev_cls, _, _ = fixture
    fit_iou, unseen_iou = (
        _mean_iou(segmenter, fit_imgs, fit_cls),
        _mean_iou(segmenter, ev_imgs, ev_cls),
    )
    print(f"fit IoU {fit_iou:.3f}, unseen IoU {unseen_iou:.3f}")
    assert fit_iou > 0.6
    assert unseen_iou > 0.3
    assert segmenter.loss_[-1] < 0.6 * segmenter.loss_[0]


@pytest.mark.slow
def test_segmenter_save_load_round_trip(tmp_path, fixture, segmenter):
    *_, ev_imgs, _, _, _ = fixture
    path = tmp_path / "segmenter.npz"
    segmenter.save(path)
    again = GarmentSegmenter.load(path)
    assert again.params == segmenter.params  # no data paths set: every field is kept
    np.testing.assert_allclose(
        again.predict_grid(ev_imgs[:2]), segmenter.predict_grid(ev_imgs[:2]), atol=1e-6
    )
    with pytest.raises(FileNotFoundError, match="make segmenter"):
        GarmentSegmenter.load(tmp_path / "missing.npz")


def test_refine_removes_model_skin_and_keeps_sure_background(fixture):
    *_, ev_imgs, ev_cls, _, _ = fixture
    img, cls = ev_imgs[0], ev_cls[0]
    # the "model" is the true map, coarsened: refinement must stay close to the truth
    onehot = np.eye(4, dtype=np.float32)[cls]
    grid = cv2.resize(onehot, (28, 28), interpolation=cv2.INTER_AREA)
    mask = refine(img, grid, skin_mask(img))
    assert _iou(mask, cls == 1) > 0.7
    far = cv2.resize(grid, img.shape[1::-1])[..., 1] < 0.05
    assert not (mask & far).any()


@pytest.mark.slow
def test_rotate_augmentation_with_the_segmenter(tmp_path, fixture, segmenter):
    """mode = rotate: copies of rare-tag photos, labels unchanged, pixels outside the mask
    untouched, every copy inherits its source's fold."""
    d = _ccp()
    fit_ids = sorted(p.stem for p in (d / "masks").glob("*.png"))[:N_FIT]
    train = tmp_path / "train"
    (train / "images").mkdir(parents=True)
    for i in fit_ids:
        (train / "images" / f"{i}.jpg").symlink_to(d / "images" / f"{i}.jpg")
    labels = pd.read_csv(d / "labels.csv", dtype={"image": str}).set_index("image").loc[fit_ids]
    labels = labels[["dress", "skirt", "bag"]].reset_index()
    labels.to_csv(train / "labels.csv", index=False)
    folds = pd.DataFrame({"image": fit_ids, "fold": np.arange(len(fit_ids)) % 3})
    folds.to_csv(tmp_path / "folds.csv", index=False)
    model = tmp_path / "segmenter.npz"
    segmenter.save(model)
    cfg = AugmentConfig(
        mode="rotate", colour_map=(), rare_labels=("dress",), variants=2, mask_model=str(model)
    )
    summary = run_augmentation(
        train, tmp_path / "folds.csv", cfg, tmp_path / "aug", workers=1, progress=False
    )
    n_dress = int(labels["dress"].sum())
    assert summary["planned"] == 2 * n_dress and summary["written"] > 0
    assert summary["mask_source"] == {"segmenter": summary["planned"]}
    out = pd.read_csv(tmp_path / "aug" / "labels.csv", dtype={"image": str, "source": str})
    src = labels.set_index("image")
    fold_of = dict(zip(folds["image"], folds["fold"], strict=True))
    for _, row in out.iterrows():
        assert row["fold"] == fold_of[row["source"]]
        assert row[["dress", "skirt", "bag"]].tolist() == src.loc[row["source"]].tolist()
        orig = load_image(d / "images" / f"{row['source']}.jpg")
        copy = load_image(tmp_path / "aug" / "images" / row["image"])
        mask = cv2.imread(
            str(tmp_path / "aug" / "masks" / f"{row['source']}.png"), cv2.IMREAD_GRAYSCALE
        )
        outside = mask == 0
        assert np.array_equal(orig[outside], copy[outside])
        assert (np.abs(orig.astype(int) - copy.astype(int)).sum(-1) > 0)[~outside].mean() > 0.3
