"""The competition's sample submission through the real `stages.submit` CLI: the written
file follows the sample's ids, order, columns and label encoding; a sample that does not
fit the run exits 2 with one `error:` line naming the file and row, and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import save_stacked, save_thresholds
from tests.conftest import run_stage, tiny_config_text, write_dataset

N_TEST = 6


def _stack(root: Path, test_ids: list[str], labels: list[str]) -> np.ndarray:
    """A synthetic finished stack (3 CNN folds) + thresholds 0.5; returns the majority vote
    the submission must hold, rows in ``test_ids`` order."""
    rng = np.random.default_rng(3)
    n, m, n_labels = 8, len(test_ids), len(labels)
    y = (rng.random((n, n_labels)) < 0.5).astype(np.float32)
    test = rng.random((3, m, n_labels)).astype(np.float32)
    save_stacked(
        root / "stacked.npz",
        labels,
        [f"train_{i:03d}.png" for i in range(n)],
        test_ids,
        y,
        y,
        test,
        ["xgb"],
        y[None],
        test[None],
        np.zeros(n_labels, int),
        ["per_label"] * n_labels,
    )
    save_thresholds(
        root / "thresholds.json", labels, [0.5] * n_labels, [0.0] * n_labels, 0.0, "fixed", {}
    )
    return ((test >= 0.5).sum(axis=0) >= 2).astype(int)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sub")
    data = write_dataset(root, n_train=8, n_test=N_TEST, size=16, n_labels=4)
    (root / "c.toml").write_text(tiny_config_text(root))
    labels = [c for c in data["train"].columns if c != "image"]
    test_ids = data["test"]["image"].tolist()
    vote = _stack(root, test_ids, labels)
    return root, labels, test_ids, vote


def _submit(root: Path, out_dir: Path, config: Path | None = None):
    out = out_dir / "sub.csv"
    out_labels = out_dir / "sub.labels.csv"
    r = run_stage(
        "submit",
        "--config",
        config or root / "c.toml",
        "--stacked",
        root / "stacked.npz",
        "--thresholds",
        root / "thresholds.json",
        "--out",
        out,
        "--out-labels",
        out_labels,
    )
    return r, out, out_labels


def _sample(root: Path, text: str) -> Path:
    path = root / "test" / "sample_submission.csv"
    path.write_text(text)
    return path


@pytest.fixture
def work(built):
    """The built run with a sample submission the test writes, removed afterwards."""
    root = built[0]
    yield built
    (root / "test" / "sample_submission.csv").unlink(missing_ok=True)


def test_wide_sample_shuffled_rows_and_columns_ids_without_extension(work, tmp_path):
    root, labels, test_ids, vote = work
    order = np.random.default_rng(0).permutation(N_TEST)
    columns = labels[::-1]
    stems = [test_ids[k].removesuffix(".png") for k in order]
    rows = "".join(f"{s},{','.join(['0.5'] * len(labels))}\n" for s in stems)
    _sample(root, "ImageId," + ",".join(columns) + "\n" + rows)
    r, out, out_labels = _submit(root, tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId," + ",".join(columns)
    expected = [
        ",".join([s, *(str(vote[k, labels.index(c)]) for c in columns)])
        for s, k in zip(stems, order, strict=True)
    ]
    assert lines[1:] == expected
    assert "wide as" in r.stderr
    # the labels file stays in test order
    assert out_labels.read_text().splitlines()[0] == "image_id,labels"


def test_tags_sample(work, tmp_path):
    root, labels, test_ids, vote = work
    order = np.random.default_rng(1).permutation(N_TEST)
    _sample(root, "image_name,tags\n" + "".join(f"{test_ids[k]},{labels[0]}\n" for k in order))
    r, out, _ = _submit(root, tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    lines = out.read_text().splitlines()
    assert lines[0] == "image_name,tags"
    for line, k in zip(lines[1:], order, strict=True):
        tags = " ".join(lab for j, lab in enumerate(labels) if vote[k, j])
        assert line == f"{test_ids[k]},{tags}"


def test_without_sample_the_wide_pair_stays(work, tmp_path):
    root, labels, test_ids, vote = work
    r, out, out_labels = _submit(root, tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    lines = out.read_text().splitlines()
    assert lines[0] == "image," + ",".join(labels)
    assert lines[1] == ",".join([test_ids[0], *map(str, vote[0])])
    assert out_labels.is_file()


def _bad_cases(labels, test_ids):
    head = "image," + ",".join(labels)
    zeros = "," + ",".join(["0"] * len(labels))
    body = "".join(f"{i}{zeros}\n" for i in test_ids)
    return {
        "unknown label column": (
            "image," + ",".join([*labels[:-1], "hat"]) + "\n" + body,
            ["sample_submission.csv header", "column 'hat' is not a label"],
        ),
        "unknown tag": (
            "image,tags\n"
            + "".join(f"{i},{'hat' if k == 2 else ''}\n" for k, i in enumerate(test_ids)),
            ["sample_submission.csv row 4, column 'tags': tag 'hat'"],
        ),
        "extra id": (
            head + "\n" + body + f"test_999.png{zeros}\n",
            [f"sample_submission.csv row {N_TEST + 2}: id 'test_999.png' is not a test image"],
        ),
        "missing id": (
            head + "\n" + "".join(f"{i}{zeros}\n" for i in test_ids if i != test_ids[3]),
            ["sample_submission.csv lacks test image 'test_003.png'", "test.csv (row 5)"],
        ),
    }


@pytest.mark.parametrize("name", ["unknown label column", "unknown tag", "extra id", "missing id"])
def test_bad_sample_exits_2_and_writes_nothing(name, work, tmp_path):
    root, labels, test_ids, _ = work
    text, fragments = _bad_cases(labels, test_ids)[name]
    _sample(root, text)
    r, out, out_labels = _submit(root, tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    message = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1, r.stderr[-1500:]
    for fragment in fragments:
        assert fragment in message[0], (fragment, message[0])
    assert not out.exists() and not out_labels.exists()
    assert list(tmp_path.iterdir()) == []


def test_configured_sample_that_is_missing(work, tmp_path):
    root = work[0]
    cfg = tmp_path / "c.toml"
    cfg.write_text((root / "c.toml").read_text() + '[submit]\nsample_submission = "nope.csv"\n')
    out_dir = tmp_path / "out"
    r, out, _ = _submit(root, out_dir, cfg)
    assert r.returncode == 2, r.stderr[-1500:]
    message = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "nope.csv does not exist (submit.sample_submission)" in message[0]
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_competition_folder_without_test_csv(built, tmp_path):
    """A Kaggle folder: test images + sample submission (ids without extension), no
    test.csv: the sample is the test list, and the submission keeps its ids as written."""
    root, labels, test_ids, _ = built
    comp = tmp_path / "comp"
    shutil.copytree(root / "train", comp / "train")
    shutil.copytree(root / "test" / "images", comp / "test" / "images")
    stems = [t.removesuffix(".png") for t in test_ids][::-1]
    (comp / "test" / "sample_submission.csv").write_text(
        "id,tags\n" + "".join(f"{s},\n" for s in stems)
    )
    (comp / "c.toml").write_text(
        tiny_config_text(comp).replace(f'test_truth = "{comp}/test_truth.csv"\n', "")
    )

    from pipeline.data.contract import read_test_ids

    ids, _ = read_test_ids(comp / "test")
    assert ids.tolist() == stems
    vote = _stack(comp, stems, labels)
    r, out, _ = _submit(comp, tmp_path / "out")
    assert r.returncode == 0, r.stderr[-1500:]
    lines = out.read_text().splitlines()
    assert lines[0] == "id,tags"
    assert [line.split(",")[0] for line in lines[1:]] == stems
    assert lines[1] == f"{stems[0]}," + " ".join(lab for j, lab in enumerate(labels) if vote[0, j])
