"""`make export`: the exported folder predicts what the run predicted, on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import load_thresholds
from pipeline.config.schema import load_config
from tests.conftest import tiny_test_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tiny_demo):
    from pipeline.runtime.exported import load

    return load(tiny_demo.build / "export")


def test_export_reproduces_stacked_and_submission(tiny_demo, exported):
    """Every test image through the export: probabilities = stacked.npz's test
    probabilities, fold votes = its folds cut at thresholds.json, labels = the submission."""
    ids, paths = tiny_test_images(tiny_demo, 1000)
    preds = exported.predict(paths)
    sub = next(p for p in (tiny_demo.root / "submissions").glob("*.csv") if ".labels" not in p.name)
    sub = pd.read_csv(sub, dtype={"image": str}).set_index("image")
    with np.load(tiny_demo.build / "stack" / "stacked.npz") as z:
        test_ids = z["test_ids"].astype(str).tolist()
        stacked = z["test"]
    thresholds = load_thresholds(tiny_demo.build / "thresholds.json")["thresholds"]
    assert len(preds) == len(sub) == len(test_ids)
    for i, p in zip(ids, preds, strict=True):
        row = test_ids.index(i)
        np.testing.assert_allclose(p.probabilities, stacked[:, row].mean(axis=0), atol=2e-4)
        np.testing.assert_array_equal(p.votes, (stacked[:, row] >= thresholds).sum(axis=0))
        np.testing.assert_array_equal(p.predicted, sub.loc[i].to_numpy())


def test_export_equals_the_keras_predictor_for_every_model(tiny_demo, exported, tiny_predictor):
    """ONNX Runtime + NumPy give the Keras predictor's numbers for the ensemble and every
    single model (fine-tuned CNNs, the frozen member's heads, Two-Flow)."""
    _, paths = tiny_test_images(tiny_demo, 5)
    assert exported.model_names == [*tiny_predictor.model_names, "student"]
    assert {"twoflow", "mnv2_128_logistic", "mnv2_128_knn"} <= set(exported.model_names)
    for model in tiny_predictor.model_names:
        got, want = exported.predict(paths, model), tiny_predictor.predict(paths, model)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g.probabilities, w.probabilities, atol=1e-5, err_msg=model)
            np.testing.assert_array_equal(g.thresholds, w.thresholds)
            assert g.detail == w.detail


def _run_in(folder, *args: str) -> subprocess.CompletedProcess:
    """``python *args`` in ``folder``, without the repository's PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env={**env, "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_copied_export_predicts_without_the_repository(tiny_demo, exported, tmp_path):
    """Copied elsewhere, the folder predicts with ``python -m runtime`` from its own
    parent: no repository module, no TensorFlow or Keras is imported, and the labels and
    probabilities are the in-repository runtime's."""
    copy = tmp_path / "shipped"
    shutil.copytree(tiny_demo.build / "export", copy)
    _, paths = tiny_test_images(tiny_demo, 3)
    probe = (
        "import json, sys\n"
        "import runtime\n"
        f"preds = runtime.load({str(copy)!r}).predict(sys.argv[1:])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pipeline', 'stages', 'tensorflow', 'keras', 'sklearn', 'jax'))\n"
        "print(json.dumps({'heavy': heavy, 'preds': [p.as_dict() for p in preds]}))\n"
    )
    out = _run_in(copy, "-c", probe, *map(str, paths))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["heavy"] == []
    want = exported.predict(paths)
    for got, w in zip(result["preds"], want, strict=True):
        assert got == json.loads(json.dumps(w.as_dict()))
    cli = _run_in(copy, "-m", "runtime", str(paths[0]), "--json")
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert json.loads(cli.stdout)["labels"] == want[0].positive_labels


def test_manifest_records_versions_config_and_every_column(tiny_demo, exported):
    m = exported.manifest
    cfg_bytes = tiny_demo.config.read_bytes()
    import hashlib

    assert m["config_sha256"] == hashlib.sha256(cfg_bytes).hexdigest()
    assert {"numpy", "onnxruntime", "keras"} <= set(m["versions"])
    for model in exported.model_names:
        for key in exported.base_columns(model):
            spec = m["columns"][f"{key[0]}|{key[1]}|{key[2]}"]
            assert (tiny_demo.build / "export" / m["nets"][spec["net"]]["file"]).is_file()


def test_a_failed_conversion_leaves_the_previous_export(tiny_demo, tmp_path, monkeypatch):
    """A network whose ONNX output differs from Keras fails the export, naming it; the
    folder already there stays whole."""
    import pipeline.export as export

    out = tmp_path / "export"
    shutil.copytree(tiny_demo.build / "export", out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(export, "NET_TOLERANCE", -1.0)
    with pytest.raises(RuntimeError, match=r"fold0\.epoch.*differs from Keras"):
        export.export_run(load_config(tiny_demo.config), tiny_demo.config, tiny_demo.build, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not list(tmp_path.glob("export.tmp-*"))


def test_missing_or_foreign_export_is_refused_clearly(tmp_path):
    from pipeline.runtime.exported import MANIFEST, load

    with pytest.raises(FileNotFoundError, match="run `make export"):
        load(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 99.*re-run `make export`"):
        load(tmp_path)


def test_the_student_is_its_last_epoch_at_its_teacher_fitted_thresholds(tiny_demo, exported):
    """``MODEL=student``: the distilled network's test probabilities (its predictions file's
    last epoch), cut at thresholds fitted to the ensemble's final test labels."""
    from pipeline.train.student import rows_of, teacher_thresholds

    ids, paths = tiny_test_images(tiny_demo, 1000)
    with np.load(tiny_demo.build / "student" / "student.npz") as z:
        assert list(z["val_ids"].astype(str)) == ids  # the test images are its "validation"
        want = z["oof"][-1]
    preds = exported.predict(paths, "student")
    got = np.stack([p.probabilities for p in preds])
    np.testing.assert_allclose(got, want, atol=2e-5)
    with np.load(tiny_demo.build / "stack" / "stacked.npz") as z:
        stacked = z["test"][:, rows_of(z["test_ids"], ids)]
    ens = load_thresholds(tiny_demo.build / "thresholds.json")["thresholds"]
    th = teacher_thresholds(want, stacked, ens, "positive", 2.0, 0.01)
    np.testing.assert_allclose(preds[0].thresholds, th)
    np.testing.assert_array_equal(
        np.stack([p.predicted for p in preds]), (got >= preds[0].thresholds).astype(np.int8)
    )
    assert "distilled student" in preds[0].detail
