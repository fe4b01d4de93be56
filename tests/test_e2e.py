"""The real Make chain on a tiny generated demo: make all, then make -q all is clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.ensemble.submit import validate_submission
from tests.conftest import make, tiny_demo_config

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_trains_nothing(tmp_path):
    cfg = tiny_demo_config(tmp_path)
    dry = make(tmp_path, cfg, "-n", "all")
    assert dry.returncode == 0, dry.stderr
    assert "stages.train_cnn" in dry.stdout and "stages.submit" in dry.stdout
    assert not (tmp_path / "build" / "preds").exists()  # a dry run trains nothing


@pytest.mark.slow
def test_make_all_tiny_demo(tiny_demo, tmp_path):
    run_dir, cfg = tiny_demo.root, tiny_demo.config

    subs = sorted((run_dir / "submissions").glob("tiny_demo-*.csv"))
    wide = [s for s in subs if not s.name.endswith(".labels.csv")]
    assert len(wide) == 1
    df = pd.read_csv(wide[0], dtype={"image": str})
    labels = list(pd.read_csv(run_dir / "demo" / "train" / "labels.csv", nrows=0).columns[1:])
    test_ids = pd.read_csv(run_dir / "demo" / "test" / "test.csv")["image"].astype(str)
    validate_submission(df, test_ids.tolist(), labels)

    # OOF rows = train rows, each exactly once across a backbone's folds
    train_ids = pd.read_csv(run_dir / "demo" / "train" / "labels.csv")["image"].astype(str)
    for backbone in ("small_cnn", "mobilenet_v3_small", "mnv2_128_logistic"):
        held = np.concatenate(
            [
                np.load(f)["val_ids"]
                for d in ("preds", "members")
                for f in sorted((run_dir / "build" / d).glob(f"{backbone}.fold*.npz"))
            ]
        )
        assert sorted(held.tolist()) == sorted(train_ids.tolist())
        assert len(set(held.tolist())) == len(held)
    with np.load(run_dir / "build" / "stack" / "stacked.npz") as z:
        assert z["oof"].shape == (len(train_ids), len(labels))
        assert list(z["train_ids"]) == train_ids.tolist()

    metrics = (run_dir / "build" / "report" / "metrics.json").read_text()
    assert '"vote"' in metrics and "test_fbeta_macro" in metrics
    html = (run_dir / "build" / "report" / "index.html").read_text()
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
        "Data checks (copies grouped, train/test copies: exact, near, mirrored)",
        "Thresholds",
        "Config and software",
    ):
        assert f"<h2>{section}" in html, section

    q = make(run_dir, cfg, "-q", "all")
    assert q.returncode == 0, (
        "make -q all is not clean after make all:\n" + make(run_dir, cfg, "-n", "all").stdout
    )

    # determinism: the same config from clean, in a folder of its own (data generated
    # again, fresh folds, build and submissions), gives byte-identical submissions and
    # metrics; the shared run is only read
    cfg2 = tiny_demo_config(tmp_path)
    again = make(tmp_path, cfg2, "all")
    assert again.returncode == 0, again.stderr[-3000:]

    def unrooted(text: bytes) -> bytes:  # paths name the run's folder
        for root in (run_dir, tmp_path):
            text = text.replace(str(root).encode(), b"<root>")
        return text

    def outputs(root: Path) -> list[bytes]:
        return [p.read_bytes() for p in sorted((root / "submissions").glob("*.csv"))]

    assert outputs(tmp_path) == outputs(run_dir)
    metrics = "build/report/metrics.json"
    assert unrooted((tmp_path / metrics).read_bytes()) == unrooted((run_dir / metrics).read_bytes())

    # editing only [stack] re-runs stack and what follows it, not the CNNs (on a copy of
    # the config with the same file name)
    edited = tmp_path / "cfg" / cfg2.name
    edited.parent.mkdir()
    edited.write_text(cfg2.read_text().replace("top_n = 6", "top_n = 5"))
    plan = make(tmp_path, edited, "-n", "all").stdout
    assert "stages.stack" in plan and "stages.train_cnn" not in plan and "stages.folds" not in plan
