"""Tests for pipeline.ensemble.select: loading fold prediction files and per-label column selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.ensemble.select import (
    Selection,
    column_scores,
    feature_indices,
    feature_names,
    features_for_label,
    flatten_columns,
    load_base_predictions,
    select_columns,
)
from pipeline.metrics import best_threshold_fbeta

LABELS = ["red", "dress", "stripes"]
N_TRAIN, N_TEST, K = 30, 7, 3


def _value(row: int, epoch: int, label: int, backbone: int) -> float:
    """A prediction that encodes where it came from, so alignment can be checked exactly."""
    return (row * 1000 + epoch * 10 + label + backbone * 0.5) / 1e5


def _write_folds(tmp_path, backbone_index, name, epochs_per_fold, train_ids, test_ids, folds):
    files = []
    for k, epochs in enumerate(epochs_per_fold):
        rows = np.flatnonzero(folds == k)
        epochs = np.asarray(epochs)
        oof = np.array(
            [[[_value(r, e, j, backbone_index) for j in range(3)] for r in rows] for e in epochs]
        )
        test = np.array(
            [
                [
                    [_value(900 + i, e, j, backbone_index) + k for j in range(3)]
                    for i in range(N_TEST)
                ]
                for e in epochs
            ]
        ) / (K + 1)
        path = tmp_path / f"{name}.fold{k}.npz"
        np.savez(
            path,
            labels=np.array(LABELS),
            val_ids=train_ids[rows],
            test_ids=test_ids,
            oof=oof.astype(np.float32),
            test=test.astype(np.float32),
            epochs=epochs,
        )
        files.append(path)
    return files


@pytest.fixture
def written(tmp_path):
    train_ids = np.array([f"img{i:03d}.jpg" for i in range(N_TRAIN)])
    test_ids = np.array([f"test{i}.jpg" for i in range(N_TEST)])
    folds = np.arange(N_TRAIN) % K
    files = {
        "resnet50": _write_folds(
            tmp_path, 0, "resnet50", [[1, 2], [1, 2], [1, 2]], train_ids, test_ids, folds
        ),
        # fold 1 of xception has an extra epoch 3: only epochs in all folds are kept
        "xception": _write_folds(
            tmp_path, 1, "xception", [[1, 2], [1, 2, 3], [1, 2]], train_ids, test_ids, folds
        ),
    }
    # the caller's row order differs from the files' order
    order = np.random.default_rng(0).permutation(N_TRAIN)
    return files, train_ids[order], test_ids, folds[order]


def test_load_base_predictions_aligns_rows_epochs_and_folds(written):
    files, train_ids, test_ids, folds = written
    base = load_base_predictions(files, train_ids)
    assert base.columns == [("resnet50", 1), ("resnet50", 2), ("xception", 1), ("xception", 2)]
    assert base.labels == LABELS
    assert base.oof.shape == (N_TRAIN, 4, 3) and base.oof.dtype == np.float32
    assert base.test.shape == (K, N_TEST, 4, 3)
    np.testing.assert_array_equal(base.test_ids, test_ids)
    np.testing.assert_array_equal(base.train_ids, train_ids)
    for i, image in enumerate(train_ids):
        row = int(image[3:6])
        for c, (name, epoch) in enumerate(base.columns):
            b = 0 if name == "resnet50" else 1
            expected = [_value(row, epoch, j, b) for j in range(3)]
            np.testing.assert_allclose(base.oof[i, c], expected, rtol=1e-6)
    # fold k's test predictions come from fold k's file
    c = base.columns.index(("xception", 2))
    for k in range(K):
        expected = (_value(900 + 4, 2, 1, 1) + k) / (K + 1)
        assert base.test[k, 4, c, 1] == pytest.approx(expected, rel=1e-6)


def test_load_base_predictions_refuses_duplicated_row(written, tmp_path):
    files, train_ids, *_ = written
    bad = files["xception"][2]
    with np.load(bad) as npz:
        arrays = dict(npz)
    arrays["val_ids"] = arrays["val_ids"].copy()
    arrays["val_ids"][0] = "img000.jpg"  # held out by fold 0 already
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match=r"xception\.fold2\.npz.*img000\.jpg.*already held out"):
        load_base_predictions(files, train_ids)


def test_load_base_predictions_refuses_missing_row(written):
    files, train_ids, *_ = written
    with pytest.raises(ValueError, match=r"in no fold file of 'resnet50'"):
        load_base_predictions(files, np.append(train_ids, "img999.jpg"))
    with pytest.raises(FileNotFoundError, match="nowhere.fold0.npz"):
        load_base_predictions(
            {"x": [files["resnet50"][0].with_name("nowhere.fold0.npz")]}, train_ids
        )


def test_load_base_predictions_refuses_unknown_id_and_mismatched_labels(written):
    files, train_ids, *_ = written
    with pytest.raises(
        ValueError, match=r"resnet50\.fold0\.npz: val id 'img000\.jpg' is not a training"
    ):
        load_base_predictions(files, train_ids[train_ids != "img000.jpg"])
    bad = files["xception"][1]
    with np.load(bad) as npz:
        arrays = dict(npz)
    arrays["labels"] = np.array(["red", "stripes", "dress"])
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match=r"xception\.fold1\.npz: labels"):
        load_base_predictions(files, train_ids)


def test_load_base_predictions_refuses_fold_files_out_of_order(written):
    files, train_ids, *_ = written
    files["resnet50"] = files["resnet50"][::-1]
    with pytest.raises(ValueError, match="fold order"):
        load_base_predictions(files, train_ids)


def _labels(n, rng, prevalence=0.3):
    return (rng.random((n, 1)) < prevalence).astype(float)


def _noisy(y, noise, rng):
    """A probability column that tracks y with the given amount of noise."""
    return np.clip(0.5 * y + noise * rng.random(len(y)), 0, 1)


def test_selection_ranks_by_fbeta():
    rng = np.random.default_rng(1)
    y = _labels(400, rng)
    cols = [_noisy(y[:, 0], s, rng) for s in (1.5, 0.4, 3.0)]  # mid, best, worst
    oof = np.stack(cols, axis=1)[:, :, None]
    columns = [("a", 1), ("b", 1), ("c", 1)]
    sel = select_columns(oof, y, columns, corr_threshold=1.01)
    scores = [best_threshold_fbeta(y[:, 0], c)[0] for c in cols]
    assert scores[1] > scores[0] > scores[2]
    np.testing.assert_array_equal(sel.indices[0], [1, 0, 2])
    np.testing.assert_allclose(sel.scores[:, 0], scores)


def test_selection_drops_near_identical_column():
    rng = np.random.default_rng(2)
    y = _labels(400, rng)
    best = _noisy(y[:, 0], 0.6, rng)
    twin = np.clip(best + 0.02 * rng.random(400), 0, 1)  # corr > 0.99, slightly worse
    other = _noisy(y[:, 0], 1.0, rng)
    oof = np.stack([twin, other, best], axis=1)[:, :, None]
    sel = select_columns(oof, y, [("a", 1), ("b", 1), ("c", 1)], corr_threshold=0.9)
    assert np.corrcoef(best, twin)[0, 1] > 0.99 and np.corrcoef(best, other)[0, 1] < 0.9
    assert sel.scores[2, 0] >= sel.scores[0, 0]
    np.testing.assert_array_equal(sel.indices[0], [2, 1])


def test_selection_keeps_one_epoch_per_backbone_and_stops_at_top_n():
    rng = np.random.default_rng(3)
    y = _labels(400, rng)
    cols = [_noisy(y[:, 0], s, rng) for s in (0.8, 0.5, 1.2, 2.0)]
    oof = np.stack(cols, axis=1)[:, :, None]
    columns = [("resnet", 1), ("resnet", 2), ("vgg", 1), ("mobilenet", 4)]
    sel = select_columns(oof, y, columns, corr_threshold=1.01)
    np.testing.assert_array_equal(sel.indices[0], [1, 2, 3])  # resnet epoch 1 skipped
    sel = select_columns(oof, y, columns, corr_threshold=1.01, top_n=2)
    np.testing.assert_array_equal(sel.indices[0], [1, 2])


def test_selection_masks_unknown_labels_per_label():
    rng = np.random.default_rng(4)
    y = np.concatenate([_labels(300, rng), _labels(300, rng, 0.2)], axis=1)
    oof = rng.random((300, 2, 2))
    y[:50, 1] = np.nan
    scores, thresholds = column_scores(oof, y)
    for c in range(2):
        expected = best_threshold_fbeta(y[50:, 1], oof[50:, c, 1])
        assert (scores[c, 1], thresholds[c, 1]) == pytest.approx(expected)
        assert scores[c, 0] == pytest.approx(best_threshold_fbeta(y[:, 0], oof[:, c, 0])[0])


def test_selection_json_round_trip():
    rng = np.random.default_rng(5)
    y = _labels(100, rng).repeat(2, axis=1)
    oof = rng.random((100, 3, 2))
    sel = select_columns(oof, y, [("a", 1), ("a", 2), ("b", 7)])
    record = json.loads(json.dumps(sel.to_dict(["x", "y"])))
    assert list(record["labels"]) == ["x", "y"]
    assert {"backbone", "epoch", "fbeta", "threshold", "column"} <= set(record["labels"]["x"][0])
    back = Selection.from_dict(record)
    assert back.columns == sel.columns
    for a, b in zip(back.indices, sel.indices, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.scores, sel.scores)


def test_feature_indices_pick_selected_columns_for_all_labels():
    rng = np.random.default_rng(6)
    preds = rng.random((5, 4, 3))  # (n, C, L)
    indices = [np.array([2, 0]), np.array([3]), np.array([1, 2, 3])]
    flat = flatten_columns(preds)
    assert flat.shape == (5, 12)
    for j, cols in enumerate(feature_indices(indices, 3)):
        assert cols.shape == (len(indices[j]) * 3,)
        np.testing.assert_array_equal(flat[:, cols], features_for_label(preds, indices[j]))
    np.testing.assert_array_equal(feature_indices(indices, 3)[0], [6, 7, 8, 0, 1, 2])
    # works on the (K, n_test, C, L) test cube too
    test = rng.random((2, 5, 4, 3))
    np.testing.assert_array_equal(
        flatten_columns(test)[..., feature_indices(indices, 3)[2]],
        features_for_label(test, indices[2]),
    )
    names = feature_names([("a", 1), ("a", 2), ("b", 1), ("c", 5)], ["x", "y", "z"])
    assert names[7] == "b@1:y"
