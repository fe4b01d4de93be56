"""Tests for pipeline.distributed and stages.cluster on a real cluster.

Every cluster here is real processes on 127.0.0.1 (`dask scheduler` + `dask worker`,
started by stages.cluster), never an in-process LocalCluster: what is tested is what
`make cluster-up` + `DASK_SCHEDULER=... make stack` does. Each fixture stops its processes
in a finalizer and asserts that none is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from pipeline.cluster import (
    Cluster,
    cluster_status,
    free_port,
    group_members,
    start_cluster,
    stop_cluster,
)
from pipeline.distributed import (
    SCHEDULER_ENV,
    _call_in_dir,
    connect,
    gpu_resources,
    maybe_remote,
    run_remote,
)
from stages.cluster import main as cluster_main
from tests.conftest import ROOT, tiny_config_text, write_dataset

pytestmark = pytest.mark.distributed


# ---- module-level task functions: workers import them by name (tests.test_distributed) ----


def write_table(path: str | Path, n: int, seed: int) -> str:
    """Deterministic work with a file output, written atomically (temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.random.default_rng(seed).normal(size=(n, 3)).cumsum(axis=0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, table, allow_pickle=False)
    os.replace(tmp, path)
    return str(path.resolve())


def _pids() -> tuple[int, int]:
    return os.getpid(), os.getppid()


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def slow_square(path: str, x: int, delay: float) -> tuple[int, int]:
    """Marks the worker pid that started it, sleeps (so it can be killed), writes x*x."""
    out = Path(path)
    marker = out.with_suffix(".started")
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, marker)
    time.sleep(delay)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{x * x}\n")
    os.replace(tmp, out)
    return x * x, os.getpid()


# ---- fixtures ----


@contextmanager
def running_cluster(directory: Path, n_workers: int = 2, **kwargs) -> Iterator[Cluster]:
    """A real scheduler + workers on a free loopback port; stopped and checked on exit."""
    groups: list[int] = []
    try:
        cluster = start_cluster(
            directory, n_workers, threads=1, port=free_port(), timeout=120, **kwargs
        )
        groups = list(cluster.pids.values())
        yield cluster
    finally:
        stop_cluster(directory)
        left = {g: group_members(g) for g in groups if group_members(g)}
        assert not left, f"dask processes left after stop_cluster: {left}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """Scheduler + 2 one-thread workers shared by the module's read-only tests."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cl:
        yield cl


@pytest.fixture
def client(cluster):
    with connect(cluster.address) as c:
        yield c


# ---- (a) the XGBoost stacker grid: cluster == local ----


@pytest.mark.parametrize("search", ["grid", "halving"])
def test_stacker_grid_on_cluster_equals_local(client, search):
    from pipeline.ensemble.stack import PerLabelXGBStacker

    rng = np.random.default_rng(3)
    n = 240
    X = rng.random((n, 6)).astype(np.float32)
    y = np.stack([X[:, 0] > 0.7, X[:, 1] + 0.3 * rng.random(n) > 0.8, rng.random(n) < 0.3], 1)
    y = y.astype(float)
    y[rng.random(n) < 0.05, 2] = np.nan  # unknown cells take the same path on both sides
    params = dict(
        eta=(0.1, 0.3),
        max_depth=(2, 3),
        min_child_weight=(1,),
        n_estimators=40,
        early_stopping_rounds=10,
        n_folds=3,
        seed=5,
        search=search,
        halving_min_rows=60,
        halving_factor=2,
    )
    local = PerLabelXGBStacker(**params, n_jobs=1).fit(X, y)
    if search == "halving":
        assert [len(r["points"]) for r in local.search_rungs_[0]] == [4, 2]
    remote = PerLabelXGBStacker(**params, client=client).fit(X, y)

    np.testing.assert_array_equal(remote.oof_, local.oof_)
    np.testing.assert_array_equal(remote.thresholds_, local.thresholds_)
    np.testing.assert_array_equal(remote.best_score_, local.best_score_)
    assert remote.best_params_ == local.best_params_
    assert remote.n_trees_ == local.n_trees_
    np.testing.assert_array_equal(remote.predict_proba(X), local.predict_proba(X))
    for bl, br in zip(local.models_, remote.models_, strict=True):
        assert [b.save_raw("json") for b in bl] == [b.save_raw("json") for b in br]


# ---- (b) run_remote: same file as the local call, errors as locally ----


def test_run_remote_writes_the_same_file_as_local(cluster, tmp_path, monkeypatch):
    # Relative paths resolve against the submitter's directory on the worker too.
    monkeypatch.chdir(tmp_path)
    local = write_table("local/table.npy", 50, seed=11)
    remote = run_remote(write_table, "remote/table.npy", 50, seed=11, address=cluster.address)
    assert remote == str(tmp_path / "remote" / "table.npy")
    assert Path(remote).read_bytes() == Path(local).read_bytes()
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic: no temp file left behind


def test_maybe_remote_switches_on_the_variable(cluster, tmp_path, monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert maybe_remote(os.getpid) == os.getpid()  # no variable: runs here
    monkeypatch.setenv(SCHEDULER_ENV, cluster.address)
    pid, parent = maybe_remote(_pids)
    with connect(cluster.address) as c:
        workers = set(c.run(os.getpid).values())
    assert parent in workers and pid not in workers  # a fresh process on a worker
    out = maybe_remote(write_table, tmp_path / "t.npy", 5, seed=1)
    assert Path(out).read_bytes() == Path(write_table(tmp_path / "l.npy", 5, seed=1)).read_bytes()


def _exit_now() -> None:
    os._exit(3)


def test_kept_job_process_serves_the_next_tasks(cluster, client):
    """keep_process: one job process per worker serves its calls, survives a task's error,
    and a process that dies with its task fails that task alone and is replaced."""
    workers = set(client.run(os.getpid).values())
    kept = [run_remote(_pids, address=cluster.address, isolate=True, keep_process=True)]
    kept += [run_remote(_pids, address=cluster.address, isolate=True, keep_process=True)]
    with pytest.raises(ValueError, match="invalid literal for int"):
        run_remote(
            int, "seven", address=cluster.address, retries=0, isolate=True, keep_process=True
        )
    kept += [run_remote(_pids, address=cluster.address, isolate=True, keep_process=True)]
    kept += [run_remote(_pids, address=cluster.address, isolate=True, keep_process=True)]
    assert {parent for _, parent in kept} <= workers
    assert len({pid for pid, _ in kept}) <= len(workers) < len(kept)  # reused, not fresh
    with pytest.raises(RuntimeError, match="exited with status 3 without a result"):
        run_remote(_exit_now, address=cluster.address, retries=0, isolate=True, keep_process=True)
    after = {run_remote(_pids, address=cluster.address, isolate=True, keep_process=True)[1]}
    assert after <= workers


@pytest.mark.parametrize("isolate", [False, True], ids=["in-worker", "job-process"])
def test_remote_task_error_is_raised_as_locally(cluster, isolate):
    with pytest.raises(ValueError, match="invalid literal for int"):
        run_remote(int, "seven", address=cluster.address, retries=0, isolate=isolate)


def test_worker_without_the_shared_directory_says_so(client):
    future = client.submit(_call_in_dir, "/nonexistent/shared/repo", os.getpid, (), {})
    with pytest.raises(FileNotFoundError, match="/nonexistent/shared/repo.*shared filesystem"):
        future.result()


def test_cpu_cluster_declares_no_gpu_and_status_lists_workers(cluster, client, capsys):
    assert gpu_resources(client) is None  # CNN jobs must not wait for a GPU nobody has
    text = cluster_status(cluster.address)
    assert text.startswith(f"scheduler {cluster.address}: 2 worker(s)")
    assert text.count("threads=1") == 2
    assert cluster_main(["status", "--address", cluster.address]) == 0
    assert "2 worker(s)" in capsys.readouterr().out


# ---- (c) a worker SIGKILLed mid-task is survived ----


@pytest.mark.parametrize("isolate", [False, True], ids=["in-worker", "job-process"])
def test_killed_worker_is_survived(tmp_path, isolate):
    out = tmp_path / "square.txt"
    with running_cluster(tmp_path / "cluster", gpu_resource=True) as cl:
        with connect(cl.address) as c:
            assert gpu_resources(c) == {"GPU": 1}
            worker_pids = set(c.run(os.getpid).values())
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(
                run_remote,
                slow_square,
                str(out),
                7,
                4.0,
                address=cl.address,
                resources="auto",
                isolate=isolate,
            )
            marker = out.with_suffix(".started")
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert time.monotonic() < deadline, "the task never started"
                assert not job.done(), job.exception()
                time.sleep(0.05)
            runner = int(marker.read_text())
            victim = _ppid(runner) if isolate else runner  # the worker process
            assert victim in worker_pids
            with connect(cl.address) as c:
                busy = [w for w, keys in c.processing().items() if keys]
                assert len(busy) == 1  # the one task, on the worker we are about to kill
            os.kill(victim, signal.SIGKILL)
            value, pid = job.result(timeout=120)
            # A job process dies with its worker: no orphan finishing the task twice.
            assert not Path(f"/proc/{runner}").exists() or _zombie(runner)
    assert value == 49 and pid not in (victim, runner)  # re-run by another process
    assert out.read_text() == "49\n"


# ---- (d) an unreachable scheduler fails fast, naming the address ----


@pytest.mark.parametrize("peer", ["closed-port", "silent-listener"])
def test_unreachable_scheduler_fails_within_10s(monkeypatch, peer):
    with socket.socket() as listener:
        if peer == "silent-listener":  # accepts TCP, never answers the Dask handshake
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
        else:  # nothing listens there
            port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        monkeypatch.setenv(SCHEDULER_ENV, address)
        t0 = time.perf_counter()
        with pytest.raises(ConnectionError, match=address.replace(".", r"\.")) as info:
            maybe_remote(os.getpid)
        elapsed = time.perf_counter() - t0
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert info.value.filename == address  # the stage CLI prints "error: <address>: ..."


def test_cluster_up_on_a_busy_port_fails_clearly_and_cleans_up(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(RuntimeError, match="scheduler .*exited during start-up.*in use"):
            start_cluster(tmp_path / "c", 1, port=sock.getsockname()[1], timeout=60)
    assert not list((tmp_path / "c").glob("*.pid"))
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    assert not [p for p in pids if str(tmp_path / "c") in _cmdline(p)]  # its worker is gone


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# ---- (e) start/stop leaves no process behind ----


def test_cluster_up_down_leaves_no_processes(tmp_path):
    directory = tmp_path / "c"
    with running_cluster(directory, n_workers=1) as cl:
        with connect(cl.address) as c:
            worker_pids = list(c.run(os.getpid).values())
        groups = list(cl.pids.values())
        members = {p for g in groups for p in group_members(g)}
        assert set(worker_pids) <= members  # the nanny's worker is in the group we kill
        assert sorted(p.name for p in directory.glob("*.pid")) == ["scheduler.pid", "worker-0.pid"]
        with pytest.raises(RuntimeError, match="already running"):
            start_cluster(directory, 1, port=free_port())
    for pid in members:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"pid {pid} still runs"
    assert not list(directory.glob("*.pid")) and not (directory / "address").exists()
    assert (directory / "scheduler.log").is_file()


def test_cli_up_status_down(tmp_path):
    directory = tmp_path / "cli"
    port = free_port()
    run = [sys.executable, "-m", "stages.cluster"]
    try:
        up = subprocess.run(
            [*run, "up", "--workers", "1", "--port", str(port), "--dir", str(directory)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"tcp://127.0.0.1:{port}"
        st = subprocess.run(
            [*run, "status", "--dir", str(directory)], cwd=ROOT, capture_output=True, text=True
        )
        assert st.returncode == 0 and "1 worker(s)" in st.stdout, st.stderr
    finally:
        groups = [int(p.read_text()) for p in directory.glob("*.pid")]
        down = subprocess.run(
            [*run, "down", "--dir", str(directory)], cwd=ROOT, capture_output=True, text=True
        )
    assert down.returncode == 0, down.stderr
    assert len(groups) == 2 and not any(group_members(g) for g in groups)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ---- the real stages through the cluster (slow) ----


def _fake_preds(root: Path, folds_csv: Path, out_dir: Path, n_folds: int = 3) -> list[Path]:
    """Per-epoch prediction files as `make train-cnn` writes them, from noisy labels."""
    import pandas as pd

    labels_df = pd.read_csv(root / "train" / "labels.csv")
    test_ids = pd.read_csv(root / "test" / "test.csv")["image"].to_numpy().astype(str)
    folds = pd.read_csv(folds_csv).set_index("image").loc[labels_df["image"], "fold"].to_numpy()
    names = [c for c in labels_df.columns if c != "image"]
    y = labels_df[names].to_numpy(float)
    rng = np.random.default_rng(0)
    files = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for backbone, noise in (("fake_a", 0.3), ("fake_b", 0.45)):
        for k in range(n_folds):
            va = folds == k
            oof = np.clip(y[va] + noise * rng.normal(size=(3, va.sum(), len(names))), 0, 1)
            test = rng.random((3, len(test_ids), len(names)))
            path = out_dir / f"{backbone}.fold{k}.npz"
            np.savez(
                path,
                labels=np.array(names),
                val_ids=labels_df["image"].to_numpy()[va].astype(str),
                test_ids=test_ids,
                epochs=np.arange(1, 4),
                oof=oof.astype(np.float32),
                test=test.astype(np.float32),
                loss=np.ones(3, np.float32),
            )
            files.append(path)
    return files


def _tiny_project(tmp_path: Path, epochs: int = 1) -> tuple[Path, Path]:
    import pandas as pd

    from pipeline.data.contract import read_labels
    from pipeline.data.folds import make_folds

    write_dataset(tmp_path, n_train=60, n_test=12, size=32)
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(tiny_config_text(tmp_path, epochs=epochs))
    table = read_labels(tmp_path / "train")
    folds_csv = tmp_path / "folds.csv"
    pd.DataFrame({"image": table.ids, "fold": make_folds(table.y, 3, 0)}).to_csv(
        folds_csv, index=False
    )
    return cfg_path, folds_csv


@pytest.mark.slow
def test_train_cnn_job_on_cluster_equals_local(cluster, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from pipeline.config.schema import load_config
    from stages.train_cnn import run

    cfg_path, folds_csv = _tiny_project(tmp_path)
    cfg = load_config(cfg_path)
    for k in (0, 1, 2):
        run(cfg, "small_cnn", k, folds_csv, tmp_path / f"work_local{k}", tmp_path / f"l{k}.npz")
    # What the stage's DASK_SCHEDULER hook does: the same call, one task per fold, in a job
    # process the worker keeps (its later folds reuse the compiled model), not the worker.
    # Bit-identical: Keras draws weight seeds from Python's `random`, which a worker's own
    # threads also draw from, so in-worker runs (isolate=False) differ now and then.
    monkeypatch.setenv(SCHEDULER_ENV, cluster.address)
    for k in (0, 1, 2):
        maybe_remote(
            run,
            cfg,
            "small_cnn",
            k,
            folds_csv,
            tmp_path / f"work_remote{k}",
            tmp_path / f"r{k}.npz",
            keep_process=True,
        )
    for k in (0, 1, 2):
        with np.load(tmp_path / f"l{k}.npz") as a, np.load(tmp_path / f"r{k}.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _netns_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    probe = f"dnc-probe{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"`ip netns add` is not permitted here: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.mark.slow
def test_stack_stage_over_three_netns_hosts_equals_local(tmp_path):
    reason = _netns_skip_reason()
    if reason:
        pytest.skip(reason)
    cfg_path, folds_csv = _tiny_project(tmp_path)
    preds = [str(p) for p in _fake_preds(tmp_path, folds_csv, tmp_path / "preds")]
    stack = [sys.executable, "-m", "stages.stack", "--config", str(cfg_path), "--preds", *preds]
    env = {k: v for k, v in os.environ.items() if k != SCHEDULER_ENV}
    local = subprocess.run(
        [*stack, "--out", str(tmp_path / "local" / "stacked.npz")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert local.returncode == 0, local.stderr
    prefix = f"dnct{os.getpid()}"
    shell = (
        "python -m stages.cluster status --address $DASK_SCHEDULER && "
        + " ".join(stack)
        + f" --out {tmp_path / 'netns' / 'stacked.npz'}"
    )
    res = subprocess.run(
        [str(ROOT / "scripts" / "netns-cluster.sh"), "bash", "-c", shell],
        cwd=ROOT,
        env={**env, "NETNS_PREFIX": prefix, "NETNS_DIR": str(tmp_path / "netns-logs")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 worker(s)" in res.stdout
    assert "10.77.0.2" in res.stdout and "10.77.0.3" in res.stdout
    assert "tcp://10.77.0.1:8786" in res.stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in netns  # torn down
    with np.load(tmp_path / "local" / "stacked.npz") as a:
        with np.load(tmp_path / "netns" / "stacked.npz") as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for log in (tmp_path / "netns-logs").glob("h*/"):
        assert not list(log.glob("*.pid")), f"{log}: pid files left"
