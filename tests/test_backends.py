"""The model, losses and feed use keras.ops only: the same training runs on JAX."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tiny_config_text, write_dataset

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, keras
from pipeline.config.schema import load_config
from pipeline.data.contract import read_labels
from pipeline.data.folds import make_folds
import pandas as pd
from stages.train_cnn import run
root = sys.argv[1]
cfg = load_config(f"{root}/c.toml")
t = read_labels(cfg.data.train_dir)
pd.DataFrame({"image": t.ids, "fold": make_folds(t.y, 3, 0)}).to_csv(f"{root}/f.csv", index=False)
run(cfg, "small_cnn", 0, f"{root}/f.csv", f"{root}/w", f"{root}/p.npz")
print("BACKEND", keras.backend.backend())
"""


@pytest.mark.slow
def test_training_runs_on_jax(tmp_path):
    pytest.importorskip("jax")
    write_dataset(tmp_path, n_train=30, n_test=6)
    (tmp_path / "c.toml").write_text(tiny_config_text(tmp_path, epochs=1))
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BACKEND jax" in r.stdout
    with np.load(tmp_path / "p.npz") as z:
        assert z["oof"].shape[:2] == (1, 10)
        assert np.isfinite(z["oof"]).all() and np.isfinite(z["loss"]).all()
