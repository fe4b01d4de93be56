"""Fold jobs sharing compiled models (pipeline.train.session) give bit for bit the outputs
of one fresh process per fold, also after a kill, and train_folds' sibling rules."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")

from pipeline.config.schema import load_config  # noqa: E402
from pipeline.train.fold import is_trained, train_fold, train_folds  # noqa: E402
from pipeline.train.fold_dir import LOCK  # noqa: E402
from pipeline.train.job import build_job  # noqa: E402
from pipeline.train.session import FreshModels, TrainSession  # noqa: E402
from tests.conftest import ROOT, tiny_config_text, train_args, write_dataset  # noqa: E402

FOLDS = (0, 1, 2)  # 40 training rows, batch 16: 2, 1, 1 steps per epoch (a miss, a reuse)


def _project(root: Path, epochs: int = 2) -> Path:
    from pipeline.data.contract import read_labels
    from pipeline.data.folds import make_folds

    write_dataset(root, n_train=60, n_test=10)
    (root / "c.toml").write_text(tiny_config_text(root, epochs=epochs))
    t = read_labels(root / "train")
    pd.DataFrame({"image": t.ids, "fold": make_folds(t.y, 3, 0)}).to_csv(
        root / "f.csv", index=False
    )
    return root / "c.toml"


def _outputs(out: Path, work: Path, as_bytes: bool = True) -> dict[str, bytes | np.ndarray]:
    """A fold's predictions (arrays) and every epoch's weights file: its bytes, or (for
    two models of one process, whose auto-named layers differ) every array in it."""
    import h5py

    found: dict = {}
    with np.load(out) as z:
        found |= {k: z[k] for k in z.files}
    for p in sorted(work.glob("weights_epoch*.weights.h5")):
        if as_bytes:
            found[p.name] = p.read_bytes()
            continue
        with h5py.File(p) as h:
            h.visititems(
                lambda n, o, p=p: (
                    found.__setitem__(f"{p.name}:{n}", o[()])
                    if isinstance(o, h5py.Dataset)
                    else None
                )
            )
    return found


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], bytes):
            assert a[key] == b[key], key
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _cmd(root: Path, tag: str, fold: int, siblings=()) -> list[str]:
    args = train_args(
        root / "c.toml",
        "small_cnn",
        root / "f.csv",
        root / tag / f"w{fold}",
        root / tag / f"p{fold}.npz",
        fold=fold,
    )
    for k in siblings:
        args += ["--sibling", k, root / tag / f"w{k}", root / tag / f"p{k}.npz"]
    return [sys.executable, "-m", "stages.train_cnn", *map(str, args)]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_session_gives_the_fresh_models_outputs_phases_included(tmp_path):
    """In one process: folds through a TrainSession (fold 0 compiles, fold 1 needs another
    steps-per-epoch value, fold 2 reuses fold 1's model) == each fold on fresh models."""
    cfg = load_config(_project(tmp_path, epochs=2))
    session = TrainSession()
    for phases in ((), ("head:1", "all:1:1e-4:1e-3")):
        for k in FOLDS:
            job = build_job(cfg, "small_cnn", k, tmp_path / "f.csv")
            job = dataclasses.replace(
                job, backbone=dataclasses.replace(job.backbone, phases=phases)
            )
            tag = f"{len(phases)}.{k}"
            train_fold(
                job, tmp_path / f"fresh{tag}", tmp_path / f"fresh{tag}.npz", models=FreshModels()
            )
            train_fold(job, tmp_path / f"kept{tag}", tmp_path / f"kept{tag}.npz", models=session)
            _assert_same(
                _outputs(tmp_path / f"fresh{tag}.npz", tmp_path / f"fresh{tag}", False),
                _outputs(tmp_path / f"kept{tag}.npz", tmp_path / f"kept{tag}", False),
            )
    # fold 2 reused fold 1's model (same steps per epoch), with phases both phases' models
    assert session.reused == 1 + 2


def test_train_folds_skips_done_and_busy_siblings(tmp_path):
    cfg = load_config(_project(tmp_path, epochs=1))
    job0, job1, job2 = (build_job(cfg, "small_cnn", k, tmp_path / "f.csv") for k in FOLDS)
    w = {k: tmp_path / f"w{k}" for k in FOLDS}
    p = {k: tmp_path / f"p{k}.npz" for k in FOLDS}
    session = TrainSession()
    train_folds([(job1, w[1], p[1]), (job2, w[2], p[2])], models=session)
    assert is_trained(job1, w[1]) and is_trained(job2, w[2]) and session.reused == 1
    first = p[2].read_bytes()
    # fold 0 is held by another process: skipped; fold 2 is done: left as it is; the first
    # run (fold 1) is always written, here from its per-epoch files, no model built
    w[0].mkdir()
    with open(w[0] / LOCK, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p[1].unlink()
        done = train_folds([(job1, w[1], p[1]), (job0, w[0], p[0]), (job2, w[2], p[2])])
    assert [d["fold"] for d in done] == [1] and p[1].is_file() and not p[0].exists()
    assert p[2].read_bytes() == first and session.reused == 1


@pytest.fixture(scope="module")
def per_process(tmp_path_factory) -> tuple[Path, dict]:
    """The reference: one fresh `python -m stages.train_cnn` process per fold."""
    root = tmp_path_factory.mktemp("perfold")
    _project(root)
    for k in FOLDS:
        _run(_cmd(root, "one", k))
    return root, {k: _outputs(root / "one" / f"p{k}.npz", root / "one" / f"w{k}") for k in FOLDS}


@pytest.mark.slow
def test_siblings_in_one_process_equal_one_process_per_fold(per_process):
    root, ref = per_process
    run = _run(_cmd(root, "all", 0, siblings=(1, 2)))
    assert "reusing a compiled model" in run.stderr
    for k in FOLDS:
        _assert_same(ref[k], _outputs(root / "all" / f"p{k}.npz", root / "all" / f"w{k}"))


@pytest.mark.slow
def test_multi_fold_process_killed_then_rerun_matches(per_process):
    """SIGKILL while a sibling trains; the rerun resumes it and gives the same files."""
    root, ref = per_process
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        _cmd(root, "kill", 0, siblings=(1, 2)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (root / "kill" / "w1" / "ckpt_epoch001.keras").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (root / "kill" / "p0.npz").is_file() and not (root / "kill" / "p2.npz").exists()
    rerun = _run(_cmd(root, "kill", 0, siblings=(1, 2)))
    assert "fold 1: resuming after epoch" in rerun.stderr
    for k in FOLDS:
        _assert_same(ref[k], _outputs(root / "kill" / f"p{k}.npz", root / "kill" / f"w{k}"))


def test_make_runs_a_backbones_folds_in_one_process_but_a_named_file_alone(tmp_path):
    from tests.test_code_deps import RepoCopy

    copy = RepoCopy(tmp_path)
    copy.all_up_to_date()
    copy.edit("pipeline/train/session.py")
    preds = f"{copy.tmp}/build/preds"
    dry = copy.make("-n", "train-cnn")
    assert dry.returncode == 0, dry.stderr
    first = dry.stdout.split("-m stages.train_cnn")[1]
    assert "--fold 0" in first
    for k in (1, 2):  # the tiny demo's other folds, same process
        assert (
            f"--sibling {k} {copy.tmp}/build/cnn/small_cnn.fold{k} {preds}/small_cnn.fold{k}.npz"
            in first
        )
    alone = copy.make("-n", f"{preds}/small_cnn.fold1.npz")
    assert alone.stdout.count("-m stages.train_cnn") == 1 and "--sibling" not in alone.stdout
    off = copy.make("-n", "train-cnn", "CNN_SIBLINGS=0")
    assert "--sibling" not in off.stdout and off.stdout.count("-m stages.train_cnn") >= 3
