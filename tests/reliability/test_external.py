"""[[external]] members through the real CLIs: a frozen member's own predictions, handed
in as a teammate's exchange file, stack exactly as the frozen member does; a corrupted
file is refused (exit 2, one ``error:`` line naming the file, the row and the fix) and
leaves no fold file; `make predict` refuses to score a new image with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import load_fold_predictions, load_stacked, save_embeddings
from pipeline.config.schema import load_config
from pipeline.predict import Predictor
from tests.conftest import run_stage, tiny_config_text, write_dataset

ROOT = Path(__file__).resolve().parents[2]
K = 3
MEMBER = "feat_logistic"


def _config(root: Path, source: str) -> Path:
    text = tiny_config_text(root) + (
        'outer_folds = 3\nn_boot = 50\ncombiners = ["xgb", "logistic_own", "mean_members"]\n'
        '\n[[frozen]]\nname = "feat"\nbackbone = "small_cnn"\nweights = "none"\n'
        'image_size = 32\nheads = ["logistic"]\n'
        f'\n[[external]]\nname = "ext"\npath = "{source}"\n'
    )
    path = root / "c.toml"
    path.write_text(text)
    return path


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stderr[-3000:]


def exchange_rows(files: list[Path]) -> pd.DataFrame:
    """A frozen member's fold files -> the exchange format (as a teammate writes it):
    OOF rows with their fold, then one test row per (test image, fold model)."""
    parts = []
    for k, path in enumerate(files):
        d = load_fold_predictions(path)
        labels = d["labels"].astype(str).tolist()
        for ids, probs in ((d["val_ids"], d["oof"][-1]), (d["test_ids"], d["test"][-1])):
            part = pd.DataFrame(probs.astype(np.float64), columns=labels)
            part.insert(0, "fold", k)
            part.insert(0, "image", ids.astype(str))
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Data, folds, a frozen member's 3 fold files (real CLI) and its exchange file."""
    from pipeline.data.contract import read_labels, read_test_ids

    root = tmp_path_factory.mktemp("external")
    write_dataset(root, n_train=45, n_test=9)
    source = root / "teammate" / "ext.csv"
    cfg = _config(root, str(source))
    table = read_labels(root / "train")
    test_ids, _ = read_test_ids(root / "test")
    folds = np.arange(len(table.ids)) % K
    folds_csv = root / "folds.csv"
    pd.DataFrame({"image": table.ids, "fold": folds}).to_csv(folds_csv, index=False)
    rng = np.random.default_rng(0)
    train = rng.normal(size=(len(table.ids), 8)) + 2 * np.nan_to_num(table.y[:, :2]).sum(1)[:, None]
    emb = root / "feat.npz"
    save_embeddings(emb, table.ids, test_ids, train, rng.normal(size=(9, 8)), "small_cnn", 32)
    frozen = [root / "members" / f"{MEMBER}.fold{k}.npz" for k in range(K)]
    for k, out in enumerate(frozen):
        _ok(
            run_stage(
                "frozen",
                *("--config", cfg, "--member", MEMBER, "--fold", k, "--folds", folds_csv),
                *("--embedding", emb, "--out", out),
            )
        )
    source.parent.mkdir()
    rows = exchange_rows(frozen)
    rows.sample(frac=1.0, random_state=0).to_csv(source, index=False)  # any row order
    return {"root": root, "cfg": cfg, "folds": folds_csv, "frozen": frozen, "rows": rows}


def _external(run, source: Path, out_dir: Path) -> tuple[subprocess.CompletedProcess, list]:
    outs = [out_dir / f"ext.fold{k}.npz" for k in range(K)]
    r = run_stage(
        "external",
        *("--config", run["cfg"], "--name", "ext", "--input", source),
        *("--folds", run["folds"], "--out", *outs),
    )
    return r, outs


@pytest.mark.slow
def test_external_reproduces_the_frozen_members_stacked_columns(run, tmp_path):
    r, outs = _external(run, run["cfg"].parent / "teammate" / "ext.csv", tmp_path / "external")
    _ok(r)
    for mine, theirs in zip(run["frozen"], outs, strict=True):
        a, b = load_fold_predictions(mine), load_fold_predictions(theirs)
        for key in ("labels", "val_ids", "test_ids", "epochs", "oof", "test"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # the second level fitted on either member's files gives the same numbers, bit for bit
    stacked = {}
    for name, files in (("frozen", run["frozen"]), ("external", outs)):
        out = tmp_path / name / "stack" / "stacked.npz"
        _ok(run_stage("stack", "--config", run["cfg"], "--preds", *files, "--out", out))
        stacked[name] = load_stacked(out)
    for key in ("oof", "test", "candidates_oof", "candidates_test", "choice_combiner"):
        np.testing.assert_array_equal(stacked["frozen"][key], stacked["external"][key], key)
    assert stacked["external"]["test"].shape == (K, 9, 4)
    # a new image cannot be scored with a member that has no model here: the predictor says
    # so, naming the member, instead of dropping its columns, and `make export` (which
    # `make predict` reads) refuses a run whose every model reads it
    build = tmp_path / "external"
    stacked_file = build / "stack" / "stacked.npz"
    thresholds = ("--stacked", stacked_file, "--out", build / "thresholds.json")
    _ok(run_stage("thresholds", "--config", run["cfg"], *thresholds))
    image = run["root"] / "test" / "images" / "test_000.png"
    predictor = Predictor(load_config(run["cfg"]), build)
    for model in ("ensemble", "ext"):
        with pytest.raises(ValueError, match="no model here") as exc:
            predictor.predict([image], model)
        assert "[[external]] member" in str(exc.value) and "'ext'" in str(exc.value)
    r = run_stage("export", "--config", run["cfg"], "--build", build, "--out", build / "export")
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[[external]]" in errors[0] and "nothing to export" in errors[0]
    assert not (build / "export").exists()


def _corrupt(rows: pd.DataFrame, how: str) -> pd.DataFrame:
    df = rows.copy()
    train = df["image"].str.startswith("train_")
    first_train = int(np.flatnonzero(train)[0])
    if how == "train row missing":
        return df.drop(index=first_train)
    if how == "train row twice":
        return pd.concat([df, df.iloc[[first_train]]], ignore_index=True)
    if how == "wrong fold":
        df.loc[first_train, "fold"] = (df.loc[first_train, "fold"] + 1) % K
        return df
    if how == "probability 1.3":
        df.loc[5, "lab1"] = 1.3
        return df
    if how == "NaN":
        df.loc[7, "lab2"] = np.nan
        return df.astype({"lab2": object}).fillna("nan")
    if how == "empty cell":
        df.loc[2, "lab0"] = np.nan  # pandas writes an empty cell
        return df
    if how == "text in a label cell":
        df["lab0"] = df["lab0"].astype(object)
        df.loc[4, "lab0"] = "high"
        return df
    if how == "label renamed":
        return df.rename(columns={"lab3": "lab_3"})
    if how == "extra column":
        return df.assign(score=0.5)
    if how == "test row missing":
        return df.drop(index=int(np.flatnonzero(~train)[-1]))
    if how == "unknown image":
        df.loc[3, "image"] = "elsewhere_001.png"
        return df
    if how == "fold out of range":
        df.loc[first_train, "fold"] = 7
        return df
    raise AssertionError(how)


CORRUPTIONS = {
    # how -> what the one error line must say besides the file
    "train row missing": ["labels.csv row", "no OOF row"],
    "train row twice": ["row 74", "again (first at row 2)"],
    "wrong fold": ["row 2", "puts it in fold 0"],
    "probability 1.3": ["row 7", "lab1 = 1.3", "[0, 1]"],
    "NaN": ["row 9", "lab2 = nan", "no NaN"],
    "empty cell": ["row 4", "lab0 is empty", "[0, 1]"],
    "text in a label cell": ["row 6", "lab0 = 'high' is not a number"],
    "label renamed": ["row 1 (header)", "'lab_3' is not a label", "rename"],
    "extra column": ["row 1 (header)", "'score' is not a label", "drop it"],
    "test row missing": ["test.csv row 10", "no row for fold 2"],
    "unknown image": ["row 5", "'elsewhere_001.png' is neither"],
    "fold out of range": ["row 2", "fold 7", "0..2"],
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_corrupted_exchange_file_is_refused_and_nothing_is_written(run, how, tmp_path):
    source = tmp_path / "bad.csv"
    _corrupt(run["rows"], how).to_csv(source, index=False)
    out_dir = tmp_path / "external"
    r, outs = _external(run, source, out_dir)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    assert str(source) in errors[0]
    for part in CORRUPTIONS[how]:
        assert part in errors[0], errors[0]
    assert not any(p.exists() for p in outs)
    assert not out_dir.exists() or not any(out_dir.iterdir())
