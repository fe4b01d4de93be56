import dataclasses

import numpy as np
import pytest

from pipeline.config.schema import BackboneConfig, TrainConfig
from pipeline.train.job import FoldJob, Phase, epoch_indices, job_fingerprint, parse_phases


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


def test_parse_phases_errors():
    assert parse_phases(["head:1", "all:2:1e-4:1e-3"], 1e-3, 1e-2)[1].lr_max == 1e-3
    with pytest.raises(ValueError, match="scope one of head, top, all"):
        parse_phases(["body:1"], 1e-3, 1e-2)


def _job(backbone: BackboneConfig | None = None, train: TrainConfig | None = None, fold=2):
    b = backbone or BackboneConfig("small_cnn", epochs=3, phases=("head:1", "all:2:1e-4:1e-3"))
    other = BackboneConfig("mobilenet_v2")
    y = np.array([[1.0, 0.0], [0.0, np.nan], [1.0, 1.0]], dtype=np.float32)
    return FoldJob(
        backbone=b,
        train=train or TrainConfig((b, other), seed=7),
        fold=fold,
        image_size=32,
        labels=("a", "b"),
        train_paths=["x/1.png", "x/2.png", "x/3.png"],
        train_y=y,
        val_ids=np.array(["4.png"]),
        val_paths=["x/4.png"],
        test_ids=np.array(["t.png"]),
        test_paths=["t/t.png"],
    )


def test_derived_values_come_from_the_sections():
    job = _job()
    assert (job.name, job.epochs, job.batch_size) == ("small_cnn", 3, 64)
    assert job.seed == 7002 and job.augment_seed(3) == 7002 * 100_003 + 3
    assert job.phases == (Phase("head", 1, 3e-4, 3e-3), Phase("all", 2, 1e-4, 1e-3))
    assert [job.phase_of(e).scope for e in (1, 2, 3)] == ["head", "all", "all"]
    # a seed repeat: its own seed, the same per-fold offset
    repeat = _job(dataclasses.replace(job.backbone, name="small_cnn_s2", arch="small_cnn", seed=8))
    assert repeat.seed == 8002 and repeat.backbone.architecture == "small_cnn"
    plain = _job(BackboneConfig("small_cnn", epochs=4, lr_min=1e-4, lr_max=1e-3))
    assert plain.phase_of(4) == Phase("all", 4, 1e-4, 1e-3)
    with pytest.raises(ValueError, match="phase 'body:1'"):
        _job(BackboneConfig("small_cnn", epochs=1, phases=("body:1",)))


def test_fingerprint_follows_every_training_setting_and_only_them():
    job = _job()
    base = job_fingerprint(job)
    assert job_fingerprint(_job()) == base
    # every backbone and every shared [train] setting changes it ...
    changes = {
        "arch": "mobilenet_v3_small",
        "seed": 9,
        "weights": "imagenet",
        "epochs": 4,
        "batch_size": 32,
        "lr_max": 1e-2,
        "lr_min": 1e-5,
        "head_layers": 2,
        "head_units": 128,
        "width": 16,
        "bn_momentum": 0.99,
        "phases": ("head:1", "all:2"),
        "unfreeze_top": 0.5,
    }
    assert set(changes) == {f.name for f in dataclasses.fields(BackboneConfig)} - {"name"}
    seen = {base}
    for key, value in changes.items():
        b = dataclasses.replace(job.backbone, **{key: value})
        seen.add(job_fingerprint(dataclasses.replace(job, backbone=b)))
    train = {
        "loss": "focal",
        "pos_weight": 2.0,
        "focal_gamma": 1.0,
        "focal_alpha": 0.5,
        "keep_fraction": 0.5,
        "rare_threshold": 0.1,
        "rare_upsample": 3,
        "tta_flip": False,
        "seed": 8,
    }
    assert set(train) == {f.name for f in dataclasses.fields(TrainConfig)} - {"backbones"}
    for key, value in train.items():
        seen.add(job_fingerprint(dataclasses.replace(job, train=_with_train(job, key, value))))
    rows = {"fold": 1, "image_size": 48, "labels": ("a", "c"), "train_paths": ["x/9.png"] * 3}
    rows |= {"train_y": np.zeros((3, 2), np.float32), "val_paths": ["x/5.png"]}
    for key, value in rows.items():
        seen.add(job_fingerprint(dataclasses.replace(job, **{key: value})))
    assert len(seen) == 1 + len(changes) + len(train) + len(rows)
    # ... editing another backbone's section does not (its jobs are not this one)
    others = (job.backbone, BackboneConfig("mobilenet_v2", epochs=9))
    assert (
        job_fingerprint(dataclasses.replace(job, train=_with_train(job, "backbones", others)))
        == base
    )


def _with_train(job: FoldJob, key: str, value) -> TrainConfig:
    return dataclasses.replace(job.train, **{key: value})


def test_fingerprint_follows_image_contents_and_leaves_the_test_set_to_its_own(tmp_path):
    """A picture replaced under the same name is another job; a changed test set is not
    (its images are predicted again from the saved weights: test_fingerprint)."""
    from pipeline.train.job import test_fingerprint

    for name, value in (("a.png", b"one"), ("b.png", b"two"), ("t.png", b"test")):
        (tmp_path / name).write_bytes(value)
    job = dataclasses.replace(
        _job(),
        train_paths=[tmp_path / "a.png"],
        train_y=np.zeros((1, 2), np.float32),
        val_paths=[tmp_path / "b.png"],
        test_ids=np.array(["t.png"]),
        test_paths=[tmp_path / "t.png"],
    )
    base, base_test = job_fingerprint(job), test_fingerprint(job)
    (tmp_path / "a.png").write_bytes(b"another picture")
    assert job_fingerprint(job) != base and test_fingerprint(job) != base_test
    (tmp_path / "a.png").write_bytes(b"one")
    assert job_fingerprint(job) == base
    (tmp_path / "t.png").write_bytes(b"another test picture")
    assert job_fingerprint(job) == base and test_fingerprint(job) != base_test
    more = dataclasses.replace(job, test_ids=np.array(["t.png", "u.png"]))
    assert job_fingerprint(more) == base and test_fingerprint(more) != test_fingerprint(job)
