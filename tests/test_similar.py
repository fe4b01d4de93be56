"""Tests for pipeline.similar: exact cosine top-k, precision@k, the index file and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.similar import (
    SimilarityIndex,
    build_index,
    l2_normalise,
    precision_at_k,
    top_k_cosine,
)
from tests.conftest import tiny_config_text, write_dataset


@pytest.mark.parametrize("k,batch", [(1, 7), (5, 3), (40, 1024), (60, 16)])
def test_top_k_equals_brute_force(k, batch):
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(23, 8)), rng.normal(size=(40, 8))
    idx, scores = top_k_cosine(q, db, k, batch=batch)
    sim = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        db / np.linalg.norm(db, axis=1, keepdims=True)
    ).T
    expected = np.argsort(-sim, axis=1)[:, : min(k, 40)]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(sim, expected, axis=1), atol=1e-5)


def test_ties_go_to_the_smaller_index_whatever_the_batch():
    db = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    for batch in (1, 2, 10):
        idx, scores = top_k_cosine(np.array([[1.0, 0.0], [0.0, 1.0]]), db, 2, batch=batch)
        np.testing.assert_array_equal(idx, [[0, 2], [1, 4]])
        np.testing.assert_allclose(scores, 1.0)


def test_self_query_returns_itself_first():
    rng = np.random.default_rng(1)
    db = l2_normalise(rng.normal(size=(50, 16)))
    idx, scores = top_k_cosine(db, db, 3, normalised=True)
    np.testing.assert_array_equal(idx[:, 0], np.arange(50))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-6)
    assert (scores[:, 1] < scores[:, 0]).all()


def test_precision_at_k_hand_computed():
    nan = np.nan
    db_y = np.array(
        [
            [1, 1, 0],  # q0: J({0,1},{0,1}) = 1        q1: J({2},{0,1}) = 0
            [1, 0, 0],  # q0: J = 1/2 -> relevant       q1: 0
            [0, 0, 1],  # q0: 0                          q1: 1
            [1, nan, 0],  # q0: label 1 unknown -> J({0},{0}) = 1
            [0, 0, 0],  # q0: 0                          q1: 0
        ],
        dtype=float,
    )
    query_y = np.array([[1, 1, 0], [0, 0, 1], [nan, nan, nan]])
    neighbours = np.array([[0, 1, 2, 3], [2, 0, 4, 1], [0, 1, 2, 3]])
    # q0 @3: 2 of 3; q1 @3: 1 of 3; q2 has no known label -> skipped. Mean = 1/2.
    assert precision_at_k(query_y, db_y, neighbours, 3) == pytest.approx(0.5)
    # q0 @4: 3 of 4; q1 @4: 1 of 4 -> 1/2; a stricter Jaccard drops q0's half match.
    assert precision_at_k(query_y, db_y, neighbours, 4) == pytest.approx(0.5)
    assert precision_at_k(query_y, db_y, neighbours, 4, jaccard=0.6) == pytest.approx(3 / 8)
    # Both empty positive sets count as a match.
    assert precision_at_k(np.zeros((1, 3)), db_y, np.array([[4]]), 1) == 1.0
    with pytest.raises(ValueError, match="only 4 neighbours"):
        precision_at_k(query_y, db_y, neighbours, 5)


def test_index_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    index = SimilarityIndex(
        ids=np.array(["a", "b", "c"]),
        paths=np.array(["x/a.png", "x/b.png", "x/c.png"]),
        embeddings=l2_normalise(rng.normal(size=(3, 4))),
        labels=("red", "dress"),
        y=np.array([[1, 0], [np.nan, 1], [0, 0]], np.float32),
        model_path="build/m.keras",
        image_size=48,
    )
    index.save(tmp_path / "idx.npz")
    back = SimilarityIndex.load(tmp_path / "idx.npz")
    for name in ("ids", "paths", "embeddings", "y"):
        np.testing.assert_array_equal(getattr(back, name), getattr(index, name))
    assert back.labels == index.labels and back.model_path == "build/m.keras"
    assert (back.kind, back.image_size, back.pixel_size, back.tta_flip) == ("model", 48, 16, True)
    assert back.embeddings.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["idx.npz"]  # no temp file left


def test_cli_build_query_evaluate(tmp_path, capsys):
    import pandas as pd

    from pipeline.config.schema import load_config
    from pipeline.models.backbones import build_model
    from pipeline.models.cnn_embed import embed_fold
    from stages.similar import main

    data = write_dataset(tmp_path, n_train=24, n_test=6, size=32, n_labels=3)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config_text(tmp_path))
    folds = tmp_path / "folds.csv"
    pd.DataFrame({"image": data["train"]["image"], "fold": np.arange(24) % 3}).to_csv(
        folds, index=False
    )
    work = tmp_path / "cnn"
    work.mkdir()
    build_model("small_cnn", 3, 32, "none", 1, 16, 8).save(work / "ckpt_epoch001.keras")
    emb = tmp_path / "embed" / "cnn.small_cnn.fold0.npz"
    embed_fold(load_config(cfg), "small_cnn", 0, folds, work, emb)
    index = tmp_path / "similar" / "index.npz"
    assert main(["build", "--config", str(cfg), "--embedding", str(emb), "--out", str(index)]) == 0
    loaded = SimilarityIndex.load(index)
    assert loaded.embeddings.shape == (24, 32) and loaded.model_path.endswith("001.keras")

    capsys.readouterr()
    image = tmp_path / "train" / "images" / "train_005.png"
    assert main(["query", "--index", str(index), "--image", str(image), "--k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[0] == "train_005.png"
    assert float(lines[0].split()[1]) == pytest.approx(1.0, abs=1e-4)

    out = tmp_path / "similar" / "metrics.json"
    assert (
        main(
            ["evaluate", "--index", str(index), "--config", str(cfg), "--k", "3", "--out", str(out)]
            + ["--embedding", str(emb)]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["k"] == 3 and result["n_queries"] == 6 and result["n_database"] == 24
    assert 0.0 <= result["model_precision_at_k"] <= 1.0
    assert 0.0 <= result["pixels_precision_at_k"] <= 1.0

    assert main(["query", "--index", str(index), "--image", str(tmp_path / "nope.png")]) == 2


def test_pixel_index_finds_each_image_itself(tmp_path):
    write_dataset(tmp_path, n_train=12, n_test=2, size=32, n_labels=2)
    paths = sorted((tmp_path / "train" / "images").iterdir())
    index = build_index(
        [p.name for p in paths], paths, np.zeros((12, 1)), ("x",), None, 32, pixel_size=8
    )
    assert index.kind == "pixels" and index.embeddings.shape == (12, 192)
    rows, scores = index.search(index.embed(paths[:3]), 1)
    np.testing.assert_array_equal(rows[:, 0], [0, 1, 2])
