"""A Dask cluster as real processes: start, stop and inspect it (`make cluster-up` /
`cluster-down` / `cluster-status`, ``stages.cluster``).

:func:`start_cluster` starts ``dask scheduler`` and N ``dask worker`` processes in the
background, each in its own process group (``start_new_session``), with pid files and logs
under a folder and the scheduler address in ``<dir>/address``; it returns once the
scheduler sees every worker, or stops what it started and fails with the log tail.
:func:`stop_cluster` stops the process groups named by the pid files (SIGTERM, then
SIGKILL) and removes the files. :func:`cluster_status` describes the workers and their
resources.

With ``scheduler="tcp://head:8786"``, :func:`start_cluster` starts workers only and joins
that scheduler: run it on each extra machine (``host`` = that machine's address) for a
multi-host cluster. Processes run with the repo root as working directory and on
``PYTHONPATH``, so relative artifact paths and the project's modules resolve identically on
every worker.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# processes run here (and with it on PYTHONPATH): relative paths resolve alike everywhere
ROOT = Path(__file__).resolve().parents[1]
ADDRESS_FILE = "address"
SCHEDULER = "scheduler"
_EXC_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|KilledWorker)\b[^:]*: ")


class ClusterError(RuntimeError):
    """A cluster could not be started or reached; the message says what to do."""


@dataclass(frozen=True)
class Cluster:
    """What ``up`` started: the scheduler address and the pids (= process group ids)."""

    address: str
    directory: Path
    pids: dict[str, int]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (tests run clusters side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def dask_executable() -> str:
    """The ``dask`` CLI of this interpreter's environment (the venv), else the one on PATH."""
    here = Path(sys.executable).parent / "dask"
    found = str(here) if here.is_file() else shutil.which("dask")
    if not found:
        raise ClusterError("no `dask` command found; install dask[distributed] (make install)")
    return found


def _alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie counts as gone; our own children are reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: someone else reaps it
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _is_our_group(pgid: int) -> bool:
    """Guard against a stale pid file whose pid now belongs to another program.

    A live leader must be a ``dask`` command leading its own group. A group whose leader is
    gone but which still has members is ours: Linux never hands out a pid that is still a
    process group id, so those are the orphans of what we started (a nanny's worker).
    """
    if not _alive(pgid):
        return bool(group_members(pgid))
    try:
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
        return b"dask" in cmdline and os.getpgid(pgid) == pgid
    except (OSError, ProcessLookupError):
        return bool(group_members(pgid))


def _pid_files(directory: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(directory.glob("*.pid"))}


def _spawn(name: str, argv: list[str], directory: Path, env: dict[str, str]) -> int:
    """Start ``argv`` detached (own session/process group), logging to ``<dir>/<name>.log``."""
    log_path = directory / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (directory / f"{name}.pid").write_text(f"{proc.pid}\n")
    log.info("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
    return proc.pid


def _tail(path: Path, n: int = 3) -> str:
    """Why a process died, from its log: the exception lines (``OSError: [Errno 98] ...``)
    of its traceback, else the last ``n`` lines."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return "(no log)"
    errors = [line for line in lines if _EXC_LINE.match(line)]
    picked = list(dict.fromkeys(errors))[-n:] if errors else lines[-n:]
    return "; ".join(picked) or "(empty log)"


def start_cluster(
    directory: str | Path,
    n_workers: int = 2,
    threads: int = 1,
    port: int = 8786,
    host: str = "127.0.0.1",
    gpu_resource: bool = False,
    scheduler: str | None = None,
    timeout: float = 90.0,
) -> Cluster:
    """Start a scheduler (unless ``scheduler`` names one) and ``n_workers`` workers.

    Args:
        directory: pid files, logs, worker scratch space and the ``address`` file.
        n_workers: worker processes (each ``--nworkers 1``, ``threads`` threads).
        threads: threads per worker; 1 keeps CNN jobs from sharing a process and makes
            XGBoost tasks one per core.
        port: the scheduler's port (when starting one).
        host: the address processes listen on and advertise (127.0.0.1 locally; the
            machine's cluster-network address on a real host).
        gpu_resource: declare ``GPU=1`` on every worker, so CNN jobs go there one at a time.
        scheduler: join this running scheduler instead of starting one.
        timeout: seconds to wait for the scheduler to see every worker.

    Raises:
        ClusterError: a cluster is already running from ``directory``, a process exited, or
            the workers did not appear in time (everything started is stopped again).
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    running = {n: p for n, p in _read_pids(directory).items() if _alive(p)}
    if running:
        raise ClusterError(
            f"a cluster is already running from {directory} (pids {sorted(running.values())}); "
            "stop it first with `make cluster-down` (python -m stages.cluster down)"
        )
    for stale in _pid_files(directory).values():
        stale.unlink()
    dask = dask_executable()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("DASK_SCHEDULER", None)

    pids: dict[str, int] = {}
    try:
        if scheduler is None:
            address = f"tcp://{host}:{port}"
            pids[SCHEDULER] = _spawn(
                SCHEDULER,
                [dask, "scheduler", "--host", host, "--port", str(port), "--no-dashboard"],
                directory,
                env,
            )
        else:
            address = scheduler
        names = [f"{directory.name}-{i}@{host}" for i in range(n_workers)]
        for i, name in enumerate(names):
            argv = [dask, "worker", address, "--host", host, "--name", name]
            argv += ["--nthreads", str(threads), "--nworkers", "1", "--no-dashboard"]
            argv += ["--local-directory", str(directory / f"worker-{i}")]
            argv += ["--death-timeout", "60s"]  # exits by itself if the scheduler goes away
            if gpu_resource:
                argv += ["--resources", "GPU=1"]
            pids[f"worker-{i}"] = _spawn(f"worker-{i}", argv, directory, env)
        _wait_for_workers(address, names, pids, directory, timeout)
    except BaseException:
        stop_cluster(directory)
        raise
    if scheduler is None:
        (directory / ADDRESS_FILE).write_text(address + "\n")
    log.info("cluster up: %s with %d worker(s); logs in %s", address, n_workers, directory)
    return Cluster(address=address, directory=directory, pids=pids)


def _wait_for_workers(
    address: str, names: Sequence[str], pids: dict[str, int], directory: Path, timeout: float
) -> None:
    """Poll until the scheduler lists every worker in ``names``; fail fast if a process dies."""
    from pipeline.distributed import connect

    deadline = time.monotonic() + timeout
    client = None
    try:
        while True:
            for name, pid in pids.items():
                if not _alive(pid):
                    raise ClusterError(
                        f"{name} (pid {pid}) exited during start-up: "
                        f"{_tail(directory / f'{name}.log')} (log: {directory / name}.log)"
                    )
            seen: set[str] = set()
            if client is None:
                try:
                    client = connect(address, timeout=3)
                except ConnectionError:
                    client = None
            if client is not None:
                workers = client.scheduler_info(n_workers=-1)["workers"].values()
                seen = {w.get("name") for w in workers}
                if set(names) <= seen:
                    return
            if time.monotonic() > deadline:
                missing = sorted(set(names) - seen)
                raise ClusterError(
                    f"the scheduler at {address} did not see worker(s) {missing} within "
                    f"{timeout:.0f}s; see the logs in {directory}"
                )
            time.sleep(0.3)
    finally:
        if client is not None:
            client.close()


def _read_pids(directory: Path) -> dict[str, int]:
    pids = {}
    for name, path in _pid_files(directory).items():
        try:
            pids[name] = int(path.read_text().strip())
        except ValueError:
            log.warning("ignoring %s: not a pid", path)
    return pids


def stop_cluster(directory: str | Path, grace: float = 10.0) -> list[int]:
    """Stop every process group named by ``<dir>/*.pid``: SIGTERM, then SIGKILL after ``grace``.

    Workers go first (so they do not spend ``grace`` reconnecting), then the scheduler.
    Removes the pid files and the address file; returns the pids that were signalled.
    """
    directory = Path(directory)
    pids = _read_pids(directory)
    order = sorted(pids, key=lambda n: n == SCHEDULER)
    live = [pids[n] for n in order if _group_alive(pids[n]) and _is_our_group(pids[n])]
    for pid in live:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p) for p in live):
        time.sleep(0.1)
    for pid in live:
        if _group_alive(pid):
            log.warning("process group %d ignored SIGTERM for %.0fs: SIGKILL", pid, grace)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_group_alive(p) for p in live):
        time.sleep(0.05)
    for path in _pid_files(directory).values():
        path.unlink(missing_ok=True)
    (directory / ADDRESS_FILE).unlink(missing_ok=True)
    if live:
        log.info("cluster down: stopped process group(s) %s", live)
    return live


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid`` (the nanny's worker included)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    _alive(pgid)  # reap our own child, so it does not linger as a zombie member
    return bool(group_members(pgid))


def cluster_status(address: str, timeout: float = 10.0) -> str:
    """A few lines: the scheduler, then one line per worker with threads, memory, resources."""
    from pipeline.distributed import connect

    with connect(address, timeout=timeout) as client:
        info = client.scheduler_info(n_workers=-1)
        processing = client.processing()
    workers = info["workers"]
    lines = [f"scheduler {info.get('address', address)}: {len(workers)} worker(s)"]
    for addr, w in sorted(workers.items(), key=lambda kv: str(kv[1].get("name"))):
        res = ", ".join(f"{k}={v:g}" for k, v in sorted((w.get("resources") or {}).items()))
        lines.append(
            f"  {addr}  name={w.get('name')}  threads={w.get('nthreads')}  "
            f"memory={w.get('memory_limit', 0) / 2**30:.1f}GiB  resources={{{res}}}  "
            f"processing={len(processing.get(addr, ()))}"
        )
    return "\n".join(lines)


def scheduler_address(address: str | None, directory: str | Path) -> str:
    """The scheduler to ask: ``address``, else ``DASK_SCHEDULER``, else the one
    :func:`start_cluster` recorded in ``<directory>/address``."""
    address = address or os.environ.get("DASK_SCHEDULER")
    recorded = Path(directory) / ADDRESS_FILE
    if not address and recorded.is_file():
        address = recorded.read_text().strip()
    if not address:
        raise ClusterError(
            f"no scheduler address: pass --address, set DASK_SCHEDULER, or run "
            f"`make cluster-up` (writes {recorded})"
        )
    return address
