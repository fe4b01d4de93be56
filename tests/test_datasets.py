"""Format adapters and the held-out split, on tiny fixtures written here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.data.contract import read_dataset, read_labels, read_test_ids
from pipeline.data.datasets import (
    FORMATS,
    convert_clothing_attribute_mat,
    convert_folder_per_class,
    convert_imaterialist_json,
    convert_kaggle_csv,
    split_holdout,
)
from stages import import_data, split_data

ROOT = Path(__file__).resolve().parents[1]


def image(path: Path, value: int = 0) -> Path:
    """A real (tiny) image file; ``value`` makes its bytes differ from another's."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((4, 4, 3), value, dtype=np.uint8))
    return path


def cells(out: Path, name: str = "labels.csv") -> pd.DataFrame:
    """The CSV exactly as written: strings, empty cell = ''."""
    return pd.read_csv(out / name, dtype=str, keep_default_na=False).set_index("image")


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size: proves a source was not modified."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


# ---- folder_per_class ---------------------------------------------------------------------


def test_folder_per_class_splits_names_and_unions(tmp_path):
    src = tmp_path / "src"
    a = image(src / "red_dress" / "a.jpg", 10)
    image(src / "red_dress" / "b.jpg", 20)
    image(src / "blue_dress" / "c.jpg", 30)
    image(src / "red_shirt" / "a.jpg", 10)  # same image filed twice
    (src / "red_shirt" / "notes.txt").write_text("not an image")
    before = tree(src)
    out = tmp_path / "out"
    summary = convert_folder_per_class(src, out)

    table = read_labels(out)
    assert table.labels == ("blue", "dress", "red", "shirt")
    assert cells(out).to_dict("index") == {
        "a.jpg": {"blue": "0", "dress": "1", "red": "1", "shirt": "1"},
        "b.jpg": {"blue": "0", "dress": "1", "red": "1", "shirt": "0"},
        "c.jpg": {"blue": "1", "dress": "1", "red": "0", "shirt": "0"},
    }
    assert summary["images_in_several_folders"] == 1 and summary["class_folders"] == 3
    assert summary["linked"] == 3 and summary["copied"] == 0
    assert (out / "images" / "a.jpg").stat().st_ino == a.stat().st_ino  # a hard link
    assert json.loads((out / "IMPORT.json").read_text())["format"] == "folder_per_class"
    assert tree(src) == before
    assert not list(tmp_path.glob("out.tmp-*"))


def test_folder_per_class_errors(tmp_path):
    src = tmp_path / "src"
    image(src / "red_dress" / "a.jpg", 10)
    image(src / "red_shirt" / "a.jpg", 99)  # same name, other picture
    with pytest.raises(ValueError, match=r"share the file name 'a.jpg' but differ"):
        convert_folder_per_class(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp-*"))
    bad = tmp_path / "bad"
    image(bad / "red__dress" / "a.jpg")
    with pytest.raises(ValueError, match=r"red__dress.*empty"):
        convert_folder_per_class(bad, tmp_path / "out")
    with pytest.raises(ValueError, match="overlap"):
        convert_folder_per_class(bad, bad / "out")


# ---- kaggle_csv -----------------------------------------------------------------------------


def kaggle_fixture(root: Path) -> Path:
    for i, v in (("0001", 1), ("0002", 2), ("0003", 3)):
        image(root / "images" / f"{i}.jpg", v)
    csv = root / "train.csv"
    csv.write_text("image_name,tags\n0001,red dress\n0002,\n0003,  blue  dress \n")
    return csv


def test_kaggle_csv(tmp_path):
    csv = kaggle_fixture(tmp_path / "src")
    out = tmp_path / "out"
    s = convert_kaggle_csv(csv, out, id_column="image_name", labels_column="tags", extension="jpg")
    table = read_labels(out)
    assert table.ids.tolist() == ["0001", "0002", "0003"]  # leading zeros kept, no extension
    assert table.labels == ("blue", "dress", "red")
    assert cells(out).to_dict("index") == {
        "0001": {"blue": "0", "dress": "1", "red": "1"},
        "0002": {"blue": "0", "dress": "0", "red": "0"},
        "0003": {"blue": "1", "dress": "1", "red": "0"},
    }
    assert s["rows_without_labels"] == 1 and s["positives"] == {"blue": 1, "dress": 2, "red": 1}
    # without --extension the id resolves to <id>.<image ext> all the same
    again = convert_kaggle_csv(csv, out, id_column="image_name", labels_column="tags")
    assert again["images"] == 3


def test_kaggle_csv_errors(tmp_path):
    csv = kaggle_fixture(tmp_path / "src")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"no 'image_id' column .* --id-column"):
        convert_kaggle_csv(csv, out, labels_column="tags")
    csv.write_text("image_name,tags\n0001,red\n0004,blue\n")
    with pytest.raises(FileNotFoundError, match=r"train.csv row 3: image 0004"):
        convert_kaggle_csv(csv, out, id_column="image_name", labels_column="tags")
    csv.write_text("image_name,tags\n0001,red\n0002,blue\n0001,red\n")
    with pytest.raises(ValueError, match=r"row 4: duplicate id '0001' \(first at row 2\)"):
        convert_kaggle_csv(csv, out, id_column="image_name", labels_column="tags")
    assert not out.exists()


# ---- imaterialist_json ----------------------------------------------------------------------


def imat_fixture(root: Path) -> tuple[Path, Path]:
    data = {
        "images": [
            {"imageId": "1", "url": "https://example.invalid/1.jpg"},
            {"imageId": "2", "url": ["https://example.invalid/2.jpg"]},
            {"imageId": 3, "url": "https://example.invalid/3.jpg"},
        ],
        "annotations": [
            {"imageId": "1", "labelId": ["45", "12"]},
            {"imageId": "2", "labelId": [45]},
        ],
    }
    for i in ("1", "2", "3"):
        image(root / "imgs" / f"{i}.jpg", int(i))
    (root / "train.json").write_text(json.dumps(data))
    (root / "names.json").write_text(json.dumps({"12": "red", "45": "dress", "7": "unused"}))
    return root / "train.json", root / "names.json"


def test_imaterialist_json(tmp_path):
    src, names = imat_fixture(tmp_path / "src")
    out = tmp_path / "out"
    s = convert_imaterialist_json(src, out, image_dir=tmp_path / "src" / "imgs", label_names=names)
    table = read_labels(out)
    assert table.labels == ("red", "dress")  # ordered by label id: 12 before 45
    assert cells(out).to_dict("index") == {
        "1": {"red": "1", "dress": "1"},
        "2": {"red": "0", "dress": "1"},
        "3": {"red": "", "dress": ""},  # listed, never annotated: unknown, not 0
    }
    assert s["label_ids"] == {"red": "12", "dress": "45"} and s["unannotated"] == 1
    urls = cells(out, "urls.csv")["url"].to_dict()
    assert urls == {i: f"https://example.invalid/{i}.jpg" for i in ("1", "2", "3")}
    # without names, the columns are the ids themselves (what submissions use)
    convert_imaterialist_json(src, out, image_dir=tmp_path / "src" / "imgs")
    assert read_labels(out).labels == ("12", "45")


def test_imaterialist_json_errors(tmp_path):
    src, names = imat_fixture(tmp_path / "src")
    imgs = tmp_path / "src" / "imgs"
    (imgs / "2.jpg").unlink()
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"image '2' .*never downloads.*--skip-missing"):
        convert_imaterialist_json(src, out, image_dir=imgs)
    s = convert_imaterialist_json(src, out, image_dir=imgs, skip_missing=True)
    assert s["skipped_missing"] == 1 and read_labels(out).ids.tolist() == ["1", "3"]
    names.write_text(json.dumps({"12": "red"}))
    with pytest.raises(ValueError, match=r"names.json: label id '45' .* has no name"):
        convert_imaterialist_json(src, out, image_dir=imgs, skip_missing=True, label_names=names)


# ---- clothing_attribute_mat -----------------------------------------------------------------


def mat_fixture(root: Path, gt: dict[str, list[float]]) -> Path:
    import scipy.io

    (root / "ground_truth").mkdir(parents=True)
    for attr, values in gt.items():
        scipy.io.savemat(
            root / "ground_truth" / f"{attr}_GT.mat", {"GT": np.array(values, float)[:, None]}
        )
    for i in range(len(next(iter(gt.values())))):
        image(root / "images" / f"{i + 1:06d}.jpg", i)
    return root


NAN = float("nan")
GT = {
    "necktie": [1, 2, NAN, 2],
    "gender": [2, 1, 1, NAN],
    "sleevelength": [1, 3, NAN, 2],
    "category": [7, NAN, 1, 4],
}


def test_clothing_attribute_mat(tmp_path):
    src = mat_fixture(tmp_path / "src", GT)
    out = tmp_path / "out"
    s = convert_clothing_attribute_mat(src, out)
    table = read_labels(out)
    cats = ["shirt", "sweater", "tshirt", "outerwear", "suit", "tank_top", "dress"]
    assert table.labels == (
        "necktie",
        "female",
        "sleeve_none",
        "sleeve_short",
        "sleeve_long",
        *cats,
    )
    got = {i: "".join(c or "." for c in row.tolist()) for i, row in cells(out).iterrows()}
    # 1 = no, 2 = yes; NaN -> empty ('.') for a binary column and a whole one-hot group
    assert got == {
        "000001": "01" + "100" + "0000001",
        "000002": "10" + "001" + "." * 7,
        "000003": ".0" + "..." + "1000000",
        "000004": "1." + "010" + "0001000",
    }
    assert s["unknown_cells"] == 1 + 1 + 3 + 7
    assert "pattern_solid" in s["absent_attributes"]


def test_clothing_attribute_mat_errors(tmp_path):
    src = mat_fixture(tmp_path / "a", {"necktie": [1, 3, 2]})
    with pytest.raises(ValueError, match=r"necktie_GT.mat row 2 \(image 000002\): value 3"):
        convert_clothing_attribute_mat(src, tmp_path / "out")
    src = mat_fixture(tmp_path / "b", {"necktie": [1, 2, 2], "scarf": [1, 2]})
    with pytest.raises(ValueError, match=r"scarf_GT.mat: 2 rows but .*necktie_GT.mat has 3"):
        convert_clothing_attribute_mat(src, tmp_path / "out")
    src = mat_fixture(tmp_path / "c", {"neckline": [1, 4]})
    with pytest.raises(ValueError, match=r"neckline_GT.mat row 2 .* not one of \[1, 2, 3\]"):
        convert_clothing_attribute_mat(src, tmp_path / "out")
    src = mat_fixture(tmp_path / "d", {"necktie": [1, 2]})
    (src / "images" / "000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000002.jpg not found"):
        convert_clothing_attribute_mat(src, tmp_path / "out")


# ---- replacing an output atomically ----------------------------------------------------------


def test_output_replaced_only_when_ours_and_only_on_success(tmp_path):
    src = mat_fixture(tmp_path / "src", GT)
    out = tmp_path / "out"
    convert_clothing_attribute_mat(src, out)
    first = (out / "labels.csv").read_text()
    import scipy.io

    scipy.io.savemat(src / "ground_truth" / "scarf_GT.mat", {"GT": np.ones((3, 1))})  # 3 != 4
    with pytest.raises(ValueError, match="rows but"):
        convert_clothing_attribute_mat(src, out)
    assert (out / "labels.csv").read_text() == first  # the old result survives a failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    (src / "ground_truth" / "scarf_GT.mat").unlink()
    with pytest.raises(ValueError, match="not written by this tool.*--overwrite"):
        convert_clothing_attribute_mat(src, foreign)
    convert_clothing_attribute_mat(src, foreign, overwrite=True)
    assert not (foreign / "keep.txt").exists()


# ---- the import_data stage --------------------------------------------------------------------


def test_import_data_cli(tmp_path, capsys):
    csv = kaggle_fixture(tmp_path / "src")
    out = tmp_path / "out"
    argv = ["--format", "kaggle_csv", "--src", str(csv), "--out", str(out)]
    opts = ["--id-column", "image_name", "--labels-column", "tags"]
    assert import_data.main(argv + opts + ["--extension", ".jpg"]) == 0
    assert read_labels(out).labels == ("blue", "dress", "red")
    assert import_data.main(argv + opts + ["--label-names", "x.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --label-names does not apply")
    assert import_data.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert sorted(FORMATS) == sorted(import_data.FORMATS)


def test_stage_help_runs_as_module():
    for stage in ("stages.import_data", "stages.split_data"):
        res = subprocess.run(
            [sys.executable, "-m", stage, "--help"], cwd=ROOT, capture_output=True, text=True
        )
        assert res.returncode == 0 and "--src" in res.stdout, res.stderr


# ---- held-out split ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """500 rows x 6 labels, prevalence 40%..4%, ~5% unknown cells; 8 px noise images."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    y = (rng.random((500, 6)) < np.linspace(0.4, 0.04, 6)).astype(float)
    y[rng.random(y.shape) < 0.05] = np.nan
    ids = [f"{i:04d}" for i in range(500)]
    (root / "images").mkdir()
    for i in ids:
        cv2.imwrite(str(root / "images" / f"{i}.jpg"), rng.integers(0, 256, (8, 8, 3), np.uint8))
    text = np.where(np.isnan(y), "", np.nan_to_num(y).astype(int).astype(str))
    df = pd.DataFrame(text, columns=[f"l{j}" for j in range(6)])
    df.insert(0, "image", ids)
    df.to_csv(root / "labels.csv", index=False)
    return root


def test_split_holdout(synthetic, tmp_path):
    out = tmp_path / "split"
    info = split_holdout(synthetic, out, fraction=0.2, seed=0)
    ds = read_dataset(out / "train", out / "test")  # disjoint by id, file and bytes
    train, test_ids = ds.train, ds.test_ids
    assert sorted([*train.ids, *test_ids]) == [f"{i:04d}" for i in range(500)]
    assert info["counts"] == {
        "total": 500,
        "train": len(train.ids),
        "test": len(test_ids),
        "copies_moved_to_train": 0,
    }
    assert 90 <= len(test_ids) <= 110
    src = cells(synthetic)
    truth = cells(out, "test_truth.csv")
    assert truth.index.tolist() == test_ids.tolist()
    # every cell, unknown ('') included, is carried over exactly, in the source's row order
    pd.testing.assert_frame_equal(cells(out / "train"), src.loc[train.ids])
    pd.testing.assert_frame_equal(truth, src.loc[test_ids])
    assert (truth == "").to_numpy().sum() > 0
    # stratified: every label's prevalence within 3 points in both parts
    for name, p in info["prevalence"].items():
        assert abs(p["train"] - p["test"]) < 0.03, (name, p)
    # images are absolute symlinks to the source, nothing is copied
    for part in ("train", "test"):
        link = out / part / "images"
        assert link.is_symlink() and Path(os.readlink(link)) == (synthetic / "images").resolve()
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert files == [
        "SPLIT.json",
        "test",
        "test/images",
        "test/test.csv",
        "test_truth.csv",
        "train",
        "train/images",
        "train/labels.csv",
    ]
    saved = json.loads((out / "SPLIT.json").read_text())
    assert saved["seed"] == 0 and saved["fraction"] == 0.2
    assert saved["source"] == str(synthetic.resolve())


def test_split_keeps_copies_of_one_photo_on_one_side(synthetic, tmp_path):
    """A held-out row whose bytes (or near copy) also train moves to train; without such
    copies the split is the plain stratified one."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(synthetic, src)
    plain = split_holdout(synthetic, tmp_path / "plain", fraction=0.2, seed=0)
    held = read_test_ids(tmp_path / "plain" / "test", check_images=False)[0]
    trained = read_labels(tmp_path / "plain" / "train", check_images=False).ids
    # three held-out rows become exact copies of training images, one a re-encoded copy
    for h, t in zip(held[:3], trained[:3], strict=True):
        shutil.copy(src / "images" / f"{t}.jpg", src / "images" / f"{h}.jpg")
    blobs = np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    photo = cv2.resize(blobs, (64, 64), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(src / "images" / f"{trained[3]}.jpg"), photo)
    small = cv2.resize(photo, (48, 48), interpolation=cv2.INTER_AREA)  # resized, re-encoded
    cv2.imwrite(str(src / "images" / f"{held[3]}.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 60])
    info = split_holdout(src, tmp_path / "s", fraction=0.2, seed=0)
    assert info["counts"]["copies_moved_to_train"] == 4
    assert info["counts"]["test"] == plain["counts"]["test"] - 4
    test_ids = read_test_ids(tmp_path / "s" / "test", check_images=False)[0]
    assert test_ids.tolist() == held[4:].tolist()
    read_dataset(tmp_path / "s" / "train", tmp_path / "s" / "test")


def test_split_is_deterministic_and_replaces_its_output(synthetic, tmp_path):
    out = tmp_path / "split"
    split_holdout(synthetic, out, seed=3)
    first = (out / "test" / "test.csv").read_text(), (out / "train" / "labels.csv").read_text()
    split_holdout(synthetic, out, seed=3)  # replaces its own previous output
    assert (
        (out / "test" / "test.csv").read_text(),
        (out / "train" / "labels.csv").read_text(),
    ) == first
    split_holdout(synthetic, tmp_path / "other", seed=4)
    assert (tmp_path / "other" / "test" / "test.csv").read_text() != first[0]
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))


def test_split_errors(synthetic, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        split_holdout(synthetic, tmp_path / "s", fraction=1.0)
    with pytest.raises(ValueError, match="overlap"):
        split_holdout(synthetic, synthetic / "split")
    with pytest.raises(FileNotFoundError, match="labels.csv does not exist"):
        (tmp_path / "empty").mkdir()
        split_holdout(tmp_path / "empty", tmp_path / "s2")
    assert split_data.main(["--src", str(tmp_path / "none"), "--out", str(tmp_path / "s3")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert split_data.main(["--src", str(synthetic), "--out", str(tmp_path / "s4")]) == 0
    assert read_labels(tmp_path / "s4" / "train").labels == tuple(f"l{j}" for j in range(6))
