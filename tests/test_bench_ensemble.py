"""`make bench-ensemble` on a finished run: the held-out gain carries its interval, and the
numbers equal a bootstrap recomputed here from the run's own files."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.bench_ensemble import summarise
from pipeline.artifacts import load_metrics
from pipeline.config.schema import load_config
from pipeline.data.contract import read_labels
from pipeline.ensemble.predict_manifest import member_records
from pipeline.ensemble.select import load_base_predictions
from pipeline.metrics import paired_bootstrap
from pipeline.report.summary import score_members

pytestmark = pytest.mark.slow


def test_bench_json_has_gain_interval_and_every_combiner(tiny_demo):
    metrics = load_metrics(tiny_demo.build / "report" / "metrics.json")
    out = summarise(metrics)
    low, high = out["ensemble_gain_ci"]
    assert low <= out["ensemble_gain"] <= high
    assert out["ensemble_gain"] == pytest.approx(out["vote_test_f2"] - out["best_single_test_f2"])
    assert "vs_sklearn_ci" in out and out["vs_sklearn_ci"][0] <= out["vs_sklearn"]
    assert sum(out["ensemble_gain_labels"].values()) == out["n_labels"]
    assert set(out["combiners"]) == {
        "xgb",
        "logistic_own",
        "logistic_all",
        "caruana",
        "mean_top",
        "mean_members",
    }
    assert all(0 <= v <= 1 for v in out["combiners"].values())
    assert out["vote_test_f1"] is not None and out["best_single_test_f1"] is not None

    # recompute the interval from the submission, the truth and the best single's files
    truth = pd.read_csv(tiny_demo.root / "demo" / "test_truth.csv", dtype={"image": str})
    sub = next(p for p in (tiny_demo.root / "submissions").glob("*.csv") if ".labels" not in p.name)
    sub = pd.read_csv(sub, dtype={"image": str})
    labels = metrics["labels"]
    y = truth.set_index("image").loc[sub["image"], labels].to_numpy(dtype=float)
    vote = sub[labels].to_numpy()
    iv = metrics["intervals"]["ensemble_gain"]
    assert iv["comparison"].startswith("vote - best single")
    # the best single's held-out 0/1 predictions, rebuilt from its fold files
    cfg = load_config(tiny_demo.config)
    name = metrics["best_single"]
    d = "members" if (tiny_demo.build / "members" / f"{name}.fold0.npz").is_file() else "preds"
    files = {name: sorted((tiny_demo.build / d).glob(f"{name}.fold*.npz"))}
    table = read_labels(cfg.data.train_dir, check_images=False)
    base = load_base_predictions(files, table.ids)
    assert list(base.test_ids) == sub["image"].tolist()
    t = cfg.thresholds
    records = member_records(base, table.y, t.beta, t.step, "macro")
    (row,), _ = score_members(records, table.y, t.beta, t.step, "macro", y_test=y)
    again = paired_bootstrap(y, vote, row.test_pred, 2.0, cfg.stack.n_boot, cfg.stack.seed)
    for key in ("gain", "low", "high", "p_le_0"):
        assert iv[key] == pytest.approx(again[key]), key
    assert iv["n_boot"] == 1000
