"""A competition folder end to end: no test labels, pixels replaced in place, test images
that copy training images (mirrored too), image names Make cannot spell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import pytest

from tests.conftest import make, run_stage, tiny_config_text, tiny_demo_config, write_dataset

ROOT = Path(__file__).resolve().parents[2]


def _no_truth_config(tmp: Path) -> Path:
    cfg = tiny_demo_config(tmp)
    text = cfg.read_text()
    line = f'test_truth = "{tmp}/demo/test_truth.csv"\n'
    assert line in text
    cfg.write_text(text.replace(line, ""))
    return cfg


def _serve(cfg: Path, build: Path, log: Path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stages.serve", "--config", str(cfg), "--build", str(build)]
            + ["--port", str(port)],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the page exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/", timeout=5) as r:
                if r.status == 200:
                    return proc, url, r.read().decode()
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the page did not answer in 300 s:\n{log.read_text()[-3000:]}")
        time.sleep(1)


@pytest.mark.slow
def test_no_test_labels_make_all_report_predict_and_page(tmp_path):
    """A config without data.test_truth runs `make all`; the report says held-out scores
    need labels and scores similarity on a held-out training fold; `make predict` and the
    page work."""
    cfg = _no_truth_config(tmp_path)
    run = make(tmp_path, cfg, "all")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    build = tmp_path / "build"
    metrics = json.loads((build / "report" / "metrics.json").read_text())
    assert "intervals" not in metrics and "summary" not in metrics
    assert metrics["models"]["vote"]["oof_fbeta_macro"] > 0.3
    assert metrics["similarity"]["queries"] == "held-out training fold 0 (no test labels)"
    folds = (tmp_path / "folds.csv").read_text().splitlines()[1:]
    assert metrics["similarity"]["n_queries"] == sum(r.endswith(",0") for r in folds)
    html = (build / "report" / "index.html").read_text()
    assert "No test labels" in html and "Held-out test scores" in html
    assert make(tmp_path, cfg, "-q", "all").returncode == 0  # nothing left to do

    image = sorted((tmp_path / "demo" / "test" / "images").iterdir())[0]
    pred = make(tmp_path, cfg, "predict", f"IMAGE={image}")
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert image.name in pred.stdout

    proc, url, page = _serve(cfg, build, tmp_path / "serve.log")
    try:
        assert "<form" in page and "No test labels" in page
        assert "<h2>Data checks</h2>" in page and "test images that copy a training" in page
        from pipeline.serve import post_images

        got = post_images(url, [(image.name, image.read_bytes())], timeout=120)
        assert set(got["scores"]) == set(metrics["labels"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _tiny(tmp: Path) -> Path:
    write_dataset(tmp, n_train=24, n_test=6, size=16)
    cfg = tmp / "c.toml"
    cfg.write_text(tiny_config_text(tmp, epochs=1))
    return cfg


def _data_checks(tmp: Path, cfg: Path) -> dict:
    folds = tmp / "folds.csv"
    r = run_stage("folds", "--config", cfg, "--out", folds)
    assert r.returncode == 0, r.stderr[-2000:]
    report = tmp / "data_report.json"
    r = run_stage("data_checks", "--config", cfg, "--folds", folds, "--out", report)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(report.read_text()) | {"log": r.stderr}


def test_a_mirrored_or_reencoded_copy_of_a_training_image_in_the_test_set_is_reported(
    tmp_path,
):
    """A test image that is a training image flipped left-right, or the same pixels saved
    in another format, is a leak the data report names (the flipped one as mirrored)."""
    cfg = _tiny(tmp_path)
    assert _data_checks(tmp_path, cfg)["train_test_near_duplicates"]["count"] == 0
    train = tmp_path / "train" / "images"
    test = tmp_path / "test" / "images"
    img = cv2.imread(str(train / "train_003.png"))
    cv2.imwrite(str(test / "test_001.png"), img[:, ::-1])  # mirrored, same name as before
    cv2.imwrite(str(test / "test_004.bmp"), cv2.imread(str(train / "train_007.png")))
    (test / "test_004.png").unlink()
    csv = tmp_path / "test" / "test.csv"
    csv.write_text(csv.read_text().replace("test_004.png", "test_004.bmp"))
    info = _data_checks(tmp_path, cfg)
    pairs = {(p["test"], p["train"]): p for p in info["train_test_near_duplicates"]["pairs"]}
    assert set(pairs) == {("test_001.png", "train_003.png"), ("test_004.bmp", "train_007.png")}
    assert pairs[("test_001.png", "train_003.png")]["mirrored"] is True
    assert pairs[("test_004.bmp", "train_007.png")]["mirrored"] is False
    assert "2 test image(s) copy a training image" in info["log"]


def test_mirrored_training_copies_share_a_fold(tmp_path):
    cfg = _tiny(tmp_path)
    train = tmp_path / "train" / "images"
    img = cv2.imread(str(train / "train_002.png"))
    cv2.imwrite(str(train / "train_009.png"), img[:, ::-1])
    info = _data_checks(tmp_path, cfg)
    assert ["train_002.png", "train_009.png"] in info["groups"]
    rows = dict(r.split(",") for r in (tmp_path / "folds.csv").read_text().splitlines()[1:])
    assert rows["train_002.png"] == rows["train_009.png"]


def _swap_pixels(a: Path, b: Path) -> None:
    """Swap two files' contents, keeping each name's size and mtime."""
    sa, sb = a.stat(), b.stat()
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    os.utime(a, ns=(sa.st_atime_ns, sa.st_mtime_ns))
    os.utime(b, ns=(sb.st_atime_ns, sb.st_mtime_ns))


def test_digest_files_follow_contents_not_names_or_times(tmp_path):
    """The data manifest's digest files change when pixels change (a same-size rewrite
    with the old mtime too), not when a file is only touched; odd names are fine."""
    from pipeline.data.manifest import update_manifest

    write_dataset(tmp_path, n_train=6, n_test=3, size=16)
    train = tmp_path / "train" / "images"
    odd = train / "x:y $HOME (1).png"
    (train / "train_000.png").rename(odd)
    labels = tmp_path / "train" / "labels.csv"
    labels.write_text(labels.read_text().replace("train_000.png", '"x:y $HOME (1).png"'))
    out = tmp_path / "data"
    args = (out, str(tmp_path / "train"), str(tmp_path / "test"), str(tmp_path / "test_truth.csv"))
    first = update_manifest(*args)
    assert set(first) == {"train", "test", "truth"}
    stamps = {p: (out / f"{p}.digest").stat().st_mtime_ns for p in first}
    time.sleep(0.01)
    os.utime(train / "train_001.png")  # touched, same bytes
    assert update_manifest(*args) == first
    assert {p: (out / f"{p}.digest").stat().st_mtime_ns for p in first} == stamps
    # swap the pixels of two images, keeping names, sizes and mtimes
    _swap_pixels(train / "train_001.png", train / "train_002.png")
    second = update_manifest(*args)
    assert second["train"] != first["train"]
    assert second["test"] == first["test"] and second["truth"] == first["truth"]
    truth = tmp_path / "test_truth.csv"
    truth.write_text(truth.read_text().replace(",0\n", ",1\n", 1))
    assert update_manifest(*args)["truth"] != first["truth"]


def _fold_preds(build: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((build / "preds").glob("*.npz"))}


def _fingerprints(build: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (build / "cnn").glob("*/fingerprint.txt")}


@pytest.mark.slow
def test_a_pixel_swap_retrains_and_a_touch_does_not(tmp_path):
    """Through Make: replacing a training image's pixels under the same name (same mtime)
    re-trains the fold jobs and changes their predictions; touching an image re-runs
    nothing; names with spaces, ':' and '$' work in every target, and a stray symlink loop
    in images/ stops nothing."""
    write_dataset(tmp_path, n_train=24, n_test=6, size=16)
    train = tmp_path / "train" / "images"
    labels = tmp_path / "train" / "labels.csv"
    for old, new in (("train_000.png", "x:y.png"), ("train_001.png", "$HOME.png")):
        (train / old).rename(train / new)
        labels.write_text(labels.read_text().replace(old, new))
    (tmp_path / "test" / "images" / "test_000.png").rename(tmp_path / "test" / "images" / "a b.png")
    (train / "stray loop.png").symlink_to(train / "stray loop.png")  # unlisted: harmless
    test_csv = tmp_path / "test" / "test.csv"
    test_csv.write_text(test_csv.read_text().replace("test_000.png", '"a b.png"'))
    truth = tmp_path / "test_truth.csv"
    truth.write_text(truth.read_text().replace("test_000.png", '"a b.png"'))
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config_text(tmp_path, epochs=1, size=16))
    goal = "train-cnn"
    r = make(tmp_path, cfg, goal)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    before = _fold_preds(tmp_path / "build")
    prints = _fingerprints(tmp_path / "build")
    assert len(before) == 3 and len(prints) == 3
    assert make(tmp_path, cfg, "-q", goal).returncode == 0

    os.utime(train / "train_005.png")  # touched: nothing to do
    assert make(tmp_path, cfg, "-q", goal).returncode == 0

    _swap_pixels(train / "train_005.png", train / "train_006.png")
    assert make(tmp_path, cfg, "-q", goal).returncode != 0
    r = make(tmp_path, cfg, goal)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    after = _fold_preds(tmp_path / "build")
    assert set(after) == set(before)
    # every fold job is another job now (trained again); the folds whose training or
    # validation rows read the two images predict differently
    new_prints = _fingerprints(tmp_path / "build")
    assert all(new_prints[k] != prints[k] for k in prints)
    assert any(after[k] != before[k] for k in before)


@pytest.mark.slow
def test_a_replaced_test_image_is_predicted_again_not_trained(tmp_path):
    """Replacing one test image's pixels re-runs the fold jobs without training: the
    training fingerprints stay, the OOF predictions stay byte-identical, that image's test
    rows change, and the result equals a run trained from scratch on the new test set."""
    import shutil

    import numpy as np

    from pipeline.artifacts import load_fold_predictions

    write_dataset(tmp_path, n_train=24, n_test=6, size=16)
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config_text(tmp_path, epochs=2, size=16))
    r = make(tmp_path, cfg, "train-cnn")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    build = tmp_path / "build"
    prints = _fingerprints(build)
    before = {p.name: load_fold_predictions(p) for p in sorted((build / "preds").glob("*.npz"))}

    target = tmp_path / "test" / "images" / "test_002.png"
    shutil.copy(tmp_path / "test" / "images" / "test_004.png", target)
    r = make(tmp_path, cfg, "train-cnn")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "predicting it again with the weights of epochs [1, 2]" in r.stderr
    assert " epoch 1/2: loss" not in r.stderr  # nothing trained
    assert _fingerprints(build) == prints
    after = {p.name: load_fold_predictions(p) for p in sorted((build / "preds").glob("*.npz"))}
    for name, old in before.items():
        new = after[name]
        assert np.array_equal(new["oof"], old["oof"])
        row = list(new["test_ids"]).index("test_002.png")
        keep = [i for i in range(len(new["test_ids"])) if i != row]
        np.testing.assert_allclose(new["test"][:, keep], old["test"][:, keep], atol=1e-6)
        assert not np.allclose(new["test"][:, row], old["test"][:, row], atol=1e-6)
        np.testing.assert_allclose(new["test"][:, row], new["test"][:, 4], atol=1e-6)

    shutil.rmtree(build / "cnn")
    shutil.rmtree(build / "preds")
    r = make(tmp_path, cfg, "train-cnn")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for p in sorted((build / "preds").glob("*.npz")):
        fresh = load_fold_predictions(p)
        np.testing.assert_array_equal(fresh["oof"], after[p.name]["oof"])
        np.testing.assert_allclose(fresh["test"], after[p.name]["test"], atol=1e-6)
