"""Odd input that is not an error (issue 27), through the real `make folds` CLI: a test
folder of GIF/JFIF images without test.csv, names that differ only in Unicode form,
copies of one photo with conflicting labels; and a file the pipeline may not read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.data.contract import IMAGE_EXTENSIONS, read_test_ids
from pipeline.runtime.images import decode_image
from tests.conftest import ROOT, run_stage
from tests.reliability.test_bad_input import _copy, _img, _labels, _set_labels


def _folds(root: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    r = run_stage("folds", "--config", root / "c.toml", "--out", out, *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_test_folder_without_csv_takes_every_extension_the_decoder_reads(good, tmp_path):
    """.gif, .GIF, .jfif, .jpe and .pgm test images, unlisted, are all listed and decoded;
    an id written without extension resolves to a .GIF the same way."""
    root = _copy(good, tmp_path)
    (root / "test" / "test.csv").unlink()
    images = root / "test" / "images"
    rng = np.random.default_rng(7)
    made = {}
    for name, fmt in [
        ("a.gif", "GIF"),
        ("b.GIF", "GIF"),
        ("c.jfif", "JPEG"),
        ("d.jpe", "JPEG"),
        ("e.pgm", "PPM"),
    ]:
        pixels = rng.integers(0, 255, (12, 10, 3), np.uint8)
        im = Image.fromarray(pixels)
        (im.convert("L") if name.endswith(".pgm") else im).save(images / name, format=fmt)
        made[name] = pixels
    ids, _ = read_test_ids(root / "test")
    assert sorted(made) + [f"test_{i:03d}.png" for i in range(5)] == sorted(ids.tolist())
    for name in made:
        assert decode_image(images / name).shape == (12, 10, 3)
    _folds(root, tmp_path / "folds.csv")  # the stage decodes every test image

    (root / "test" / "test.csv").write_text("image\nb\nc\ntest_000\n")  # listed, no extension
    ids, folder = read_test_ids(root / "test")
    assert ids.tolist() == ["b", "c", "test_000"]
    _folds(root, tmp_path / "folds2.csv")


def test_every_listed_extension_decodes(tmp_path):
    """The one extension list holds only what decode_image reads (and can size from the
    header): each one, written in its format, decodes to the same picture size."""
    from pipeline.runtime.images import image_header

    img = np.random.default_rng(0).integers(0, 255, (40, 32, 3), np.uint8)
    for ext in IMAGE_EXTENSIONS:
        path = tmp_path / f"x{ext}"
        if cv2.haveImageWriter(str(path)):
            assert cv2.imwrite(str(path), img[..., 0] if ext in (".pbm", ".pgm") else img), ext
        else:  # .jfif: a JPEG under another name
            Image.fromarray(img).save(path, format="JPEG")
        assert decode_image(path).shape == (40, 32, 3), ext
        assert image_header(path)[:2] == (32, 40), ext


def test_unicode_normalisation_is_resolved_with_a_warning(good, tmp_path):
    """A file stored under the NFD spelling (as macOS writes names) of an id written in NFC
    is matched, said in one warning; the folds file keeps the id as written."""
    root = _copy(good, tmp_path)
    nfc, nfd = (
        unicodedata.normalize("NFC", "café_3.png"),
        unicodedata.normalize("NFD", "café_3.png"),
    )
    assert nfc != nfd
    _img(root, "train", 3).rename(root / "train" / "images" / nfd)
    lines = _labels(root)
    lines[4] = ",".join([nfc, *lines[4].split(",")[1:]])
    _set_labels(root, lines)
    r = _folds(root, tmp_path / "folds.csv")
    warning = [line for line in r.stderr.splitlines() if "Unicode normalisation" in line]
    assert len(warning) == 1 and "WARNING" in warning[0], r.stderr[-2000:]
    assert repr(nfc) in warning[0] and repr(nfd) in warning[0]
    folds = pd.read_csv(tmp_path / "folds.csv", dtype=str)
    assert folds["image"].iloc[3] == nfc


def test_conflicting_labels_of_copies_are_a_warning_with_the_ids(good, tmp_path):
    """Two exact copies labelled differently: `make folds` warns with their ids, the count
    and the labels that differ; the data report (`make data-checks`) lists the group."""
    root = _copy(good, tmp_path)
    shutil.copy(_img(root, "train", 5), _img(root, "train", 11))
    shutil.copy(_img(root, "train", 2), _img(root, "train", 16))
    lines = _labels(root)
    for row, src in ((12, 6), (17, 3)):  # flip lab0 of the copy
        cells = lines[src].split(",")
        cells[0] = lines[row].split(",")[0]
        cells[1] = "1" if cells[1] == "0" else "0"
        lines[row] = ",".join(cells)
    _set_labels(root, lines)
    report = tmp_path / "data_report.json"
    r = _folds(root, tmp_path / "folds.csv")
    checks = run_stage(
        "data_checks",
        "--config",
        root / "c.toml",
        "--folds",
        tmp_path / "folds.csv",
        "--out",
        report,
    )
    assert checks.returncode == 0, checks.stderr[-2000:]
    warning = [line for line in r.stderr.splitlines() if "conflicting labels, e.g." in line]
    assert len(warning) == 1 and "WARNING" in warning[0], r.stderr[-2000:]
    assert "2 group(s) of copies of one photo (2 exact)" in warning[0]
    assert "'train_002.png' = 'train_016.png' (lab0)" in warning[0]
    assert "'train_005.png' = 'train_011.png' (lab0)" in warning[0]
    info = json.loads(report.read_text())
    assert info["train_groups"]["with_conflicting_labels"] == 2
    assert {"ids": ["train_005.png", "train_011.png"], "labels": ["lab0"], "exact": True} in info[
        "conflicting_labels"
    ]


def _as_nobody() -> list[str]:
    """A command prefix that drops root (root reads a chmod-000 file regardless)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_unreadable_image_is_named(good):
    """A training image without read permission: exit 2, one error naming the row, the
    file and the fix (not a traceback), no output."""
    work = Path(tempfile.mkdtemp(prefix="odd-input-"))  # outside root's 0700 pytest folder
    try:
        os.chmod(work, 0o777)
        root = _copy(good, work)
        for d, _, files in os.walk(work):
            os.chmod(d, 0o777)
            for f in files:
                os.chmod(Path(d) / f, 0o644)
        _img(root, "train", 6).chmod(0)
        out = work / "out" / "folds.csv"
        env = {**os.environ, "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [*_as_nobody(), sys.executable, "-m", "stages.folds"]
        r = subprocess.run(
            [*cmd, "--config", str(root / "c.toml"), "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert r.returncode == 2, r.stderr[-2000:]
        message = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(message) == 1, r.stderr[-2000:]
        assert "labels.csv row 8: image 'train_006.png'" in message[0]
        assert "cannot be read (Permission denied): make it readable (chmod a+r)" in message[0]
        assert not out.exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)
