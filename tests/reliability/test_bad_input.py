"""Bad input: non-zero exit, one message naming the file and the row or key, no output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import run_stage, tiny_config_text, train_args, write_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    write_dataset(root, n_train=20, n_test=5, size=16)
    (root / "c.toml").write_text(tiny_config_text(root))
    return root


def _copy(good: Path, tmp: Path) -> Path:
    shutil.copytree(good, tmp / "d")
    cfg = (good / "c.toml").read_text().replace(str(good), str(tmp / "d"))
    (tmp / "d" / "c.toml").write_text(cfg)
    return tmp / "d"


def _labels(root: Path) -> list[str]:
    return (root / "train" / "labels.csv").read_text().splitlines()


def _set_labels(root: Path, lines: list[str]) -> None:
    (root / "train" / "labels.csv").write_text("\n".join(lines) + "\n")


def _edit_cell(root, row, col, value):
    lines = _labels(root)
    cells = lines[row].split(",")
    cells[col] = value
    lines[row] = ",".join(cells)
    _set_labels(root, lines)


def _img(root, split, i):
    return root / split / "images" / f"{split}_{i:03d}.png"


def _leak_train_into_test(root):
    (root / "test" / "test.csv").write_text("image\ntrain_000.png\n")
    shutil.copy(_img(root, "train", 0), root / "test" / "images" / "train_000.png")


CASES = {
    # name: (mutation, expected message fragments)
    "labels.csv missing": (
        lambda r: (r / "train" / "labels.csv").unlink(),
        ["labels.csv does not exist"],
    ),
    "labels.csv empty": (
        lambda r: (r / "train" / "labels.csv").write_text(""),
        ["labels.csv is empty"],
    ),
    "header only": (lambda r: _set_labels(r, _labels(r)[:1]), ["header but no rows"]),
    "duplicate id": (
        lambda r: _set_labels(r, _labels(r) + [_labels(r)[1]]),
        ["row 22", "duplicate image id 'train_000.png'", "first at row 2"],
    ),
    "id without image": (
        lambda r: _img(r, "train", 3).unlink(),
        ["row 5", "train_003.png", "not found"],
    ),
    "label value 2": (lambda r: _edit_cell(r, 4, 2, "2"), ["row 5", "column 'lab1'", "'2'"]),
    "label value yes": (lambda r: _edit_cell(r, 7, 1, "yes"), ["row 8", "column 'lab0'", "'yes'"]),
    "label value nan": (lambda r: _edit_cell(r, 2, 3, "nan"), ["row 3", "'nan'"]),
    "empty label column": (
        lambda r: _set_labels(
            r,
            [
                ",".join(line.split(",")[:4] + [""]) if i else line
                for i, line in enumerate(_labels(r))
            ],
        ),
        ["label column 'lab3' is empty"],
    ),
    "no image column": (
        lambda r: _set_labels(r, ["file" + _labels(r)[0][5:]] + _labels(r)[1:]),
        ["no 'image' column"],
    ),
    "empty id": (lambda r: _edit_cell(r, 3, 0, ""), ["row 4", "empty 'image'"]),
    "unnamed label column": (
        lambda r: _set_labels(r, [_labels(r)[0] + ","] + [line + ",1" for line in _labels(r)[1:]]),
        ["a label column has no name"],
    ),
    "zero-byte image": (
        lambda r: _img(r, "train", 6).write_bytes(b""),
        ["row 8", "train_006.png", "empty, truncated"],
    ),
    "truncated image": (
        lambda r: _img(r, "train", 2).write_bytes(_img(r, "train", 2).read_bytes()[:40]),
        ["row 4", "train_002.png"],
    ),
    "text file as image": (
        lambda r: _img(r, "train", 9).write_text("hello"),
        ["row 11", "train_009.png"],
    ),
    "test image missing": (
        lambda r: _img(r, "test", 1).unlink(),
        ["test.csv row 3", "test_001.png"],
    ),
    "test id in train": (
        _leak_train_into_test,
        ["appear in both", "train_000.png"],
    ),
    "no test set": (lambda r: shutil.rmtree(r / "test"), ["neither test.csv nor images/"]),
    "unknown config key": (
        lambda r: (r / "c.toml").write_text(
            (r / "c.toml").read_text().replace("n_folds = 3", "n_fold = 3", 1)
        ),
        ["c.toml", "unknown key folds.'n_fold'"],
    ),
    "config wrong type": (
        lambda r: (r / "c.toml").write_text(
            (r / "c.toml").read_text().replace("n_folds = 3", 'n_folds = "3"', 1)
        ),
        ["c.toml", "folds.n_folds must be an integer"],
    ),
    "config out of range": (
        lambda r: (r / "c.toml").write_text(
            (r / "c.toml").read_text().replace("n_folds = 3", "n_folds = 1", 1)
        ),
        ["c.toml", "folds.n_folds = 1 is outside"],
    ),
    "config bad choice": (
        lambda r: (r / "c.toml").write_text(
            (r / "c.toml").read_text().replace("seed = 1", 'seed = 1\nloss = "hinge"', 1)
        ),
        ["train.loss = 'hinge'", "choose one of"],
    ),
    "config not toml": (lambda r: (r / "c.toml").write_text("[data\n"), ["c.toml: not valid TOML"]),
    "config missing": (lambda r: (r / "c.toml").unlink(), ["c.toml does not exist"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_folds_stage_rejects(name, good, tmp_path):
    root = _copy(good, tmp_path)
    mutate, fragments = CASES[name]
    mutate(root)
    out = tmp_path / "out" / "folds.csv"
    r = run_stage("folds", "--config", root / "c.toml", "--out", out)
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    message = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1, r.stderr[-1500:]
    for fragment in fragments:
        assert fragment in message[0], (fragment, message[0])
    assert not out.exists()
    assert not list(out.parent.glob("*")) if out.parent.exists() else True


def test_odd_images_and_headers_are_accepted(good, tmp_path):
    """Grayscale, RGBA and 16-bit images are converted; BOM/CRLF/spaces in headers are fine."""
    root = _copy(good, tmp_path)
    cv2.imwrite(str(_img(root, "train", 0)), np.full((16, 16), 90, np.uint8))
    cv2.imwrite(str(_img(root, "train", 1)), np.full((16, 16, 4), 90, np.uint8))
    cv2.imwrite(str(_img(root, "train", 2)), np.full((16, 16, 3), 40000, np.uint16))
    lines = _labels(root)
    lines[0] = "\ufeff" + " , ".join(lines[0].split(","))
    (root / "train" / "labels.csv").write_bytes("\r\n".join(lines).encode("utf-8") + b"\r\n")
    out = tmp_path / "folds.csv"
    r = run_stage("folds", "--config", root / "c.toml", "--out", out)
    assert r.returncode == 0, r.stderr[-1500:]
    assert out.read_text().count("\n") == 21


def test_unwritable_output_and_full_disk(good, tmp_path, monkeypatch, capsys):
    import errno

    from stages import folds

    root = _copy(good, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert folds.main(["--config", str(root / "c.toml"), "--out", str(blocker / "f.csv")]) == 2
    assert "error:" in capsys.readouterr().err

    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", full_disk)
    out = tmp_path / "o" / "f.csv"
    assert folds.main(["--config", str(root / "c.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "f.csv" in err
    monkeypatch.setattr(os, "replace", real_replace)
    assert not list((tmp_path / "o").iterdir())  # no temp file left behind


def test_unknown_backbone_is_named(good, tmp_path):
    root = _copy(good, tmp_path)
    cfg = (root / "c.toml").read_text().replace('name = "small_cnn"', 'name = "resnet5"')
    (root / "c.toml").write_text(cfg)
    assert run_stage("folds", "--config", root / "c.toml", "--out", root / "f.csv").returncode == 0
    r = run_stage(
        "train_cnn",
        *train_args(root / "c.toml", "resnet5", root / "f.csv", tmp_path / "w", tmp_path / "p.npz"),
    )
    assert r.returncode == 2
    assert "unknown backbone 'resnet5'" in r.stderr and "mobilenet_v2" in r.stderr
    assert not (tmp_path / "p.npz").exists()


def test_folds_file_that_does_not_match(good, tmp_path):
    root = _copy(good, tmp_path)
    (root / "f.csv").write_text("image,fold\ntrain_000.png,0\n")
    r = run_stage(
        "train_cnn",
        *train_args(
            root / "c.toml", "small_cnn", root / "f.csv", tmp_path / "w", tmp_path / "p.npz"
        ),
    )
    assert r.returncode == 2
    assert "f.csv does not match labels.csv" in r.stderr and "make folds" in r.stderr
