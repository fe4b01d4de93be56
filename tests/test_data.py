import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.data.contract import read_dataset, read_labels, read_test_ids, read_test_truth


def _write(tmp_path, text, images=("a.png", "b.png", "c.png")):
    d = tmp_path / "train"
    (d / "images").mkdir(parents=True)
    for name in images:
        cv2.imwrite(str(d / "images" / name), np.zeros((8, 8, 3), np.uint8))
    (d / "labels.csv").write_bytes(text.encode() if isinstance(text, str) else text)
    return d


def test_reads_labels_with_unknown_cells(tmp_path):
    d = _write(tmp_path, "image,red,blue\na.png,1,\nb.png,0,1\nc.png,1,0\n")
    t = read_labels(d)
    assert t.labels == ("red", "blue")
    assert list(t.ids) == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(np.isnan(t.y), [[False, True], [False, False], [False, False]])
    assert np.nansum(t.y, axis=0).tolist() == [2.0, 1.0]


def test_bom_crlf_whitespace_header(tmp_path):
    d = _write(tmp_path, b"\xef\xbb\xbfimage , red\r\na.png,1\r\nb.png,0\r\nc.png,1\r\n")
    assert read_labels(d).labels == ("red",)


@pytest.mark.parametrize(
    "text,match",
    [
        ("image,red\na.png,1\na.png,0\n", r"row 3: duplicate image id 'a.png' \(first at row 2\)"),
        ("image,red\na.png,2\nb.png,0\n", r"row 2, column 'red': value '2' is not 0, 1 or empty"),
        ("image,red\na.png,\nb.png,\n", "label column 'red' is empty"),
        ("img,red\na.png,1\n", "no 'image' column"),
        ("image,red\nz.png,1\n", r"row 2: image 'z.png' not found"),
        ("image,red\n", "has a header but no rows"),
        ("", "is empty"),
    ],
)
def test_bad_labels_name_file_and_row(tmp_path, text, match):
    d = _write(tmp_path, text)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        read_labels(d)


def test_test_ids_from_folder_and_disjoint(tmp_path):
    d = tmp_path / "test" / "images"
    d.mkdir(parents=True)
    for n in ("b.png", "a.jpg", "notes.txt"):
        (d / n).write_bytes(b"x")
    ids, _ = read_test_ids(tmp_path / "test", check_images=False)
    assert list(ids) == ["a.jpg", "b.png"]
    train = _write(tmp_path, "image,red\na.jpg,1\n", images=())
    with pytest.raises(ValueError, match="appear in both.*'a.jpg'"):
        read_dataset(train, tmp_path / "test", check_images=False)


def test_labels_roundtrip_via_pandas(tmp_path):
    d = _write(tmp_path, "image,x\na.png,1.0\nb.png,0\nc.png,0\n")
    assert pd.isna(read_labels(d).y).sum() == 0


def test_ids_without_extension_resolve(tmp_path):
    d = _write(
        tmp_path,
        "image,x\n000001,1\n000002,0\nc.png,1\n",
        images=("000001.jpg", "000002.PNG", "c.png"),
    )
    t = read_labels(d)
    assert [p.name for p in t.paths()] == ["000001.jpg", "000002.PNG", "c.png"]


def test_all_zero_and_all_one_columns_warn_but_load(tmp_path, caplog):
    d = _write(tmp_path, "image,never,always,x\na.png,0,1,1\nb.png,0,1,0\nc.png,,1,1\n")
    with caplog.at_level("WARNING"):
        t = read_labels(d)
    assert t.labels == ("never", "always", "x")
    text = caplog.text
    assert "'never' is 0 in every known row" in text and "'always' is 1 in every known row" in text


def test_reserved_duplicate_and_padded_names(tmp_path):
    d = _write(tmp_path, "image,red,fold\na.png,1,0\n", images=("a.png",))
    with pytest.raises(ValueError, match="label column 'fold' has a name the pipeline uses"):
        read_labels(d)
    (d / "labels.csv").write_text("image,red,red \na.png,1,0\n")
    with pytest.raises(ValueError, match="column 3 'red ' repeats column 2 'red'"):
        read_labels(d)
    (d / "images" / " a.png").write_bytes((d / "images" / "a.png").read_bytes())
    (d / "labels.csv").write_text("image,red\n a.png,1\n")
    assert read_labels(d).ids.tolist() == [" a.png"]  # the file has the space: kept
    (d / "labels.csv").write_text("image,red\nNA,1\n")
    (d / "images" / "NA.jpg").write_bytes((d / "images" / "a.png").read_bytes())
    assert read_labels(d).ids.tolist() == ["NA"]


def test_test_truth_honours_id_column(tmp_path):
    # a non-`image` id column, ids pandas would turn into NaN or numbers, an unknown cell
    path = tmp_path / "truth.csv"
    path.write_text("photo,blue,red\nNA,1,0\n001,0,\nb.png,1,1\n")
    truth = read_test_truth(path, ["red", "blue"], id_column="photo")
    assert list(truth.index) == ["NA", "001", "b.png"]
    assert list(truth.columns) == ["red", "blue"]
    rows = read_test_truth(path, ["red", "blue"], "photo", test_ids=["b.png", "NA"]).to_numpy()
    np.testing.assert_array_equal(rows, np.array([[1, 1], [0, 1]], np.float32))
    assert np.isnan(truth.loc["001", "red"]) and truth.dtypes.iloc[0] == np.float32
    with pytest.raises(ValueError, match="no 'image' column"):
        read_test_truth(path, ["red"])
    with pytest.raises(ValueError, match=r"missing label column\(s\) \['green'\]"):
        read_test_truth(path, ["green"], "photo")
    with pytest.raises(ValueError, match="does not list every test image.*'zz'"):
        read_test_truth(path, ["red"], "photo", test_ids=["NA", "zz"])
    path.write_text("photo,red\na,2\n")
    with pytest.raises(ValueError, match="row 2, column 'red'"):
        read_test_truth(path, ["red"], "photo")


def test_test_ids_from_a_sample_submission_when_no_test_csv(tmp_path):
    """A Kaggle test folder (images + sample_submission.csv): the sample's ids, in its
    order and as written, are the test list; test.csv, when present, still wins."""
    d = tmp_path / "test" / "images"
    d.mkdir(parents=True)
    for n in ("001.jpg", "002.jpg", "010.jpg"):
        cv2.imwrite(str(d / n), np.zeros((8, 8, 3), np.uint8))
    sample = tmp_path / "test" / "sample_submission.csv"
    sample.write_text("Id,tags\n010,a\n001,\n002,\n")
    ids, _ = read_test_ids(tmp_path / "test")
    assert list(ids) == ["010", "001", "002"]
    sample.write_text("Id,tags\n010,a\n001,\n003,\n")
    with pytest.raises(FileNotFoundError, match=r"sample_submission.csv row 4: image '003'"):
        read_test_ids(tmp_path / "test")
    (tmp_path / "test" / "test.csv").write_text("image\n002.jpg\n")
    assert list(read_test_ids(tmp_path / "test")[0]) == ["002.jpg"]
