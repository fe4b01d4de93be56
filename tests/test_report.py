"""The report built from stage outputs: its tables, scores and page (the full run's page
is checked in test_e2e)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import (
    MEMBER_SCORES,
    save_fold_predictions,
    save_member_scores,
    save_stacked,
    save_thresholds,
)
from pipeline.config.schema import load_config
from pipeline.ensemble.predict_manifest import fold_losses, member_records
from pipeline.ensemble.select import group_pred_files, load_base_predictions
from pipeline.metrics import fbeta_per_label
from pipeline.report.summary import data_check_tables, make_report
from tests.conftest import tiny_config_text, write_dataset


def test_data_check_tables_count_copies_and_list_test_near_copies():
    report = {
        "near_duplicate_max_distance": 4,
        "seconds": 1.7,
        "train_groups": {"exact": 2, "all": 3, "rows_in_groups": 7, "with_conflicting_labels": 1},
        "train_test_near_duplicates": {
            "count": 25,
            "pairs": [
                {"train": f"t{i}", "test": f"x{i}", "distance": i % 5, "mirrored": i == 3}
                for i in range(25)
            ],
        },
    }
    tables, counts = data_check_tables(report)
    assert counts == {
        "train_copy_groups_exact": 2,
        "train_copy_groups": 3,
        "train_rows_in_groups": 7,
        "groups_with_conflicting_labels": 1,
        "test_near_copies_of_train": 25,
        "near_duplicate_max_distance": 4,
        "test_mirrored_copies_of_train": 1,
    }
    (checks, pairs) = tables.values()
    assert checks[1][0] == ["training copy groups, exact / with near copies", "2 / 3"]
    assert checks[1][3] == ["test images that copy a training image (exact pixels or near)", 25]
    assert checks[1][4] == ["... of them mirrored", 1]
    assert pairs[0] == ["test image", "training image", "pHash distance", "how"]
    assert len(pairs[1]) == 20 and pairs[1][0] == ["x0", "t0", 0, "near"]
    assert pairs[1][3] == ["x3", "t3", 3, "near, mirrored"]
    assert "20 of 25" in list(tables)[1]


def test_data_check_tables_without_test_near_copies_has_one_table():
    report = {
        "near_duplicate_max_distance": -1,
        "train_groups": {"exact": 0, "all": 0, "rows_in_groups": 0, "with_conflicting_labels": 0},
        "train_test_near_duplicates": {"count": 0, "pairs": []},
    }
    tables, counts = data_check_tables(report)
    assert len(tables) == 1 and counts["test_near_copies_of_train"] == 0


def test_data_check_tables_list_copies_with_conflicting_labels():
    report = {
        "near_duplicate_max_distance": 4,
        "train_groups": {"exact": 1, "all": 1, "rows_in_groups": 2, "with_conflicting_labels": 1},
        "train_test_near_duplicates": {"count": 0, "pairs": []},
        "conflicting_labels": [{"ids": ["a.png", "b.png"], "labels": ["red"], "exact": True}],
    }
    tables, _ = data_check_tables(report)
    title = list(tables)[1]
    assert "conflicting labels (1 of 1 groups" in title
    assert tables[title] == (
        ["images", "labels that differ", "copies"],
        [["a.png, b.png", "red", "exact"]],
    )


def test_make_report_scores_a_tiny_run(tmp_path):
    """A run made of files written here: one member over 3 folds (epoch 1 noise, epoch 2 informative), a plain stack (no second
    level record), thresholds and a submission; the report's numbers are recomputed by hand."""
    data = write_dataset(tmp_path, n_train=30, n_test=8, size=16, n_labels=3)
    (tmp_path / "tiny.toml").write_text(tiny_config_text(tmp_path))
    cfg = load_config(tmp_path / "tiny.toml")
    ids, test_ids = data["train"]["image"].to_numpy(), data["test"]["image"].to_numpy()
    labels = ["lab0", "lab1", "lab2"]
    y, y_test = data["train"][labels].to_numpy(float), data["test"][labels].to_numpy(float)
    rng = np.random.default_rng(0)
    oof = np.clip(y * 0.6 + rng.random(y.shape) * 0.5, 0, 1)
    test = np.clip(y_test[None] * 0.6 + rng.random((3, *y_test.shape)) * 0.5, 0, 1)
    folds = np.arange(30) % 3
    preds = []
    for k in range(3):
        preds.append(tmp_path / "preds" / f"m.fold{k}.npz")
        va = folds == k
        save_fold_predictions(
            preds[-1],
            labels,
            ids[va],
            test_ids,
            [1, 2],
            np.stack([rng.random(oof[va].shape), oof[va]]),
            np.stack([rng.random(test[k].shape), test[k]]),
            [0.7, 0.5],
        )
    stacked = tmp_path / "stack" / "stacked.npz"
    save_stacked(
        stacked,
        labels,
        ids,
        test_ids,
        y,
        oof,
        test,
        ["xgb"],
        oof[None],
        test[None],
        np.zeros(3, int),
        ["per_label"] * 3,
    )
    save_thresholds(tmp_path / "thresholds.json", labels, [0.5] * 3, [0.0] * 3, 0.0, "fixed", {})
    vote = ((test >= 0.5).sum(axis=0) >= 2).astype(int)  # majority of the 3 fold votes
    submission = tmp_path / "sub.csv"
    pd.DataFrame(vote, columns=labels).assign(image=test_ids)[["image", *labels]].to_csv(
        submission, index=False
    )

    # what `make stack` saves beside stacked.npz: the members' scores, from their fold files
    files = group_pred_files(preds)
    base = load_base_predictions(files, ids)
    t = cfg.thresholds
    records = member_records(base, y, t.beta, t.step, t.average, fold_losses(files))
    save_member_scores(stacked.parent / MEMBER_SCORES, records)
    metrics, page = make_report(cfg, stacked, tmp_path / "thresholds.json", submission)
    f2 = fbeta_per_label(y_test, vote, beta=2.0)
    assert metrics["models"]["vote"]["test_fbeta_macro"] == pytest.approx(f2.mean())
    stack_test = (test.mean(axis=0) >= 0.5).astype(int)
    assert metrics["summary"]["stack_test"] == pytest.approx(
        fbeta_per_label(y_test, stack_test, beta=2.0).mean()
    )
    ones = np.ones_like(y_test, dtype=int)
    assert metrics["all_ones_test_fbeta_macro"] == pytest.approx(
        fbeta_per_label(y_test, ones, beta=2.0).mean()
    )
    assert metrics["best_single"] == "m" and metrics["models"]["m"]["detail"] == "epoch 2"
    assert set(metrics["intervals"]) == {"ensemble_gain"} and "second_level" not in metrics
    for section in ("Summary (macro F-beta)", "Held-out gains", "Per label", "Training curves"):
        assert f"<h2>{section}" in page, section
    assert page.count("data:image/png;base64") == 5  # the five figures
