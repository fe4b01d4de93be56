import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import load_submission_votes, save_submission
from pipeline.data.contract import read_sample_submission
from pipeline.ensemble.submit import (
    fold_votes,
    format_like_sample,
    labels_frame,
    majority_vote,
    sample_format,
    submission_frame,
    validate_against_sample,
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


# --- the competition's sample submission ------------------------------------------------

LABELS = ["a", "b", "c"]
TEST_IDS = ["001.jpg", "002.jpg", "003.jpg"]
PRED = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])  # rows in TEST_IDS order


def _sample(tmp_path, text: str):
    path = tmp_path / "sample_submission.csv"
    path.write_text(text)
    frame, id_col = read_sample_submission(path)
    return sample_format(frame, path, LABELS, id_col)


def test_wide_sample_order_columns_and_ids_without_extension(tmp_path):
    # the sample's rows shuffled, its columns in another order, ids without ".jpg", zeros kept
    fmt = _sample(tmp_path, "Id,c,a,b\n003,0.5,0.5,0.5\n001,0,0,0\n002,1,1,1\n")
    assert (fmt.kind, fmt.id_column, fmt.columns) == ("wide", "Id", ("c", "a", "b"))
    df = format_like_sample(fmt, TEST_IDS, PRED, LABELS, "test.csv")
    assert list(df.columns) == ["Id", "c", "a", "b"]
    assert df["Id"].tolist() == ["003", "001", "002"]
    assert df[["c", "a", "b"]].to_numpy().tolist() == [[0, 0, 1], [1, 1, 0], [0, 0, 0]]
    validate_against_sample(df, fmt, LABELS)
    out = tmp_path / "sub.csv"
    save_submission(out, df)
    assert out.read_text().splitlines() == ["Id,c,a,b", "003,0,0,1", "001,1,1,0", "002,0,0,0"]
    # the report reads it back in test order, whichever layout
    votes = load_submission_votes(out, TEST_IDS, LABELS, "image")
    assert votes.tolist() == PRED.tolist()


def test_tags_sample_space_separated_in_label_order(tmp_path):
    fmt = _sample(tmp_path, "image_name,tags\n002.jpg,\n001.jpg,b a\n003.jpg,c\n")
    assert (fmt.kind, fmt.columns) == ("tags", ("tags",))
    df = format_like_sample(fmt, TEST_IDS, PRED, LABELS, "test.csv")
    assert df.to_numpy().tolist() == [["002.jpg", ""], ["001.jpg", "a c"], ["003.jpg", "b"]]
    validate_against_sample(df, fmt, LABELS)
    out = tmp_path / "sub.csv"
    save_submission(out, df)
    assert out.read_text() == "image_name,tags\n002.jpg,\n001.jpg,a c\n003.jpg,b\n"
    assert load_submission_votes(out, TEST_IDS, LABELS).tolist() == PRED.tolist()


def test_sample_id_with_extension_matches_test_id_without(tmp_path):
    fmt = _sample(tmp_path, "image,tags\n3.png,\n1.png,\n2.png,\n")
    df = format_like_sample(fmt, ["1", "2", "3"], PRED, LABELS, "test.csv")
    assert df["tags"].tolist() == ["b", "a c", ""]


@pytest.mark.parametrize(
    "text,match",
    [
        ("image,a,b,x\n001,0,0,0\n", r"header: column 'x' is not a label of labels.csv"),
        ("image,a,b\n001,0,0\n", r"header: lacks label column\(s\) \['c'\]"),
        ("image,a,tags\n001,0,\n", "header: column 'tags' is not a label"),
        ("image\n001\n", "only the id column"),
        ("image,tags\n001,a\n002,a dress\n", r"row 3, column 'tags': tag 'dress' is not a label"),
        ("image,a,b,c\n001,0,0,0\n001,1,1,1\n", "row 3: duplicate id '001' .first at row 2."),
        ("image,a,b,c\n", "has a header but no rows"),
    ],
)
def test_sample_format_errors_name_file_and_row(tmp_path, text, match):
    with pytest.raises(ValueError, match=match) as err:
        _sample(tmp_path, text)
    assert "sample_submission.csv" in str(err.value)


@pytest.mark.parametrize(
    "ids,match",
    [
        (["001", "002", "003", "004"], r"row 5: id '004' is not a test image \(not in test.csv\)"),
        (["001", "003"], r"lacks test image '002.jpg' of test.csv \(row 3\) \(1 missing\)"),
        (["001", "001.jpg", "002", "003"], "row 3: id '001.jpg' names the same test image"),
    ],
)
def test_sample_ids_must_be_the_test_images(tmp_path, ids, match):
    fmt = _sample(tmp_path, "image,tags\n" + "".join(f"{i},\n" for i in ids))
    with pytest.raises(ValueError, match=match):
        format_like_sample(fmt, TEST_IDS, PRED, LABELS, "test.csv")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d.iloc[::-1], r"row 2: id '003' where .*sample_submission.csv has '001'"),
        (lambda d: d.rename(columns={"tags": "labels"}), "do not match"),
        (lambda d: d.assign(tags=["a a", "", ""]), "row 2, column 'tags': 'a a'"),
        (lambda d: d.assign(tags=["a", "shoe", ""]), "row 3, column 'tags': 'shoe'"),
        (lambda d: d.iloc[:2], "submission has 2 rows"),
    ],
)
def test_validate_against_sample_rejects(tmp_path, mutate, match):
    fmt = _sample(tmp_path, "image,tags\n001,\n002,\n003,\n")
    df = format_like_sample(fmt, TEST_IDS, PRED, LABELS, "test.csv")
    with pytest.raises(ValueError, match=match):
        validate_against_sample(mutate(df), fmt, LABELS)


def test_wide_validator_rejects_non_binary(tmp_path):
    fmt = _sample(tmp_path, "image,a,b,c\n001,0,0,0\n002,0,0,0\n003,0,0,0\n")
    df = format_like_sample(fmt, TEST_IDS, PRED, LABELS, "test.csv").assign(b=[0, 2, 0])
    with pytest.raises(ValueError, match="row 3, column 'b': value 2 is not 0 or 1"):
        validate_against_sample(df, fmt, LABELS)
