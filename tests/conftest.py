"""Shared fixtures: tiny data sets written by the tests themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
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


def tiny_demo_config(tmp: Path) -> Path:
    text = (ROOT / "configs" / "demo.toml").read_text()
    for old, new in [
        ('out_dir = "data/demo"', f'out_dir = "{tmp}/demo"'),
        ('train_dir = "data/demo/train"', f'train_dir = "{tmp}/demo/train"'),
        ('test_dir = "data/demo/test"', f'test_dir = "{tmp}/demo/test"'),
        ('test_truth = "data/demo/test_truth.csv"', f'test_truth = "{tmp}/demo/test_truth.csv"'),
        ("n_train = 2400", "n_train = 200"),
        ("n_test = 600", "n_test = 40"),
        ("image_size = 64", "image_size = 32"),
        ("\nsize = 64", "\nsize = 32"),
        ("n_folds = 5\nseed = 42", "n_folds = 3\nseed = 42"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    text = text.replace("epochs = 6", "epochs = 2")
    # tests train from scratch: the frozen member embeds with random (seeded) weights
    text = text.replace(
        'backbone = "mobilenet_v2_pt"\nimage_size = 128',
        'backbone = "small_cnn"\nweights = "none"\nimage_size = 32',
    )
    path = tmp / "tiny_demo.toml"
    path.write_text(text)
    return path


def make(tmp: Path, cfg: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        "make",
        *args,
        f"CONFIG={cfg}",
        f"BUILD={tmp}/build",
        f"FOLDS={tmp}/folds.csv",
        f"SUBMISSIONS={tmp}/submissions",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


@dataclass(frozen=True)
class TinyRun:
    """A finished ``make all`` on the tiny demo: its folder and config file."""

    root: Path
    config: Path

    @property
    def build(self) -> Path:
        return self.root / "build"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> TinyRun:
    """One real ``make all export`` on the tiny demo, shared by the e2e, predict, export and
    serve tests (they only read it)."""
    reuse = os.environ.get("TINY_DEMO_DIR")  # developers: reuse a finished run's folder
    if reuse and (Path(reuse) / "build" / "export" / "manifest.json").is_file():
        return TinyRun(Path(reuse), Path(reuse) / "tiny_demo.toml")
    root = tmp_path_factory.mktemp("tiny_demo")
    cfg = tiny_demo_config(root)
    run = make(root, cfg, "all", "export")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return TinyRun(root, cfg)


def tiny_test_images(run: TinyRun, n: int) -> tuple[list[str], list[Path]]:
    """The first ``n`` test images of a tiny run: ids and files."""
    from pipeline.data.contract import image_paths

    ids = pd.read_csv(run.root / "demo" / "test" / "test.csv", dtype={"image": str})
    ids = ids["image"].tolist()[:n]
    return ids, list(image_paths(ids, run.root / "demo" / "test" / "images"))


@pytest.fixture(scope="session")
def tiny_predictor(tiny_demo):
    """The build-tree Keras predictor of the tiny run (what the export is checked against)."""
    from pipeline.config.schema import load_config
    from pipeline.predict import Predictor

    return Predictor(load_config(tiny_demo.config), tiny_demo.build)
