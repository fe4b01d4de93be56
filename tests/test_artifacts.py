import json

import numpy as np
import pytest

from pipeline.artifacts import (
    load_data_report,
    load_embeddings,
    load_fold_predictions,
    load_metrics,
    load_selection,
    load_similarity_metrics,
    load_stacked,
    load_thresholds,
    save_data_report,
    save_embeddings,
    save_fold_predictions,
    save_metrics,
    save_selection,
    save_similarity_metrics,
    save_single_epoch_predictions,
    save_stacked,
    save_thresholds,
    write_atomic,
    write_text_atomic,
)


def test_fold_file_round_trip_and_checks(tmp_path):
    path = tmp_path / "preds" / "m.fold0.npz"
    oof, test = np.full((2, 3, 2), 0.25), np.full((2, 4, 2), 0.5)
    save_fold_predictions(
        path, ["a", "b"], ["x", "y", "z"], list("pqrs"), [1, 2], oof, test, [1, 2]
    )
    z = load_fold_predictions(path)
    assert z["oof"].dtype == np.float32 and z["test"].shape == (2, 4, 2)
    assert z["epochs"].tolist() == [1, 2] and z["loss"].tolist() == [1.0, 2.0]
    assert z["val_ids"].tolist() == ["x", "y", "z"]
    single = tmp_path / "s.fold0.npz"
    save_single_epoch_predictions(single, ["a"], ["x"], ["p", "q"], [[0.1]], [[0.2], [0.3]])
    z = load_fold_predictions(single)
    assert z["oof"].shape == (1, 1, 1) and z["epochs"].tolist() == [1] and np.isnan(z["loss"][0])
    save_fold_predictions(
        path, ["a"], ["x"], ["p"], [1, 1], np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), [0, 0]
    )
    with pytest.raises(ValueError, match="repeat an epoch"):
        load_fold_predictions(path)
    save_fold_predictions(path, ["a"], ["x"], ["p"], [1], [[[np.nan]]], [[[0]]], [0])
    with pytest.raises(ValueError, match="NaN/inf"):
        load_fold_predictions(path)
    np.savez(path, labels=np.array(["a"]))
    with pytest.raises(ValueError, match="lacks array"):
        load_fold_predictions(path)
    with pytest.raises(FileNotFoundError, match="make train-cnn"):
        load_fold_predictions(tmp_path / "none.npz")


def test_stacked_and_embedding_round_trip(tmp_path):
    y = np.array([[1, np.nan], [0, 1]], np.float32)
    save_stacked(
        tmp_path / "stacked.npz", ["a", "b"], ["i", "j"], ["t"], y, y, np.zeros((2, 1, 2)),
        ["xgb"], y[None], np.zeros((1, 2, 1, 2)), np.array([0, 0]), ["global", "global"],
    )  # fmt: skip
    z = load_stacked(tmp_path / "stacked.npz")
    assert z["test"].dtype == np.float32 and z["test_ids"].tolist() == ["t"]
    assert z["choice_rule"].tolist() == ["global", "global"] and "candidates_oof" in z
    with pytest.raises(FileNotFoundError, match="make stack"):
        load_stacked(tmp_path / "none.npz")
    save_embeddings(tmp_path / "e.npz", ["i"], ["t"], [[1.0, 2.0]], [[3.0, 4.0]], "small_cnn", 32)
    e = load_embeddings(tmp_path / "e.npz", ["i"], ["t"])
    assert e["train"].dtype == np.float32 and e["backbone"] == "small_cnn"
    assert (e["image_size"], e["source"]) == (32, "")  # a frozen backbone's: no checkpoint
    with pytest.raises(ValueError, match="e.npz: its test ids differ"):
        load_embeddings(tmp_path / "e.npz", test_ids=["u"])


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old\n")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    seen = []
    write_atomic(path, lambda tmp: (seen.append(tmp.name), tmp.write_text("new")), suffix=".h5")
    assert seen[0].endswith(".h5") and path.read_text() == "new"


def test_thresholds_file_round_trip_and_checks(tmp_path):
    path = tmp_path / "thresholds.json"
    save_thresholds(path, ["a", "b"], np.array([0.25, 0.7]), [0.5, 0.75], 0.625, "global", {})
    assert json.loads(path.read_text())["oof_fbeta"] == 0.625
    th = load_thresholds(path, ["a", "b"], "stacked.npz")
    assert th["thresholds"].dtype == np.float64 and th["thresholds"].tolist() == [0.25, 0.7]
    assert th["labels"] == ["a", "b"] and th["rules"] == "global"
    with pytest.raises(
        ValueError, match="labels differ from those of stacked.npz.*make thresholds"
    ):
        load_thresholds(path, ["b", "a"], "stacked.npz")
    path.write_text(json.dumps({"labels": ["a", "b"], "thresholds": [0.5]}))
    with pytest.raises(ValueError, match="1 thresholds for 2 labels"):
        load_thresholds(path)
    with pytest.raises(FileNotFoundError, match="make thresholds"):
        load_thresholds(tmp_path / "none.json")


def test_selection_file_round_trip_and_checks(tmp_path):
    path = tmp_path / "selection.json"
    record = {"beta": 2.0, "columns": [["m", 3]], "labels": {"a": [{"column": 0}]}}
    save_selection(path, record, {"mode": "per_label", "chosen": {"a": "xgb"}})
    assert (
        path.read_text()
        == json.dumps(
            {**record, "second_level": {"mode": "per_label", "chosen": {"a": "xgb"}}}, indent=2
        )
        + "\n"
    )
    back = load_selection(path)
    assert back["columns"] == [["m", 3]] and back["second_level"]["chosen"] == {"a": "xgb"}
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"lacks \['second_level'\]; re-run `make stack"):
        load_selection(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="selection.json is not valid JSON"):
        load_selection(path)
    with pytest.raises(FileNotFoundError, match="make stack"):
        load_selection(tmp_path / "none.json")


def test_metrics_file_sorted_keys_round_trip(tmp_path):
    path = tmp_path / "report" / "metrics.json"
    metrics = {"models": {"vote": {"oof_fbeta_macro": 0.75}}, "beta": 2.0}
    save_metrics(path, metrics)
    # sorted keys, two-space indent, final newline: the bytes `make report` has always written
    assert path.read_text() == (
        '{\n  "beta": 2.0,\n  "models": {\n    "vote": {\n'
        '      "oof_fbeta_macro": 0.75\n    }\n  }\n}\n'
    )
    assert load_metrics(path) == metrics
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a list, not a JSON object; re-run `make report"):
        load_metrics(path)
    with pytest.raises(FileNotFoundError, match="make report"):
        load_metrics(tmp_path / "none.json")


def test_data_report_and_similarity_metrics_round_trip_and_checks(tmp_path):
    report = {
        "train_groups": {"exact": 1, "all": 2},
        "train_test_near_duplicates": {"count": 0, "pairs": []},
        "near_duplicate_max_distance": 6,
    }
    save_data_report(tmp_path / "data_report.json", report)
    assert load_data_report(tmp_path / "data_report.json") == report
    with pytest.raises(ValueError, match=r"lacks \['near_duplicate_max_distance'\]"):
        save_data_report(tmp_path / "bad.json", {k: report[k] for k in list(report)[:2]})
    assert not (tmp_path / "bad.json").exists()  # refused before anything is written
    (tmp_path / "old.json").write_text(json.dumps({"train_groups": {}}))
    with pytest.raises(ValueError, match="re-run `make folds"):
        load_data_report(tmp_path / "old.json")

    sim = {"k": 10, "model_precision_at_k": 0.8, "pixels_precision_at_k": 0.6, "n_queries": 3}
    save_similarity_metrics(tmp_path / "similar" / "metrics.json", sim)
    assert load_similarity_metrics(tmp_path / "similar" / "metrics.json") == sim
    with pytest.raises(ValueError, match="lack"):
        save_similarity_metrics(tmp_path / "s.json", {"k": 10})
    with pytest.raises(FileNotFoundError, match="make similar"):
        load_similarity_metrics(tmp_path / "none.json")
