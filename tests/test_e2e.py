"""The real Make chain on a tiny generated demo: make all, then make -q all is clean."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.submit import validate_submission

ROOT = Path(__file__).resolve().parents[1]


def tiny_demo_config(tmp: Path) -> Path:
    text = (ROOT / "configs" / "demo.toml").read_text()
    for old, new in [
        ('out_dir = "data/demo"', f'out_dir = "{tmp}/demo"'),
        ('train_dir = "data/demo/train"', f'train_dir = "{tmp}/demo/train"'),
        ('test_dir = "data/demo/test"', f'test_dir = "{tmp}/demo/test"'),
        ('test_truth = "data/demo/test_truth.csv"', f'test_truth = "{tmp}/demo/test_truth.csv"'),
        ("n_train = 3000", "n_train = 200"),
        ("n_test = 600", "n_test = 40"),
        ("image_size = 64", "image_size = 32"),
        ("\nsize = 64", "\nsize = 32"),
        ("n_folds = 5\nseed = 42", "n_folds = 3\nseed = 42"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    text = text.replace("epochs = 6", "epochs = 2")
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


@pytest.mark.slow
def test_make_all_tiny_demo(tmp_path):
    cfg = tiny_demo_config(tmp_path)
    dry = make(tmp_path, cfg, "-n", "all")
    assert dry.returncode == 0, dry.stderr
    assert "stages.train_cnn" in dry.stdout and "stages.submit" in dry.stdout
    assert not (tmp_path / "build" / "preds").exists()  # a dry run trains nothing

    run = make(tmp_path, cfg, "all")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    subs = sorted((tmp_path / "submissions").glob("tiny_demo-*.csv"))
    wide = [s for s in subs if not s.name.endswith(".labels.csv")]
    assert len(wide) == 1
    df = pd.read_csv(wide[0], dtype={"image": str})
    labels = list(pd.read_csv(tmp_path / "demo" / "train" / "labels.csv", nrows=0).columns[1:])
    test_ids = pd.read_csv(tmp_path / "demo" / "test" / "test.csv")["image"].astype(str)
    validate_submission(df, test_ids.tolist(), labels)

    # OOF rows = train rows, each exactly once across a backbone's folds
    train_ids = pd.read_csv(tmp_path / "demo" / "train" / "labels.csv")["image"].astype(str)
    for backbone in ("small_cnn", "mobilenet_v2_035"):
        held = np.concatenate(
            [
                np.load(f)["val_ids"]
                for f in sorted((tmp_path / "build" / "preds").glob(f"{backbone}.fold*.npz"))
            ]
        )
        assert sorted(held.tolist()) == sorted(train_ids.tolist())
        assert len(set(held.tolist())) == len(held)
    with np.load(tmp_path / "build" / "stack" / "stacked.npz") as z:
        assert z["oof"].shape == (len(train_ids), len(labels))
        assert list(z["train_ids"]) == train_ids.tolist()

    metrics = (tmp_path / "build" / "report" / "metrics.json").read_text()
    assert '"vote"' in metrics and "test_fbeta_macro" in metrics
    html = (tmp_path / "build" / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64") >= 5
    for section in (
        "Summary",
        "Per label",
        "Per-label F-beta of every model",
        "Label frequencies",
        "Threshold curves",
        "Training curves",
        "Reliability of stacked probabilities",
        "Selected epochs per label",
        "Thresholds",
        "Config and software",
    ):
        assert f"<h2>{section}" in html, section

    q = make(tmp_path, cfg, "-q", "all")
    assert q.returncode == 0, (
        "make -q all is not clean after make all:\n" + make(tmp_path, cfg, "-n", "all").stdout
    )

    # determinism: the same config from clean gives byte-identical submission and metrics
    first = {p.name: p.read_bytes() for p in subs}
    first_metrics = (tmp_path / "build" / "report" / "metrics.json").read_bytes()
    import shutil

    shutil.rmtree(tmp_path / "build")
    shutil.rmtree(tmp_path / "submissions")
    (tmp_path / "folds.csv").unlink()
    again = make(tmp_path, cfg, "all")
    assert again.returncode == 0, again.stderr[-3000:]
    second = {p.name: p.read_bytes() for p in (tmp_path / "submissions").glob("*.csv")}
    assert second == first
    assert (tmp_path / "build" / "report" / "metrics.json").read_bytes() == first_metrics

    # editing only [stack] re-runs stack and what follows it, not the CNNs
    cfg.write_text(cfg.read_text().replace("top_n = 6", "top_n = 5"))
    plan = make(tmp_path, cfg, "-n", "all").stdout
    assert "stages.stack" in plan and "stages.train_cnn" not in plan and "stages.folds" not in plan
