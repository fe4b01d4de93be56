"""Shared fixtures: tiny data sets written by the tests themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def write_dataset(root: Path, n_train=60, n_test=12, size=32, n_labels=4, seed=0):
    """Coloured-square images whose labels are visible: label j paints quadrant j."""
    import cv2

    rng = np.random.default_rng(seed)
    prev = np.linspace(0.5, 0.15, n_labels)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            y = (rng.random(n_labels) < prev).astype(int)
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            h = size // 2
            for j in range(n_labels):
                if y[j]:
                    r, c = divmod(j % 4, 2)
                    img[r * h : (r + 1) * h, c * h : (c + 1) * h] = (40 + 50 * j, 200, 90)
            name = f"{split}_{i:03d}.png"
            cv2.imwrite(str(root / split / "images" / name), img)
            rows.append([name, *y])
        df = pd.DataFrame(rows, columns=["image", *[f"lab{j}" for j in range(n_labels)]])
        out[split] = df
    out["train"].to_csv(root / "train" / "labels.csv", index=False)
    out["test"][["image"]].to_csv(root / "test" / "test.csv", index=False)
    out["test"].to_csv(root / "test_truth.csv", index=False)
    return out


@pytest.fixture
def tiny_data(tmp_path):
    write_dataset(tmp_path)
    return tmp_path


def tiny_config_text(root: Path, epochs: int = 2, backbones=("small_cnn",), size=32) -> str:
    bb = "\n".join(
        f'[[train.backbones]]\nname = "{b}"\nwidth = 8\nepochs = {epochs}\nbatch_size = 16\n'
        f"head_units = 16\n"
        for b in backbones
    )
    return f"""
name = "tiny"
[data]
train_dir = "{root}/train"
test_dir = "{root}/test"
test_truth = "{root}/test_truth.csv"
image_size = {size}
[folds]
n_folds = 3
[train]
seed = 1
{bb}
[stack]
top_n = 3
n_folds = 3
eta = [0.1]
max_depth = [2]
min_child_weight = [1]
n_estimators = 50
early_stopping_rounds = 10
"""


def run_stage(module: str, *args, timeout: int = 300, env=None) -> subprocess.CompletedProcess:
    """``python -m stages.<module> args...`` from the repo root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", f"stages.{module}", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def train_args(config, backbone, folds, work_dir, out, fold=0) -> list:
    """The train_cnn CLI arguments of one fold job."""
    return [
        "--config",
        config,
        "--backbone",
        backbone,
        "--fold",
        fold,
        "--folds",
        folds,
        "--work-dir",
        work_dir,
        "--out",
        out,
    ]
