"""Tests for pipeline/demo/ and stages/demo_data.py: the procedural demo data set."""

from __future__ import annotations

import filecmp
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.demo import dataset, palette
from pipeline.demo.colours import classify_colour
from stages import demo_data

GARMENTS = ["tshirt", "shirt", "dress", "coat", "skirt"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white"]
EXPECTED_LABELS = ["person", *GARMENTS, "long_sleeve", *COLOURS, "striped", "dotted"]
N_TRAIN, N_TEST = 100, 20


def _gen(path: Path, seed: int = 0, size: int = 64, **kw) -> dict:
    return dataset.generate(path, N_TRAIN, N_TEST, size, seed, progress=False, **kw)


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    _gen(out)
    return out


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _read(ds: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = "train" if name.startswith("tr_") else "test"
    img = cv2.imread(str(ds / split / "images" / name), cv2.IMREAD_UNCHANGED)
    garment = cv2.imread(str(ds / "masks" / name), cv2.IMREAD_UNCHANGED)
    skin = cv2.imread(str(ds / "skin_masks" / name), cv2.IMREAD_UNCHANGED)
    return img, garment, skin


def test_label_columns_and_files(ds: Path) -> None:
    assert list(palette.LABELS) == EXPECTED_LABELS
    train = pd.read_csv(ds / "train" / "labels.csv")
    assert list(train.columns) == ["image", *EXPECTED_LABELS]
    assert train.image.tolist() == [f"tr_{i:05d}.png" for i in range(N_TRAIN)]
    assert set(np.unique(train[EXPECTED_LABELS].to_numpy())) <= {0, 1}
    test = pd.read_csv(ds / "test" / "test.csv")
    assert list(test.columns) == ["image"]
    assert test.image.tolist() == [f"te_{i:05d}.png" for i in range(N_TEST)]
    truth = pd.read_csv(ds / "test_truth.csv")
    assert list(truth.columns) == ["image", *EXPECTED_LABELS]
    assert truth.image.tolist() == test.image.tolist()
    meta = pd.read_csv(ds / "meta.csv")
    assert list(meta.columns) == [
        "image", "split", "garment", "colour", "hue", "pattern", "sleeve", "person"
    ]  # fmt: skip
    assert meta.image.tolist() == train.image.tolist() + test.image.tolist()
    for name in meta.image:
        split = "train" if name.startswith("tr_") else "test"
        for folder in (f"{split}/images", "masks", "skin_masks"):
            assert (ds / folder / name).is_file(), f"{folder}/{name}"
    assert len(list((ds / "masks").iterdir())) == N_TRAIN + N_TEST


def test_label_logic_and_meta_agree(ds: Path) -> None:
    labels = pd.concat(
        [pd.read_csv(ds / "train" / "labels.csv"), pd.read_csv(ds / "test_truth.csv")]
    ).set_index("image")
    meta = pd.read_csv(ds / "meta.csv").set_index("image")
    assert (labels[GARMENTS].sum(axis=1) == 1).all()
    assert (labels[COLOURS].sum(axis=1) <= 1).all()
    assert (labels[["striped", "dotted"]].sum(axis=1) <= 1).all()
    assert (labels.loc[labels.skirt == 1, "long_sleeve"] == 0).all()
    assert (labels.loc[labels.coat == 1, "long_sleeve"] == 1).all()
    assert (labels[GARMENTS].idxmax(axis=1) == meta.garment).all()
    assert (labels.person == meta.person).all()
    assert (labels.long_sleeve == (meta.sleeve == "long")).all()
    for c in COLOURS:
        assert (labels[c] == (meta.colour == c)).all(), c
    unlabelled = ~meta.colour.isin(COLOURS)
    assert unlabelled.any(), "expected some garments in colours without a label"
    assert (labels.loc[unlabelled, COLOURS].sum(axis=1) == 0).all()
    assert set(meta.colour) <= set(palette.COLOURS) | set(palette.OTHER_COLOURS)
    assert meta.hue.between(0, 179).all()
    # the fast label-only path gives the same ground truth as the drawn set
    fast = [o.labels() for o in dataset.outfits(0, "train", N_TRAIN)]
    assert pd.DataFrame(fast)[EXPECTED_LABELS].equals(
        labels.iloc[:N_TRAIN][EXPECTED_LABELS].reset_index(drop=True)
    )


def test_images_and_masks(ds: Path) -> None:
    meta = pd.read_csv(ds / "meta.csv")
    for row in meta.itertuples():
        img, garment, skin = _read(ds, row.image)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert garment.shape == skin.shape == (64, 64) and garment.dtype == np.uint8
        assert set(np.unique(garment)) <= {0, 255} and set(np.unique(skin)) <= {0, 255}
        assert (garment > 0).sum() >= 30, row.image  # a garment is always visible
        assert not ((garment > 0) & (skin > 0)).any(), row.image
        if row.person:
            assert (skin > 0).sum() >= 20, row.image  # face, neck, hands at least
            assert (garment == 0).mean() > 0.4  # person, background around the garment
        else:
            assert not skin.any(), f"product shot {row.image} has skin pixels"


def test_skin_and_garment_pixels_match_the_skin_box(ds: Path) -> None:
    """Skin masks hold YCrCb-skin pixels; garments and backgrounds mostly do not, so the
    augmentation's skin removal does not eat garments."""
    skin_hits, skin_n, garment_hits, garment_n, bg_hits, bg_n = 0, 0, 0, 0, 0, 0
    for name in pd.read_csv(ds / "meta.csv").image:
        img, garment, skin = _read(ds, name)
        ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)
        box = cv2.inRange(ycc, (0, 135, 85), (255, 175, 125)) > 0
        s, g = skin > 0, garment > 0
        skin_hits, skin_n = skin_hits + box[s].sum(), skin_n + s.sum()
        garment_hits, garment_n = garment_hits + box[g].sum(), garment_n + g.sum()
        bg_hits, bg_n = bg_hits + box[~s & ~g].sum(), bg_n + (~s & ~g).sum()
    assert skin_hits / skin_n > 0.9
    assert garment_hits / garment_n < 0.02
    assert bg_hits / bg_n < 0.03  # hair, lips and edge blends only


def test_classify_colour_recovers_labels(ds: Path) -> None:
    meta = pd.read_csv(ds / "meta.csv")
    hits = 0
    for row in meta.itertuples():
        img, garment, _ = _read(ds, row.image)
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hits += classify_colour(hsv[garment > 0]) == row.colour
    assert hits / len(meta) >= 0.95


def test_classify_colour_definitions() -> None:
    def px(h, s, v):
        return np.array([[h, s, v]] * 10, np.uint8)

    assert classify_colour(px(2, 220, 200)) == "red"
    assert classify_colour(px(176, 220, 200)) == "red"  # hue wraps at 179
    assert classify_colour(px(110, 200, 180)) == "blue"
    assert classify_colour(px(60, 200, 180)) == "green"
    assert classify_colour(px(29, 220, 240)) == "yellow"
    assert classify_colour(px(110, 200, 30)) == "black"
    assert classify_colour(px(110, 10, 235)) == "white"
    assert classify_colour(px(16, 230, 240)) == "orange"
    assert classify_colour(px(145, 180, 160)) == "purple"
    assert classify_colour(px(0, 0, 128)) == "other"  # mid grey names no colour
    # majority wins over a 40% stripe of grey and a few dark pixels
    mixed = np.vstack([px(110, 200, 180), px(110, 200, 180)[:2], px(0, 0, 128)[:8]])
    assert classify_colour(mixed) == "blue"
    assert set(palette.COLOURS) == set(COLOURS)
    assert palette.COLOURS["black"] is None and palette.COLOURS["white"] is None
    with pytest.raises(ValueError, match="no pixels"):
        classify_colour(np.zeros((0, 3), np.uint8))


def test_same_seed_identical_bytes(ds: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _gen(again)
    files = _all_files(ds)
    assert files == _all_files(again)
    match, mismatch, errors = filecmp.cmpfiles(ds, again, files, shallow=False)
    assert not mismatch and not errors and len(match) == 3 * (N_TRAIN + N_TEST) + 4


def test_parallel_workers_identical_bytes(ds: Path, tmp_path: Path) -> None:
    par = tmp_path / "par"
    _gen(par, workers=2)
    files = _all_files(ds)
    _, mismatch, errors = filecmp.cmpfiles(ds, par, files, shallow=False)
    assert not mismatch and not errors


def test_different_seed_differs(ds: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _gen(other, seed=1)
    a = pd.read_csv(ds / "train" / "labels.csv")
    b = pd.read_csv(other / "train" / "labels.csv")
    assert not a.equals(b)
    same_images = sum(
        (ds / "train" / "images" / n).read_bytes() == (other / "train" / "images" / n).read_bytes()
        for n in a.image
    )
    assert same_images == 0


def test_image_does_not_depend_on_set_size(ds: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    dataset.generate(small, 5, 2, 64, 0, progress=False)
    for name in ("tr_00004.png", "te_00001.png"):
        split = "train" if name.startswith("tr") else "test"
        rel = Path(split) / "images" / name
        assert (small / rel).read_bytes() == (ds / rel).read_bytes()


def test_prevalence_imbalance() -> None:
    """Default-size prevalences (labels only, no drawing): two rare labels, one over 40%."""
    for seed in (0, 1):
        rows = pd.DataFrame([o.labels() for o in dataset.outfits(seed, "train", 3000)])
        prev = rows[EXPECTED_LABELS].mean()
        assert prev.yellow < 0.02 and prev.dotted < 0.02, prev
        assert prev.yellow > 0.005 and prev.dotted > 0.005, prev  # rare, not absent
        assert 0.55 < prev.person < 0.75
        assert prev.tshirt == prev[GARMENTS].max() and prev.skirt == prev[GARMENTS].min()
        assert (prev > 0).all()


def test_size_32_and_validation(tmp_path: Path) -> None:
    out = tmp_path / "s32"
    summary = dataset.generate(out, 12, 3, 32, 3, progress=False)
    img = cv2.imread(str(out / "train" / "images" / "tr_00000.png"))
    mask = cv2.imread(str(out / "masks" / "te_00002.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (32, 32, 3) and mask.shape == (32, 32)
    assert summary["n_train"] == 12 and set(summary["prevalence"]) == set(EXPECTED_LABELS)
    assert summary["prevalence"]["person"] == pd.read_csv(out / "train/labels.csv").person.mean()
    with pytest.raises(ValueError, match="size"):
        dataset.generate(tmp_path / "bad", 5, 1, 8, 0, progress=False)
    with pytest.raises(ValueError, match="n_train"):
        dataset.generate(tmp_path / "bad", 0, 1, 32, 0, progress=False)
    assert not (tmp_path / "bad").exists()


def test_atomic_replace_and_no_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "train").mkdir(parents=True)
    (out / "stale.txt").write_text("old data set")
    dataset.generate(out, 6, 2, 32, 0, progress=False)
    assert not (out / "stale.txt").exists()  # old set replaced, not merged
    assert (out / "train" / "labels.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no *.tmp-* / *.old-*


def test_interrupted_run_keeps_old_set(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "demo"
    dataset.generate(out, 6, 2, 32, 0, progress=False)
    before = (out / "train" / "labels.csv").read_bytes()
    real, calls = dataset._write_one, []

    def dying(job):
        calls.append(job)
        if len(calls) > 3:
            raise KeyboardInterrupt  # like a Ctrl-C half way through
        return real(job)

    monkeypatch.setattr(dataset, "_write_one", dying)
    with pytest.raises(KeyboardInterrupt):
        dataset.generate(out, 10, 2, 32, 5, progress=False)
    assert len(calls) == 4
    assert (out / "train" / "labels.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_cli(tmp_path: Path, caplog) -> None:
    out = tmp_path / "cli"
    with caplog.at_level(logging.INFO):
        demo_data.main(
            ["--out", str(out), "--n-train", "8", "--n-test", "2", "--size", "32", "--no-progress"]
        )
    assert len(pd.read_csv(out / "train" / "labels.csv")) == 8
    assert len(pd.read_csv(out / "test" / "test.csv")) == 2
    line = [r.getMessage() for r in caplog.records if "prevalence" in r.getMessage()]
    assert len(line) == 1 and "person=" in line[0] and "dotted=" in line[0]
    with pytest.raises(SystemExit) as exc:
        demo_data.main(["--out", str(tmp_path / "x"), "--size", "4", "--no-progress"])
    assert exc.value.code == 2


def test_cli_help() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "stages.demo_data", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    for flag in ("--out", "--n-train", "--n-test", "--size", "--seed"):
        assert flag in res.stdout
