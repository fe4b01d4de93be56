"""No OOF leakage, structurally: for every fold job, the rows it trains on (originals and
augmented copies) never include a row it predicts as OOF, nor any test image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config.schema import load_config
from tests.conftest import run_stage, tiny_demo_config


@pytest.fixture(scope="module")
def augmented_demo(tmp_path_factory):
    from pipeline.demo.dataset import generate

    tmp = tmp_path_factory.mktemp("leak")
    cfg = tiny_demo_config(tmp)
    generate(tmp / "demo", n_train=200, n_test=40, size=32, seed=1)
    assert run_stage("folds", "--config", cfg, "--out", tmp / "folds.csv").returncode == 0
    r = run_stage(
        "augment",
        "--config",
        cfg,
        "--folds",
        tmp / "folds.csv",
        "--out-dir",
        tmp / "aug",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    return tmp, cfg


def test_fold_jobs_never_train_on_what_they_predict(augmented_demo):
    from pipeline.train.job import build_job

    tmp, cfg_path = augmented_demo
    cfg = load_config(cfg_path)
    aug = pd.read_csv(tmp / "aug" / "labels.csv")
    assert len(aug) > 0, "the tiny demo must produce augmented copies for this test"
    source_of = dict(zip(aug["image"], aug["source"], strict=True))
    held_out, copies_seen = [], 0
    for fold in range(cfg.folds.n_folds):
        job = build_job(cfg, "small_cnn", fold, tmp / "folds.csv", tmp / "aug" / "labels.csv")
        val = {p.name for p in job.val_paths}
        originals = {p.name for p in job.train_paths if p.name not in source_of}
        copies = [p.name for p in job.train_paths if p.name in source_of]
        copies_from = {source_of[name] for name in copies}
        copies_seen += len(copies)
        assert not val & originals  # no validation image in training
        assert not val & copies_from  # no copy of a validation image in training
        assert not set(map(str, job.test_ids)) & (originals | val)
        assert len(job.train_y) == len(job.train_paths)
        held_out += list(job.val_ids)
    ids = pd.read_csv(tmp / "demo" / "train" / "labels.csv")["image"].astype(str)
    assert sorted(held_out) == sorted(ids)  # every row is OOF exactly once
    # each copy trains exactly the K-1 folds its source is not validated in
    assert copies_seen == len(aug) * (cfg.folds.n_folds - 1)
    assert np.isin(aug["source"], ids).all()


def test_no_fold_job_trains_on_a_copy_of_what_it_predicts(tmp_path):
    """Copies of one photo (same bytes, or a re-encoded near copy) under different ids share
    a fold, so no fold job trains on the bytes or the near copy of an image it predicts;
    a test image that is a copy of a training image stops `make folds`."""
    import shutil

    import cv2

    from pipeline.data.contract import file_digests
    from pipeline.train.job import build_job
    from tests.conftest import tiny_config_text, write_dataset

    write_dataset(tmp_path, n_train=60, n_test=8, size=32)
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(tiny_config_text(tmp_path))
    images = tmp_path / "train" / "images"
    labels = pd.read_csv(tmp_path / "train" / "labels.csv", dtype=str)
    rows = []
    for k, (a, b) in enumerate([(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]):
        src, dst = f"train_{a:03d}.png", f"train_{b:03d}.png"
        if k < 3:
            shutil.copy(images / src, images / dst)  # exact copy, its own id and labels
        else:  # a slightly blurred copy of a smooth photo: near, not the same bytes
            blobs = np.random.default_rng(k).integers(0, 256, (5, 5, 3), np.uint8)
            photo = cv2.resize(blobs, (32, 32), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(images / src), photo)
            cv2.imwrite(str(images / dst), cv2.GaussianBlur(photo, (3, 3), 0.6))
        rows.append((src, dst))
    labels.to_csv(tmp_path / "train" / "labels.csv", index=False)
    r = run_stage("folds", "--config", cfg_path, "--out", tmp_path / "folds.csv")
    assert r.returncode == 0, r.stderr[-1500:]
    cfg = load_config(cfg_path)
    folds = pd.read_csv(tmp_path / "folds.csv", dtype=str).set_index("image")["fold"]
    for src, dst in rows:
        assert folds[src] == folds[dst], (src, dst)
    pairs = dict(rows)
    for fold in range(cfg.folds.n_folds):
        job = build_job(cfg, "small_cnn", fold, tmp_path / "folds.csv")
        val = {p.name for p in job.val_paths}
        train = {p.name for p in job.train_paths}
        assert not set(file_digests(job.val_paths)) & set(file_digests(job.train_paths))
        assert not {pairs[v] for v in val if v in pairs} & train
    # a test image that is a training image under another name is refused
    shutil.copy(images / "train_020.png", tmp_path / "test" / "images" / "renamed.png")
    (tmp_path / "test" / "test.csv").write_text("image\nrenamed.png\n")
    r = run_stage("folds", "--config", cfg_path, "--out", tmp_path / "f2.csv")
    assert r.returncode == 2 and "same bytes as train image 'train_020.png'" in r.stderr
    assert not (tmp_path / "f2.csv").exists()
