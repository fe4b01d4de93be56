"""No OOF leakage, structurally: for every fold job, the rows it trains on (originals and
augmented copies) never include a row it predicts as OOF, nor any test image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from tests.conftest import run_stage, tiny_demo_config


@pytest.fixture(scope="module")
def augmented_demo(tmp_path_factory):
    from pipeline.demo import generate

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
    from pipeline.train import build_job

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
