"""A train-cnn job killed with SIGKILL mid-run restarts at its last finished epoch and
ends with exactly the predictions of an uninterrupted run."""

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

from tests.conftest import tiny_config_text, train_args, write_dataset

ROOT = Path(__file__).resolve().parents[2]


def _cmd(root: Path, work: str, out: str) -> list[str]:
    args = train_args(root / "c.toml", "small_cnn", root / "f.csv", root / work, root / out)
    return [sys.executable, "-m", "stages.train_cnn", *map(str, args)]


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_matches(tmp_path):
    from pipeline.data.contract import read_labels
    from pipeline.data.folds import make_folds

    write_dataset(tmp_path, n_train=60, n_test=10)
    (tmp_path / "c.toml").write_text(tiny_config_text(tmp_path, epochs=3))
    t = read_labels(tmp_path / "train")
    pd.DataFrame({"image": t.ids, "fold": make_folds(t.y, 3, 0)}).to_csv(
        tmp_path / "f.csv", index=False
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    proc = subprocess.Popen(
        _cmd(tmp_path, "w", "p.npz"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not list((tmp_path / "w").glob("ckpt_epoch001.keras")):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "p.npz").exists()  # no output from a killed job
    leftovers = [p.name for p in (tmp_path / "w").iterdir() if ".tmp-" in p.name]
    done_epochs = sorted(p.name for p in (tmp_path / "w").glob("ckpt_epoch*.keras"))
    assert done_epochs and done_epochs[-1] in ("ckpt_epoch001.keras", "ckpt_epoch002.keras")

    rerun = subprocess.run(
        _cmd(tmp_path, "w", "p.npz"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming after epoch" in rerun.stderr
    clean = subprocess.run(
        _cmd(tmp_path, "w2", "q.npz"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert clean.returncode == 0, clean.stderr[-2000:]
    with np.load(tmp_path / "p.npz") as a, np.load(tmp_path / "q.npz") as b:
        for key in ("oof", "test", "loss", "val_ids"):
            np.testing.assert_array_equal(a[key], b[key])
    # a temp file the kill interrupted is never mistaken for a checkpoint
    for name in leftovers:
        assert not name.startswith("ckpt_epoch")
