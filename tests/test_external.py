"""[[external]] members: the config entry, the exchange format's reader and writer, the
checks against our folds and data set, and the Make wiring (the CLI refusals and the
exact reproduction of a frozen member live in tests/reliability/test_external.py)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from pipeline.artifacts import load_external_predictions, save_external_predictions
from pipeline.config.schema import config_from_dict, section_payloads
from pipeline.members.external import split_external
from tests.conftest import ROOT, tiny_config_text, write_dataset

LABELS = ["a", "b", "c"]
TRAIN = np.array([f"t{i}" for i in range(6)])
FOLDS = np.array([0, 1, 0, 1, 0, 1])
TEST = np.array(["q0", "q1"])


def _base(**extra) -> dict:
    return {
        "data": {"train_dir": "x", "test_dir": "y"},
        "train": {"backbones": [{"name": "small_cnn"}]},
        "frozen": [{"name": "f", "backbone": "small_cnn", "heads": ["logistic"]}],
        **extra,
    }


def test_external_entries_are_validated():
    cfg = config_from_dict(_base(external=[{"name": "timm_b3", "path": "team/timm.npz"}]))
    assert cfg.external[0].path == "team/timm.npz"
    payload = section_payloads(cfg)["external.timm_b3"]
    assert payload["external"] == {"name": "timm_b3", "path": "team/timm.npz"}
    assert payload["folds"]["n_folds"] == 5
    for name in ("small_cnn", "f_logistic", "twoflow"):
        with pytest.raises(ValueError, match="already a member name"):
            config_from_dict(_base(external=[{"name": name, "path": "p.csv"}]))
    with pytest.raises(ValueError, match="already a member name"):
        config_from_dict(_base(external=[{"name": "e", "path": "p.csv"}] * 2))
    with pytest.raises(ValueError, match=r"external\[0\]\.name = 'timm\.b3'"):
        config_from_dict(_base(external=[{"name": "timm.b3", "path": "p.csv"}]))
    with pytest.raises(ValueError, match=r"must be a \.csv or \.npz"):
        config_from_dict(_base(external=[{"name": "e", "path": "p.parquet"}]))
    with pytest.raises(ValueError, match=r"unknown key external\[0\]\.'weights'"):
        config_from_dict(_base(external=[{"name": "e", "path": "p.csv", "weights": "x"}]))


def _exchange(shared: bool = False):
    """OOF rows with our folds, then test rows (per fold, or shared with fold -1)."""
    rng = np.random.default_rng(0)
    image = [*TRAIN, *(TEST if shared else np.repeat(TEST, 2))]
    fold = [*FOLDS, *([-1, -1] if shared else [0, 1, 0, 1])]
    return np.array(image), np.array(fold), rng.random((len(image), len(LABELS)))


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_writer_and_reader_agree_in_any_label_order(tmp_path, suffix):
    image, fold, probs = _exchange(shared=True)
    path = tmp_path / f"e{suffix}"
    # the teammate writes the labels in another order; we read them back in ours
    save_external_predictions(path, image, fold, ["c", "a", "b"], probs[:, [2, 0, 1]])
    data = load_external_predictions(path, LABELS)
    np.testing.assert_array_equal(data["image"], image)
    np.testing.assert_array_equal(data["fold"], fold)  # an empty CSV cell reads as -1
    np.testing.assert_array_equal(data["probs"], probs)
    if suffix == ".csv":
        assert path.read_text().splitlines()[-1].startswith("q1,,")
        assert "row 9" in _refusal(path, probs, 7, 1, 2.0)
    else:
        assert "index 6" in _refusal(path, probs, 6, 1, -0.1)


def _refusal(path, probs, i, j, value) -> str:
    bad = probs.copy()
    bad[i, j] = value
    image, fold, _ = _exchange(shared=True)
    save_external_predictions(path, image, fold, LABELS, bad)
    with pytest.raises(ValueError, match=rf"b = {value} is not a probability") as e:
        load_external_predictions(path, LABELS)
    return str(e.value)


def test_split_cuts_folds_in_labels_order_per_fold_or_shared(tmp_path):
    image, fold, probs = _exchange()
    order = np.random.default_rng(1).permutation(len(image))  # rows in any order
    path = tmp_path / "e.npz"
    save_external_predictions(path, image[order], fold[order], LABELS, probs[order])
    parts = split_external(load_external_predictions(path, LABELS), TRAIN, FOLDS, TEST, 2)
    assert [p.val_ids.tolist() for p in parts] == [["t0", "t2", "t4"], ["t1", "t3", "t5"]]
    np.testing.assert_array_equal(parts[1].oof, probs[[1, 3, 5]])
    np.testing.assert_array_equal(parts[0].test, probs[[6, 8]])  # fold 0's model
    np.testing.assert_array_equal(parts[1].test, probs[[7, 9]])
    image, fold, probs = _exchange(shared=True)
    save_external_predictions(path, image, fold, LABELS, probs)
    parts = split_external(load_external_predictions(path, LABELS), TRAIN, FOLDS, TEST, 2)
    for part in parts:
        np.testing.assert_array_equal(part.test, probs[6:])
    # one test image with a fold, another without: refused
    save_external_predictions(path, image, [*fold[:-1], 1], LABELS, probs)
    with pytest.raises(ValueError, match=r"index 7: test image 'q1' has fold 1, but index 6"):
        split_external(load_external_predictions(path, LABELS), TRAIN, FOLDS, TEST, 2)
    # a training row without its fold
    save_external_predictions(path, image, [-1, *fold[1:]], LABELS, probs)
    with pytest.raises(ValueError, match=r"index 0: training image 't0' has no fold, but"):
        split_external(load_external_predictions(path, LABELS), TRAIN, FOLDS, TEST, 2, "f.csv")


def test_make_builds_the_external_fold_files_and_stacks_them(tmp_path):
    write_dataset(tmp_path, n_train=12, n_test=3, size=16)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        tiny_config_text(tmp_path) + '\n[[external]]\nname = "timm"\npath = "team/t.csv"\n'
    )
    r = subprocess.run(
        ["make", "-n", "stack", f"CONFIG={cfg}", f"BUILD={tmp_path}/b", f"FOLDS={tmp_path}/f.csv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    files = [f"{tmp_path}/b/external/timm.fold{k}.npz" for k in range(3)]
    external = [line for line in r.stdout.splitlines() if "stages.external" in line]
    assert len(external) == 1 and "--name timm --input team/t.csv" in external[0]
    assert f"--out {' '.join(files)}" in r.stdout  # one job writes every fold
    stack = next(line for line in r.stdout.splitlines() if "stages.stack" in line)
    assert all(f in stack for f in files)


def test_the_predictor_names_the_external_members_a_model_reads():
    from pipeline.predict import Predictor

    # a finished run's state, as Predictor.__init__ reads it from the run's files
    p = Predictor.__new__(Predictor)
    p.external, p.n_folds = {"ext"}, 2
    p.singles = {"cnn": (2, np.full(3, 0.5), 0.7), "ext": (1, np.full(3, 0.5), 0.6)}
    p.used_columns = [("cnn", 2), ("ext", 1)]
    with pytest.raises(ValueError, match=r"reads the \[\[external\]\] member\(s\) \['ext'\]"):
        p.check_scorable("ensemble")
    with pytest.raises(ValueError, match=r"model 'ext' is an \[\[external\]\] member.*\(cnn\)"):
        p.predict([np.zeros((8, 8, 3), np.uint8)], "ext")
    p.check_scorable("cnn")
    p.warm_up(np.zeros((8, 8, 3), np.uint8))  # the page starts: the ensemble is not traced
    p.used_columns = [("cnn", 2)]  # a second level that left the member out scores images
    p.check_scorable("ensemble")
