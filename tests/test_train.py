import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from pipeline.config.schema import load_config  # noqa: E402
from pipeline.train.fold import augment_image, train_fold  # noqa: E402
from pipeline.train.job import build_job  # noqa: E402
from tests.conftest import tiny_config_text  # noqa: E402


def test_augment_keeps_shape_and_is_seeded():
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    a = augment_image(img, np.random.default_rng(5), 32)
    b = augment_image(img, np.random.default_rng(5), 32)
    assert a.shape == (32, 32, 3)
    np.testing.assert_array_equal(a, b)


def _job(tiny_data, tmp_path, epochs=2):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(tiny_config_text(tiny_data, epochs=epochs))
    cfg = load_config(cfg_path)
    from pipeline.data.contract import read_labels
    from pipeline.data.folds import make_folds

    table = read_labels(cfg.data.train_dir)
    folds_csv = tmp_path / "folds.csv"
    import pandas as pd

    pd.DataFrame({"image": table.ids, "fold": make_folds(table.y, 3, 0)}).to_csv(
        folds_csv, index=False
    )
    return build_job(cfg, "small_cnn", 1, folds_csv)


def _with(job, **backbone):
    """``job`` with some of its backbone section's settings changed."""
    return dataclasses.replace(job, backbone=dataclasses.replace(job.backbone, **backbone))


def test_train_fold_outputs_and_resume(tiny_data, tmp_path):
    job = _job(tiny_data, tmp_path, epochs=2)
    out = tmp_path / "p.npz"
    train_fold(job, tmp_path / "w1", out)
    with np.load(out) as z:
        assert z["oof"].shape == (2, len(job.val_ids), len(job.labels))
        assert z["test"].shape == (2, len(job.test_ids), len(job.labels))
        assert list(z["val_ids"]) == list(job.val_ids)
        full = z["oof"].copy(), z["test"].copy()
    # same job interrupted after epoch 1, then resumed: identical predictions
    one = _with(job, epochs=1)
    train_fold(one, tmp_path / "w2", tmp_path / "tmp.npz")
    assert sorted(p.name for p in Path(tmp_path / "w2").glob("ckpt*")) == ["ckpt_epoch001.keras"]
    out2 = tmp_path / "p2.npz"
    train_fold(job, tmp_path / "w2", out2)
    with np.load(out2) as z:
        np.testing.assert_array_equal(z["oof"], full[0])
        np.testing.assert_array_equal(z["test"], full[1])


@pytest.mark.slow
def test_phases_freeze_then_unfreeze_and_resume_across_boundary(tiny_data, tmp_path):
    import keras

    from pipeline.models.backbones import build_model, feature_layers
    from pipeline.train.job import Phase

    job = _with(_job(tiny_data, tmp_path, epochs=2), phases=("head:1:1e-3:3e-3", "all:1:1e-4:1e-3"))
    assert job.phases == (Phase("head", 1, 1e-3, 3e-3), Phase("all", 1, 1e-4, 1e-3))
    train_fold(_with(job, epochs=1), tmp_path / "w", tmp_path / "one.npz")
    after1 = keras.saving.load_model(tmp_path / "w" / "ckpt_epoch001.keras")
    keras.utils.set_random_seed(job.seed)
    init = build_model(
        "small_cnn",
        len(job.labels),
        job.image_size,
        "none",
        job.backbone.head_layers,
        job.backbone.head_units,
        job.backbone.width,
        seed=job.seed,
    )
    for a, b in zip(feature_layers(after1), feature_layers(init), strict=True):
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            if a.__class__.__name__ != "BatchNormalization":
                np.testing.assert_array_equal(wa, wb)  # frozen in the head phase
    head_a = after1.get_layer("labels").get_weights()[0]
    assert not np.array_equal(head_a, init.get_layer("labels").get_weights()[0])
    train_fold(job, tmp_path / "w", tmp_path / "resumed.npz")
    train_fold(job, tmp_path / "w_full", tmp_path / "full.npz")
    with np.load(tmp_path / "resumed.npz") as a, np.load(tmp_path / "full.npz") as b:
        np.testing.assert_array_equal(a["oof"], b["oof"])
        assert not np.array_equal(a["oof"][0], a["oof"][1])


@pytest.mark.slow
def test_changed_job_does_not_resume_stale_checkpoints(tiny_data, tmp_path):
    job = _job(tiny_data, tmp_path, epochs=1)
    train_fold(job, tmp_path / "w", tmp_path / "a.npz")
    changed = _with(job, lr_max=job.backbone.lr_max * 2)
    train_fold(changed, tmp_path / "w", tmp_path / "b.npz")
    train_fold(changed, tmp_path / "w_clean", tmp_path / "c.npz")
    with np.load(tmp_path / "b.npz") as b, np.load(tmp_path / "c.npz") as c:
        np.testing.assert_array_equal(b["oof"], c["oof"])  # retrained, not resumed


def test_work_dir_kept_for_the_same_job_cleared_for_a_changed_one(tiny_data, tmp_path):
    """The resume rule without training: a work dir is resumed only by its own job."""
    from pipeline.train.fold import _prepare_work_dir

    job = _job(tiny_data, tmp_path, epochs=1)
    work = tmp_path / "w"
    work.mkdir()
    _prepare_work_dir(work, job)
    (work / "ckpt_epoch001.keras").write_bytes(b"checkpoint")
    _prepare_work_dir(work, dataclasses.replace(job))  # an equal job resumes
    assert (work / "ckpt_epoch001.keras").exists()
    _prepare_work_dir(work, _with(job, lr_max=job.backbone.lr_max * 2))
    assert sorted(p.name for p in work.iterdir()) == ["fingerprint.txt", "test_fingerprint.txt"]
