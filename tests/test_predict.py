"""Single-image prediction reproduces the pipeline's own test-set outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.data import image_paths
from tests.conftest import run_stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predictor(tiny_demo):
    from pipeline.predict import Predictor

    return Predictor(load_config(tiny_demo.config), tiny_demo.build)


def _test_images(tiny_demo, n):
    ids = pd.read_csv(tiny_demo.root / "demo" / "test" / "test.csv", dtype={"image": str})
    ids = ids["image"].tolist()[:n]
    images = tiny_demo.root / "demo" / "test" / "images"
    return ids, image_paths(ids, images)


def test_ensemble_reproduces_submission_rows(tiny_demo, predictor):
    ids, paths = _test_images(tiny_demo, 8)
    preds = predictor.predict(paths, "ensemble")
    sub = next(p for p in (tiny_demo.root / "submissions").glob("*.csv") if ".labels" not in p.name)
    sub = pd.read_csv(sub, dtype={"image": str}).set_index("image")
    with np.load(tiny_demo.build / "stack" / "stacked.npz") as z:
        test_ids = z["test_ids"].astype(str).tolist()
        stacked = z["test"]  # (K, m, L)
    for i, p in zip(ids, preds, strict=True):
        assert p.labels == list(sub.columns)
        np.testing.assert_array_equal(p.predicted, sub.loc[i].to_numpy())
        row = test_ids.index(i)
        np.testing.assert_allclose(p.probabilities, stacked[:, row].mean(axis=0), atol=2e-4)
        assert p.votes is not None and p.votes.max() <= stacked.shape[0]


def test_single_model_is_fold_mean_at_best_epoch(tiny_demo, predictor):
    ids, paths = _test_images(tiny_demo, 4)
    for name in ("small_cnn", "twoflow"):
        epoch, thresholds, _ = predictor.singles[name]
        files = sorted((tiny_demo.build / "preds").glob(f"{name}.fold*.npz"))
        probs = []
        for f in files:
            with np.load(f) as z:
                e = list(z["epochs"]).index(epoch)
                order = [list(z["test_ids"].astype(str)).index(i) for i in ids]
                probs.append(z["test"][e][order])
        expected = np.mean(probs, axis=0)
        got = predictor.predict(paths, name)
        # two-flow forests see embeddings from a differently batched pass: tiny float noise
        tol = 2e-4 if name != "twoflow" else 2e-2
        for j, p in enumerate(got):
            np.testing.assert_allclose(p.probabilities, expected[j], atol=tol)
            assert p.detail.startswith(f"epoch {epoch}")
            np.testing.assert_array_equal(p.thresholds, thresholds)


def test_unknown_model_and_bad_image(tiny_demo, predictor, tmp_path):
    _, paths = _test_images(tiny_demo, 1)
    with pytest.raises(ValueError, match="unknown model 'nope'.*ensemble"):
        predictor.predict(paths, "nope")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="notes.jpg: cannot decode image"):
        predictor.predict([bad])


def predict_cli(tiny_demo, paths, model="ensemble") -> list[dict]:
    """``python -m stages.predict --json`` on image files: one dict per image."""
    out = run_stage(
        "predict",
        "--config",
        tiny_demo.config,
        "--build",
        tiny_demo.build,
        "--model",
        model,
        "--json",
        "--image",
        *paths,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_cli_json_matches_predictor(tiny_demo, predictor, tmp_path):
    _, paths = _test_images(tiny_demo, 2)
    rows = predict_cli(tiny_demo, paths)
    assert [r["labels"] for r in rows] == [
        p.positive_labels for p in predictor.predict(paths, "ensemble")
    ]
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG broken")
    out = run_stage(
        "predict", "--config", tiny_demo.config, "--build", tiny_demo.build, "--image", bad
    )
    assert out.returncode == 2 and "x.png: cannot decode image" in out.stderr, out.stderr
