"""The distilled student's targets: honest soft labels, no test truth."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.train.student import soft_targets


def test_soft_targets_blend_labels_with_oof_and_keep_unknowns():
    y = np.array([[1.0, 0.0], [np.nan, 1.0]])
    oof = np.array([[0.6, 0.2], [np.nan, 0.9]])
    test = np.array([[[0.2, 0.4]], [[0.4, 0.8]]])  # (K=2, m=1, L=2)
    train, tst = soft_targets(y, oof, test, hard_weight=0.5)
    np.testing.assert_allclose(train[0], [0.8, 0.1])
    assert np.isnan(train[1, 0]) and train[1, 1] == pytest.approx(0.95)
    np.testing.assert_allclose(tst, [[0.3, 0.6]])
    hard, _ = soft_targets(y, oof, test, hard_weight=1.0)
    np.testing.assert_array_equal(hard, y.astype(np.float32))


def test_student_job_refuses_a_stack_of_other_images(tmp_path):
    from pipeline.config.schema import config_from_dict
    from pipeline.train.student import student_job
    from tests.conftest import write_dataset

    write_dataset(tmp_path, n_train=6, n_test=2, size=16, n_labels=2)
    cfg = config_from_dict(
        {
            "data": {"train_dir": str(tmp_path / "train"), "test_dir": str(tmp_path / "test")},
            "train": {"backbones": [{"name": "small_cnn"}]},
            "student": {"enabled": True},
        }
    )
    stacked = {
        "train_ids": np.array(["nope.png"] * 6),
        "test_ids": np.array(["x"] * 2),
        "labels": np.array(["a", "b"]),
    }
    with pytest.raises(ValueError, match="other training or test images.*make stack"):
        student_job(cfg, stacked)


def test_teacher_thresholds_reproduce_the_vote_not_the_truth():
    """The student's cut per label is where its probabilities best match the ensemble's final
    labels (the fold majority), whatever the truth says."""
    from pipeline.train.student import teacher_thresholds

    rng = np.random.default_rng(0)
    student = rng.random((200, 2))
    # the teacher says "positive" exactly where the student is above 0.7 (label 0) / 0.3
    stacked = np.stack([np.where(student > [0.7, 0.3], 0.9, 0.1)] * 3)  # K=3 folds agree
    th = teacher_thresholds(student, stacked, np.array([0.5, 0.5]), "positive", 2.0, 0.01)
    assert th[0] == pytest.approx(0.7, abs=0.011) and th[1] == pytest.approx(0.3, abs=0.011)
