"""Single-image prediction reproduces the pipeline's own test-set outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import load_thresholds
from pipeline.config.schema import load_config
from tests.conftest import run_stage, tiny_test_images

pytestmark = pytest.mark.slow


def test_ensemble_reproduces_submission_rows(tiny_demo, tiny_predictor):
    """Every test image, in one batch: probabilities = stacked.npz's test probabilities,
    fold votes = its folds cut at thresholds.json, labels = the submission row."""
    ids, paths = tiny_test_images(tiny_demo, 1000)
    preds = tiny_predictor.predict(paths, "ensemble")
    sub = next(p for p in (tiny_demo.root / "submissions").glob("*.csv") if ".labels" not in p.name)
    sub = pd.read_csv(sub, dtype={"image": str}).set_index("image")
    with np.load(tiny_demo.build / "stack" / "stacked.npz") as z:
        test_ids = z["test_ids"].astype(str).tolist()
        stacked = z["test"]  # (K, m, L)
    thresholds = load_thresholds(tiny_demo.build / "thresholds.json")["thresholds"]
    assert len(preds) == len(test_ids) == len(sub)
    for i, p in zip(ids, preds, strict=True):
        assert p.labels == list(sub.columns)
        np.testing.assert_array_equal(p.predicted, sub.loc[i].to_numpy())
        row = test_ids.index(i)
        np.testing.assert_allclose(p.probabilities, stacked[:, row].mean(axis=0), atol=2e-4)
        np.testing.assert_array_equal(p.votes, (stacked[:, row] >= thresholds).sum(axis=0))


def test_fused_bundle_equals_the_one_by_one_calls(tiny_demo, tiny_predictor):
    """The page's fused graph (every fold model of a size in one traced call, a fold
    model's logits and embedding from one call) gives the eager path's numbers, and so
    stacked.npz's, for the ensemble and a single model."""
    from pipeline.predict import Predictor

    fused = Predictor(load_config(tiny_demo.config), tiny_demo.build, compiled=True)
    ids, paths = tiny_test_images(tiny_demo, 6)
    with np.load(tiny_demo.build / "stack" / "stacked.npz") as z:
        rows = [z["test_ids"].astype(str).tolist().index(i) for i in ids]
        stacked = z["test"][:, rows].mean(axis=0)
    for model in ("ensemble", tiny_predictor.model_names[-1]):
        a, b = fused.predict(paths, model), tiny_predictor.predict(paths, model)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x.probabilities, y.probabilities, atol=1e-5)
            np.testing.assert_array_equal(x.predicted, y.predicted)
    got = np.stack([p.probabilities for p in fused.predict(paths, "ensemble")])
    np.testing.assert_allclose(got, stacked, atol=2e-4)


def test_predictor_reads_artifacts_and_recomputes_nothing(tiny_demo, monkeypatch):
    """No prediction file is read and no threshold searched at start: the best epochs and
    thresholds come from stack/predict.json, and equal what the report computes."""
    import pipeline.ensemble.select
    import pipeline.ensemble.thresholds
    from pipeline.data.contract import read_labels
    from pipeline.ensemble.predict_manifest import best_epoch
    from pipeline.predict import Predictor

    cfg = load_config(tiny_demo.config)
    files = sorted((tiny_demo.build / "preds").glob("*.npz"))
    files += sorted((tiny_demo.build / "members").glob("*.npz"))
    base = pipeline.ensemble.select.load_base_predictions(
        pipeline.ensemble.select.group_pred_files(files),
        read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False).ids,
    )
    y = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False).y

    def refuse(*args, **kwargs):
        raise AssertionError("the predictor recomputed what the run's artifacts hold")

    with monkeypatch.context() as m:
        m.setattr(pipeline.ensemble.select, "load_base_predictions", refuse)
        m.setattr(pipeline.ensemble.thresholds.ThresholdSearch, "fit", refuse)
        fresh = Predictor(cfg, tiny_demo.build)
    t = cfg.thresholds
    assert set(fresh.singles) == {b for b, _ in base.columns}
    for name, (epoch, thresholds, score) in fresh.singles.items():
        want_score, c, ts = best_epoch(base, name, y, t.beta, t.step, t.average)
        assert epoch == base.columns[c][1] and score == pytest.approx(want_score)
        np.testing.assert_array_equal(thresholds, ts.thresholds_)


def test_decoded_arrays_score_as_their_files(tiny_demo, tiny_predictor):
    from pipeline.runtime.images import load_image

    _, paths = tiny_test_images(tiny_demo, 3)
    from_files = tiny_predictor.predict(paths, "ensemble")
    from_arrays = tiny_predictor.predict([load_image(p) for p in paths], "ensemble")
    for a, b in zip(from_files, from_arrays, strict=True):
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
        np.testing.assert_array_equal(a.predicted, b.predicted)


def test_single_model_is_fold_mean_at_best_epoch(tiny_demo, tiny_predictor):
    ids, paths = tiny_test_images(tiny_demo, 4)
    for name in ("small_cnn", "twoflow"):
        epoch, thresholds, _ = tiny_predictor.singles[name]
        files = sorted((tiny_demo.build / "preds").glob(f"{name}.fold*.npz"))
        probs = []
        for f in files:
            with np.load(f) as z:
                e = list(z["epochs"]).index(epoch)
                order = [list(z["test_ids"].astype(str)).index(i) for i in ids]
                probs.append(z["test"][e][order])
        expected = np.mean(probs, axis=0)
        got = tiny_predictor.predict(paths, name)
        # two-flow forests see embeddings from a differently batched pass: tiny float noise
        tol = 2e-4 if name != "twoflow" else 2e-2
        for j, p in enumerate(got):
            np.testing.assert_allclose(p.probabilities, expected[j], atol=tol)
            assert p.detail.startswith(f"epoch {epoch}")
            np.testing.assert_array_equal(p.thresholds, thresholds)


def test_unknown_model_and_bad_image(tiny_demo, tiny_predictor, tmp_path):
    _, paths = tiny_test_images(tiny_demo, 1)
    with pytest.raises(ValueError, match="unknown model 'nope'.*ensemble"):
        tiny_predictor.predict(paths, "nope")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="notes.jpg: cannot decode image"):
        tiny_predictor.predict([bad])


def predict_cli(tiny_demo, paths, model="ensemble") -> list[dict]:
    """``python -m stages.predict --json`` on image files: one dict per image."""
    out = run_stage(
        "predict",
        "--export",
        tiny_demo.build / "export",
        "--model",
        model,
        "--json",
        "--image",
        *paths,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_cli_json_matches_predictor(tiny_demo, tiny_predictor, tmp_path):
    _, paths = tiny_test_images(tiny_demo, 2)
    rows = predict_cli(tiny_demo, paths)
    assert [r["labels"] for r in rows] == [
        p.positive_labels for p in tiny_predictor.predict(paths, "ensemble")
    ]
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG broken")
    out = run_stage("predict", "--export", tiny_demo.build / "export", "--image", bad)
    assert out.returncode == 2 and "x.png: cannot decode image" in out.stderr, out.stderr
