"""stack and augment killed with SIGKILL at a random point leave either no artifact or a
complete one, and rerunning them gives exactly the outputs of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_stage
from tests.test_e2e import tiny_demo_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from pipeline.demo.dataset import generate

    tmp = tmp_path_factory.mktemp("killdemo")
    cfg = tiny_demo_config(tmp)
    generate(tmp / "demo", n_train=200, n_test=40, size=32, seed=0)
    r = run_stage("folds", "--config", cfg, "--out", tmp / "folds.csv")
    assert r.returncode == 0, r.stderr
    return tmp, cfg


def _fake_preds(tmp: Path, out_dir: Path) -> list[Path]:
    """Per-epoch prediction files for two fake backbones, in the CNN format."""
    from pipeline.artifacts import save_npz_atomic
    from pipeline.data.contract import read_labels, read_test_ids

    table = read_labels(tmp / "demo" / "train")
    test_ids, _ = read_test_ids(tmp / "demo" / "test")
    folds = pd.read_csv(tmp / "folds.csv")["fold"].to_numpy()
    rng = np.random.default_rng(0)
    files = []
    for b in ("a", "b"):
        for k in range(folds.max() + 1):
            va = folds == k
            y = np.nan_to_num(table.y[va])
            oof = np.clip(y[None] * 0.6 + rng.random((2, *y.shape)) * 0.5, 0, 1)
            test = rng.random((2, len(test_ids), y.shape[1]))
            path = out_dir / f"{b}.fold{k}.npz"
            save_npz_atomic(
                path,
                labels=np.array(table.labels),
                val_ids=table.ids[va],
                test_ids=test_ids,
                epochs=np.array([1, 2]),
                oof=oof.astype(np.float32),
                test=test.astype(np.float32),
                loss=np.zeros(2, np.float32),
            )
            files.append(path)
    return files


def _kill_then_rerun(cmd: list[str], out: Path, delay: float) -> None:
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if out.exists():  # finished before the kill: must be complete
        assert out.stat().st_size > 0
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 3.0])
def test_stack_killed_then_rerun_matches(demo, tmp_path, delay):
    tmp, cfg = demo
    preds = _fake_preds(tmp, tmp_path / "preds")

    def cmd(out):
        args = ["--config", cfg, "--preds", *preds, "--out", out]
        return [sys.executable, "-m", "stages.stack", *map(str, args)]

    killed, clean = tmp_path / "k" / "stacked.npz", tmp_path / "c" / "stacked.npz"
    _kill_then_rerun(cmd(killed), killed, delay)
    subprocess.run(cmd(clean), cwd=ROOT, check=True, capture_output=True, timeout=600)
    with np.load(killed) as a, np.load(clean) as b:
        for key in ("oof", "test", "y"):
            np.testing.assert_array_equal(a[key], b[key])
    assert (killed.parent / "selection.json").read_text() == (
        clean.parent / "selection.json"
    ).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 4.0])
def test_augment_killed_then_rerun_matches(demo, tmp_path, delay):
    tmp, cfg = demo

    def cmd(out_dir):
        args = [
            "--config",
            cfg,
            "--folds",
            tmp / "folds.csv",
            "--out-dir",
            out_dir,
            "--no-progress",
        ]
        return [sys.executable, "-m", "stages.augment", *map(str, args)]

    killed, clean = tmp_path / "k", tmp_path / "c"
    _kill_then_rerun(cmd(killed), killed / "labels.csv", delay)
    subprocess.run(cmd(clean), cwd=ROOT, check=True, capture_output=True, timeout=600)
    a = pd.read_csv(killed / "labels.csv")
    b = pd.read_csv(clean / "labels.csv")
    pd.testing.assert_frame_equal(a, b)
    for name in b["image"]:
        assert (killed / "images" / name).read_bytes() == (clean / "images" / name).read_bytes()
