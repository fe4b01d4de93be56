"""A CNN fold's embedding file (`make embed-cnn`): the consumers get, from the file, the
floats they used to compute from the checkpoint themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import load_embeddings, save_embeddings
from pipeline.models.cnn_embed import fold_features
from tests.conftest import tiny_config_text, train_args, write_dataset

FOLD = 1


@pytest.fixture(scope="module")
def trained_fold(tmp_path_factory):
    """Tiny data, a folds file, fold ``FOLD`` of small_cnn trained one epoch by the stage
    `make train-cnn` runs, and its embedding file written by the `make embed-cnn` stage."""
    from pipeline.config.schema import load_config
    from pipeline.data.folds import make_folds
    from stages.embed_cnn import main as embed_main
    from stages.train_cnn import main as train_main

    root = tmp_path_factory.mktemp("cnn_embed")
    data = write_dataset(root, n_train=30, n_test=6, size=32, n_labels=3)
    cfg_path = root / "tiny.toml"
    cfg_path.write_text(tiny_config_text(root, epochs=1))
    folds = make_folds(data["train"].iloc[:, 1:].to_numpy(float), 3, 0)
    folds_csv = root / "folds.csv"
    pd.DataFrame({"image": data["train"]["image"], "fold": folds}).to_csv(folds_csv, index=False)
    work = root / "cnn" / f"small_cnn.fold{FOLD}"
    args = train_args(cfg_path, "small_cnn", folds_csv, work, root / "preds.npz", fold=FOLD)
    assert train_main([str(a) for a in args]) == 0
    emb = root / "embed" / f"cnn.small_cnn.fold{FOLD}.npz"
    common = ["--config", str(cfg_path), "--backbone", "small_cnn", "--fold", str(FOLD)]
    common += ["--folds", str(folds_csv), "--cnn-work-dir", str(work), "--out", str(emb)]
    assert embed_main(common) == 0
    return root, load_config(cfg_path), folds_csv, folds, work, emb


@pytest.fixture(scope="module")
def from_checkpoint(trained_fold):
    """What each consumer computed before the file existed: Two-Flow and the baseline
    embedded the fold's fit / val / test images with its last checkpoint, one predict pass
    each; similarity search embedded every training image in one pass."""
    from pipeline.data.contract import read_dataset
    from pipeline.models.inference import embed, load_checkpoint
    from pipeline.train.fold_dir import last_checkpoint

    root, cfg, folds_csv, folds, work, _ = trained_fold
    ckpt = last_checkpoint(work)
    model = load_checkpoint(ckpt)
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir)
    paths = np.array(ds.train.paths(), dtype=object)
    batch, tta = cfg.backbone("small_cnn").batch_size, cfg.train.tta_flip

    def run(part_paths):
        return embed(ckpt, list(part_paths), cfg.data.image_size, batch, tta, model=model)

    return ckpt, {
        "fit": run(paths[folds != FOLD]),
        "val": run(paths[folds == FOLD]),
        "test": run(ds.test_paths()),
        "all_train": run(paths),
    }


def test_the_file_holds_the_checkpoint_embeddings_bit_for_bit(trained_fold, from_checkpoint):
    _, cfg, folds_csv, folds, _, emb = trained_fold
    ckpt, ref = from_checkpoint
    rows, deep, source = fold_features(cfg, "small_cnn", FOLD, folds_csv, emb)
    assert source == str(ckpt) and ckpt.name == "ckpt_epoch001.keras"
    for part in ("fit", "val", "test"):
        assert deep[part].dtype == np.float32 and deep[part].shape[1] == 32  # small_cnn, width 8
        np.testing.assert_array_equal(deep[part], ref[part])
    assert len(rows.fit_paths) == (folds != FOLD).sum() and len(rows.val_ids) == 10
    # the file's training rows, in labels.csv order, are one pass over every training
    # image too (each image's embedding does not depend on its batch-mates)
    np.testing.assert_array_equal(load_embeddings(emb)["train"], ref["all_train"])
    assert not np.allclose(ref["fit"][0], ref["fit"][1])  # real, image-dependent features


def test_twoflow_and_baseline_predict_as_from_the_checkpoint(
    trained_fold, from_checkpoint, tmp_path
):
    from pipeline.members.baseline import PerLabelLogistic, run_baseline_fold
    from pipeline.members.twoflow import TwoFlowModel, run_twoflow_fold
    from pipeline.models.inference import downsample_pixels

    _, cfg, folds_csv, _, _, emb = trained_fold
    _, ref = from_checkpoint
    rows, _, _ = fold_features(cfg, "small_cnn", FOLD, folds_csv, emb)
    small = dict(n_components=24, pixel_size=8, n_trees=20, top_features=12, selector_trees=10)

    run_twoflow_fold(
        cfg, "small_cnn", FOLD, folds_csv, emb, tmp_path / "tf.npz", TwoFlowModel(**small)
    )
    pix = {p: downsample_pixels(rows.paths(p), 8) for p in ("fit", "val", "test")}
    model = TwoFlowModel(**small).fit(pix["fit"], ref["fit"], rows.fit_y)
    with np.load(tmp_path / "tf.npz") as z:
        np.testing.assert_array_equal(z["oof"][0], model.predict_proba(pix["val"], ref["val"]))
        np.testing.assert_array_equal(z["test"][0], model.predict_proba(pix["test"], ref["test"]))

    run_baseline_fold(cfg, "small_cnn", FOLD, folds_csv, emb, tmp_path / "lr.npz")
    lr = PerLabelLogistic().fit(ref["fit"], rows.fit_y)
    with np.load(tmp_path / "lr.npz") as z:
        np.testing.assert_array_equal(z["oof"][0], lr.predict_proba(ref["val"]).astype(np.float32))
        np.testing.assert_array_equal(
            z["test"][0], lr.predict_proba(ref["test"]).astype(np.float32)
        )


def test_similar_indexes_and_queries_as_from_the_checkpoint(
    trained_fold, from_checkpoint, tmp_path
):
    import json

    from pipeline.similar import SimilarityIndex, l2_normalise
    from stages.similar import main

    root, _, _, _, _, emb = trained_fold
    ckpt, ref = from_checkpoint
    cfg = str(root / "tiny.toml")
    index = tmp_path / "index.npz"
    assert main(["build", "--config", cfg, "--embedding", str(emb), "--out", str(index)]) == 0
    loaded = SimilarityIndex.load(index)
    np.testing.assert_array_equal(loaded.embeddings, l2_normalise(ref["all_train"]))
    assert loaded.model_path == str(ckpt) and loaded.kind == "model"
    # a new query goes through the checkpoint the file came from, as the test rows did
    test_paths = sorted((root / "test" / "images").iterdir())
    np.testing.assert_array_equal(loaded.embed(test_paths, 16), l2_normalise(ref["test"]))
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--config", cfg, "--index", str(index), "--embedding", str(emb)]
    assert main([*argv, "--k", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["n_queries"], result["n_database"], result["k"]) == (6, 30, 3)
    # a model index evaluated without its embedding file is refused
    assert main([*argv[:-2], "--k", "3", "--out", str(tmp_path / "m2.json")]) == 2


def test_a_file_of_another_data_set_is_refused(trained_fold, tmp_path):
    _, cfg, folds_csv, *_ = trained_fold
    bad = tmp_path / "bad.npz"
    save_embeddings(
        bad, ["x"] * 30, ["t"] * 6, np.zeros((30, 8)), np.zeros((6, 8)), "small_cnn", 32
    )
    with pytest.raises(ValueError, match="bad.npz: its train ids differ.*make embed-cnn"):
        fold_features(cfg, "small_cnn", FOLD, folds_csv, bad)
    with pytest.raises(FileNotFoundError, match="make embed-cnn"):
        fold_features(cfg, "small_cnn", FOLD, folds_csv, tmp_path / "none.npz")
