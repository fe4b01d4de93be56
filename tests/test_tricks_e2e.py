"""The competition tricks through the real Make chain, on a copy of the tiny demo's run:
a seed repeat, pseudo-labelled twins, OOF-error filtering and the rate threshold rule
switched on at once re-run only what they touch, stack every new member, and the
predictor scores a new image with them exactly as the stack scored the test set."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.config.schema import load_config
from tests.conftest import make

pytestmark = pytest.mark.slow

SWITCHES = """
[pseudo]
enabled = true
precision = 0.8
min_rows = 3
members = ["mnv2_128_logistic"]

[denoise]
enabled = true
quantile = 0.9
"""


def _tricks_config(text: str) -> str:
    """The tiny demo's config plus a seed repeat of small_cnn, the rate rule and SWITCHES."""
    repeat = (
        '[[train.backbones]]\nname = "small_cnn_s2"\narch = "small_cnn"\nseed = 99\n'
        "width = 16\nepochs = 2\nbatch_size = 64\n\n"
    )
    assert "[[frozen]]" in text and "[stack]\n" in text
    text = text.replace("# A frozen ImageNet", repeat + "# A frozen ImageNet", 1)
    text = text.replace("[stack]\n", '[stack]\nrules = ["per_label", "global", "shrunk", "rate"]\n')
    return text + SWITCHES


def test_tricks_rerun_only_what_they_touch_and_predict_consistently(tiny_demo, tmp_path):
    root = tmp_path
    shutil.copytree(tiny_demo.build, root / "build", symlinks=True)
    shutil.copy2(tiny_demo.root / "folds.csv", root / "folds.csv")
    cfg = root / tiny_demo.config.name
    cfg.write_text(_tricks_config(tiny_demo.config.read_text()))
    c = load_config(cfg)
    assert c.backbone("small_cnn_s2").architecture == "small_cnn" and "rate" in c.stack.rules

    plan = make(root, cfg, "-n", "all")
    assert plan.returncode == 0, plan.stderr[-2000:]
    trains = [line for line in plan.stdout.splitlines() if "stages.train_cnn" in line]
    assert trains and all("--backbone small_cnn_s2" in line for line in trains)
    assert "stages.embed " not in plan.stdout  # the frozen embeddings are reused
    assert "--teacher" in plan.stdout and "stages.stack" in plan.stdout

    run = make(root, cfg, "all")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    twins = sorted(p.name for p in (root / "build" / "pseudo").glob("*.npz"))
    assert twins == [f"mnv2_128_logistic_pl.fold{k}.npz" for k in range(3)]
    with np.load(root / "build" / "stack" / "stacked.npz") as z:
        test_ids, stacked = z["test_ids"].astype(str).tolist(), z["test"]
    import json

    selection = json.loads((root / "build" / "stack" / "selection.json").read_text())
    rules = {c["rule"] for c in selection["second_level"]["candidates"]}
    assert rules == {"per_label", "global", "shrunk", "rate"}
    members = json.dumps(selection)
    assert "small_cnn_s2" in members and "mnv2_128_logistic_pl" in members

    from pipeline.predict import Predictor

    predictor = Predictor(c, root / "build")
    ids = pd.read_csv(tiny_demo.root / "demo" / "test" / "test.csv", dtype={"image": str})
    ids = ids["image"].tolist()[:4]
    paths = [tiny_demo.root / "demo" / "test" / "images" / i for i in ids]
    for i, p in zip(ids, predictor.predict(paths, "ensemble"), strict=True):
        want = stacked[:, test_ids.index(i)].mean(axis=0)
        np.testing.assert_allclose(p.probabilities, want, atol=2e-4)
    q = make(root, cfg, "-q", "all")
    assert q.returncode == 0, make(root, cfg, "-n", "all").stdout
