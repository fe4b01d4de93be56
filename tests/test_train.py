import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from pipeline.config import load_config  # noqa: E402
from pipeline.train import augment_image, epoch_indices, train_fold  # noqa: E402
from stages.train_cnn import build_job  # noqa: E402
from tests.conftest import tiny_config_text  # noqa: E402


def test_epoch_indices_sampling():
    y = np.zeros((1000, 2))
    y[:20, 1] = 1  # rare label (2%)
    y[500:, 0] = 1
    a = epoch_indices(y, seed=1, epoch=1, keep_fraction=0.8, rare_threshold=0.05, rare_upsample=3)
    b = epoch_indices(y, seed=1, epoch=1, keep_fraction=0.8, rare_threshold=0.05, rare_upsample=3)
    c = epoch_indices(y, seed=1, epoch=2, keep_fraction=0.8, rare_threshold=0.05, rare_upsample=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(c))
    counts = np.bincount(a, minlength=1000)
    assert (counts[:20] == 3).all()  # rare rows always in, up-sampled x3
    kept = (counts[20:] > 0).mean()
    assert 0.75 < kept < 0.85  # the rest down-sampled to ~80%
    assert counts[20:].max() == 1


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
    from pipeline.data import read_labels
    from pipeline.folds import make_folds

    table = read_labels(cfg.data.train_dir)
    folds_csv = tmp_path / "folds.csv"
    import pandas as pd

    pd.DataFrame({"image": table.ids, "fold": make_folds(table.y, 3, 0)}).to_csv(
        folds_csv, index=False
    )
    return build_job(cfg, "small_cnn", 1, folds_csv)


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
    one = dataclasses.replace(job, epochs=1)
    train_fold(one, tmp_path / "w2", tmp_path / "tmp.npz")
    assert sorted(p.name for p in Path(tmp_path / "w2").glob("ckpt*")) == ["ckpt_epoch001.keras"]
    out2 = tmp_path / "p2.npz"
    train_fold(job, tmp_path / "w2", out2)
    with np.load(out2) as z:
        np.testing.assert_array_equal(z["oof"], full[0])
        np.testing.assert_array_equal(z["test"], full[1])
