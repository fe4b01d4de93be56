import numpy as np
import pandas as pd
import pytest

from pipeline.submit import (
    fold_votes,
    labels_frame,
    majority_vote,
    submission_frame,
    validate_submission,
)


def test_votes_and_majority():
    probs = np.array([[[0.6, 0.2]], [[0.4, 0.9]], [[0.7, 0.1]]])  # K=3, m=1, L=2
    votes = fold_votes(probs, np.array([0.5, 0.5]))
    assert votes[:, 0].tolist() == [[1, 0], [0, 1], [1, 0]]
    assert majority_vote(votes).tolist() == [[1, 0]]


@pytest.mark.parametrize("tie,expected", [("positive", 1), ("negative", 0)])
def test_ties_follow_config(tie, expected):
    votes = np.array([[[1]], [[0]], [[1]], [[0]]])
    assert majority_vote(votes, tie)[0, 0] == expected


def test_frames():
    pred = np.array([[1, 0, 1], [0, 0, 0]])
    df = submission_frame(np.array(["x", "y"]), pred, ["a", "b", "c"])
    assert list(df.columns) == ["image", "a", "b", "c"]
    validate_submission(df, ["x", "y"], ["a", "b", "c"])
    lab = labels_frame(np.array(["x", "y"]), pred, ["a", "b", "c"])
    assert lab["labels"].tolist() == ["a c", ""]


def _df():
    return pd.DataFrame({"image": ["x", "y"], "a": [1, 0], "b": [0, 1]})


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d.rename(columns={"b": "c"}), "do not match the expected"),
        (lambda d: d[["image", "b", "a"]], "do not match the expected"),
        (lambda d: d.assign(image=["x", "x"]), "row 3: image 'x' appears twice"),
        (lambda d: d.iloc[:1], "lacks 1 test image"),
        (lambda d: d.assign(image=["x", "z"]), "lacks 1 test image"),
        (lambda d: d.iloc[::-1], "row 2: image 'y' out of order"),
        (lambda d: d.assign(a=[1, 2]), "row 3, column 'a': value 2 is not 0 or 1"),
        (lambda d: d.assign(b=[0.0, np.nan]), "column 'b'"),
    ],
)
def test_validator_rejects(mutate, match):
    with pytest.raises(ValueError, match=match):
        validate_submission(mutate(_df()), ["x", "y"], ["a", "b"])


def test_validator_rejects_extra_id():
    df = pd.DataFrame({"image": ["x", "y", "q"], "a": [1, 0, 0], "b": [0, 1, 0]})
    with pytest.raises(ValueError, match="not in the test list"):
        validate_submission(df, ["x", "y"], ["a", "b"])
