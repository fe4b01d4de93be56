"""Dask glue: one switch (``DASK_SCHEDULER``) sends a stage's work to a cluster.

Make stays the owner of which files exist. A stage that finds ``DASK_SCHEDULER`` in its
environment does not compute in-process: it submits the *same* pure call as one task to
the cluster, waits, and the worker writes the output atomically (temp file +
``os.replace``) at the same path. That works because every host sees the artifacts at the
same absolute path (a shared filesystem mounted identically, the repo checked out at the
same path, or an absolute ``BUILD``); relative paths are resolved against the submitting
process's working directory, which each task carries along (:func:`_call_in_dir`).

Without the variable the very same function runs locally, so both paths write the same
files. Tasks are submitted with ``pure=False`` (a re-run really re-runs) and ``retries``:
an exception is retried, and a worker that dies mid-task (SIGKILL, lost host) makes the
scheduler re-run the task on another worker (``distributed.scheduler.allowed-failures``).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

SCHEDULER_ENV = "DASK_SCHEDULER"
GPU = "GPU"
T = TypeVar("T")

_cwd_lock = threading.Lock()


class RemoteTaskError(RuntimeError):
    """The cluster could not finish a task (worker deaths, cancelled, scheduler lost).

    Raised with a one-line message naming the task and the scheduler; errors raised by the
    task itself are re-raised with their own type instead.
    """


def scheduler_address() -> str | None:
    """The scheduler address from ``DASK_SCHEDULER``, or None to run locally."""
    return os.environ.get(SCHEDULER_ENV, "").strip() or None


def connect(address: str, timeout: float = 10.0):
    """A ``dask.distributed.Client`` for ``address``; an unreachable one fails within ``timeout``.

    Why a bound: a typo in ``DASK_SCHEDULER`` must not hang ``make`` forever. Two ways to
    hang exist: a refused port (Dask retries until its connect timeout) and a port where
    something else listens and never answers the Dask handshake (Dask waits for it with no
    timeout at all). A bounded handshake probe (:func:`_probe`) fails fast on both; then
    the client connects with what is left of ``timeout``.

    Raises:
        ConnectionError: naming the address and what to do; ``filename`` is the address, so
            a stage CLI prints ``error: <address>: cannot reach ...``.
    """
    from dask.distributed import Client

    start = time.monotonic()
    try:
        _probe(address, 0.6 * timeout)
        left = max(1.0, timeout - (time.monotonic() - start) - 1.0)
        return Client(address, timeout=f"{left:.1f}s")
    except (OSError, TimeoutError) as exc:
        reason = (
            "no Dask handshake; is another program listening there?"
            if isinstance(exc, TimeoutError) and not str(exc)
            else _one_line(exc)
        )
        raise ConnectionError(
            errno.ETIMEDOUT,
            f"cannot reach the Dask scheduler within {timeout:.0f}s ({reason}); start it "
            "with `dask scheduler` (or `make cluster-up`) or unset DASK_SCHEDULER",
            address,
        ) from exc


def _probe(address: str, timeout: float) -> None:
    """Open and close one Dask comm to ``address``, handshake included, within ``timeout``.

    Skipped when called from a running event loop (async callers manage their own).
    """
    import asyncio

    from distributed.comm import connect as comm_connect

    try:
        asyncio.get_running_loop()
        return
    except RuntimeError:
        pass

    async def probe() -> None:
        comm = await asyncio.wait_for(
            comm_connect(address, timeout=round(0.8 * timeout, 1)), timeout
        )
        await comm.close()

    asyncio.run(probe())


def worker_resources(client) -> dict[str, dict[str, float]]:
    """Worker address -> the resources it declared (``dask worker --resources GPU=1``)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {addr: dict(info.get("resources") or {}) for addr, info in workers.items()}


def gpu_resources(client) -> dict[str, float] | None:
    """``{"GPU": 1}`` when any worker declares a GPU resource, else None.

    Asking for a resource no worker has would leave the task waiting forever, so a CNN job
    only asks for a GPU on clusters that have GPU workers.
    """
    has_gpu = any(res.get(GPU, 0) > 0 for res in worker_resources(client).values())
    return {GPU: 1} if has_gpu else None


def _call_in_dir(
    cwd: str,
    func: Callable[..., T],
    args: tuple,
    kwargs: dict,
    isolate: bool = False,
    keep_process: bool = False,
) -> T:
    """Worker side: run ``func`` with the submitter's working directory, so relative paths
    (Make's ``build/...``, a config's ``data/...``) mean the same file on every host.

    The directory must exist on the worker (the shared filesystem); otherwise the error
    says so instead of writing artifacts somewhere nobody reads them. Without ``isolate``
    the worker process changes directory (process-wide: workers running path-relative
    jobs should use one thread each); with it, the call runs in a fresh child process
    started there (:func:`_call_in_process`), or with ``keep_process`` in a child the worker
    keeps for its next such calls (:func:`_call_in_kept_process`).
    """
    if not os.path.isdir(cwd):
        import socket

        raise FileNotFoundError(
            f"{cwd} does not exist on worker host {socket.gethostname()}; artifacts must "
            "live on a shared filesystem at the same path on every host (or use absolute "
            "paths, e.g. an absolute BUILD)"
        )
    if isolate and keep_process:
        return _call_in_kept_process(cwd, func, args, kwargs)
    if isolate:
        return _call_in_process(cwd, func, args, kwargs)
    if os.path.realpath(os.getcwd()) != os.path.realpath(cwd):
        with _cwd_lock:
            log.info("worker: changing directory to %s (the submitter's)", cwd)
            os.chdir(cwd)
    return func(*args, **kwargs)


def _call_in_process(cwd: str, func: Callable[..., T], args: tuple, kwargs: dict) -> T:
    """Run the call in a fresh Python process (on the worker host) and return its result.

    Why: a job that seeds process-global state (``random``, NumPy, TF: Keras draws weight
    seeds from Python's ``random``) is only reproducible when no other thread draws from
    it meanwhile, and a Dask worker's own threads do (heartbeat jitter, retries). A fresh
    process per job has exactly the state of a local ``python -m stages...`` run, and it
    hands TF's (GPU) memory back when the job ends. The child dies with the worker
    (``PR_SET_PDEATHSIG``), so a killed worker leaves no orphan writing files while the
    task is retried elsewhere.
    """
    import pickle
    import subprocess
    import sys
    import tempfile

    import cloudpickle

    with tempfile.TemporaryDirectory(prefix="remote-call-") as tmp:
        call, result = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
        call.write_bytes(cloudpickle.dumps((func, args, kwargs)))
        code = (
            "from pipeline.distributed import _child_main; "
            f"_child_main({str(call)!r}, {str(result)!r}, {os.getpid()})"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, stdin=subprocess.DEVNULL)
        if not result.is_file():
            raise RuntimeError(
                f"the job process of {_describe(func, args)} exited with status "
                f"{proc.returncode} without a result; see this worker's log"
            )
        ok, value = pickle.loads(result.read_bytes())
    if not ok:
        raise value
    return value


def _child_main(call: str, result: str, parent: int) -> None:
    """Entry point of :func:`_call_in_process`'s child: load the call, run it, store the
    outcome (value or exception) for the parent."""
    _die_with_parent(parent)
    _child_logging()
    _run_call_file(call, result)


def _child_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _run_call_file(call: str, result: str) -> None:
    """Load the pickled call in ``call``, run it, store the outcome (value or exception)."""
    import pickle
    import traceback

    from pipeline.artifacts import write_bytes_atomic

    func, args, kwargs = pickle.loads(Path(call).read_bytes())
    try:
        outcome: tuple[bool, Any] = (True, func(*args, **kwargs))
    except Exception as exc:
        traceback.print_exc()
        outcome = (False, exc)
    try:
        payload = pickle.dumps(outcome)
    except Exception:  # an unpicklable exception: keep its type name and message
        exc = outcome[1]
        payload = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
    write_bytes_atomic(result, payload)


class _KeptProcess:
    """A job process on the worker host that runs calls one at a time and stays for the
    next: what it built (a compiled model, ``pipeline.train.session``) serves later jobs.

    Isolated from the worker's threads as a fresh one is (:func:`_call_in_process`), and
    it dies with the worker. Requests (call and result file names, cwd) come as JSON lines
    on its stdin; it answers each with one line on a pipe of its own.
    """

    def __init__(self, cwd: str):
        import subprocess
        import sys

        read_fd, self._write_fd = os.pipe()
        self._answers = os.fdopen(read_fd, "rb")
        code = (
            "from pipeline.distributed import _kept_main; "
            f"_kept_main({self._write_fd}, {os.getpid()})"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=cwd, stdin=subprocess.PIPE, pass_fds=[self._write_fd]
        )
        os.close(self._write_fd)

    def call(self, cwd: str, func: Callable, args: tuple, kwargs: dict) -> tuple[bool, Any]:
        """The call's outcome: (True, value) or (False, the exception it raised)."""
        import json
        import pickle
        import tempfile

        import cloudpickle

        with tempfile.TemporaryDirectory(prefix="kept-call-") as tmp:
            call, result = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
            call.write_bytes(cloudpickle.dumps((func, args, kwargs)))
            request = {"call": str(call), "result": str(result), "cwd": cwd}
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
                answered = self._answers.readline()
            except (BrokenPipeError, OSError):
                answered = b""
            if not answered or not result.is_file():
                self.close()
                raise RuntimeError(
                    f"the job process of {_describe(func, args)} exited with status "
                    f"{self.proc.poll()} without a result; see this worker's log"
                )
            return pickle.loads(result.read_bytes())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self._answers.close()


_kept: list[_KeptProcess] = []
_kept_lock = threading.Lock()


def _call_in_kept_process(cwd: str, func: Callable[..., T], args: tuple, kwargs: dict) -> T:
    """Run the call in an idle kept job process of this worker (a new one if none is idle)
    and keep the process for the next call; one dies with its call if the call kills it."""
    with _kept_lock:
        while _kept and not _kept[-1].alive():
            _kept.pop().close()
        proc = _kept.pop() if _kept else None
    if proc is None:
        proc = _KeptProcess(cwd)
    ok, value = proc.call(cwd, func, args, kwargs)  # raises (and closes it) if it died
    with _kept_lock:
        _kept.append(proc)
    if not ok:
        raise value
    return value


def _kept_main(answer_fd: int, parent: int) -> None:
    """Entry point of a :class:`_KeptProcess`: serve calls until the worker goes."""
    import json
    import sys

    _die_with_parent(parent)
    _child_logging()
    for line in sys.stdin:
        request = json.loads(line)
        os.chdir(request["cwd"])
        _run_call_file(request["call"], request["result"])
        os.write(answer_fd, b"done\n")


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent (the worker) dies."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _describe(func: Callable, args: tuple) -> str:
    """A short name for logs and errors: ``module.func(arg, ...)`` with short args only."""
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    shown = [repr(a) if isinstance(a, int | float | str) else type(a).__name__ for a in args]
    text = f"{name}({', '.join(shown)})"
    return text if len(text) <= 160 else text[:157] + "..."


def run_remote(
    func: Callable[..., T],
    *args: Any,
    address: str,
    resources: Mapping[str, float] | Literal["auto"] | None = None,
    retries: int = 2,
    timeout: float = 10.0,
    isolate: bool = False,
    keep_process: bool = False,
    **kwargs: Any,
) -> T:
    """Run ``func(*args, **kwargs)`` as ONE task on the cluster at ``address``; return its result.

    ``func`` must be importable on the workers (a module-level function of an installed
    package) and its arguments picklable. The call blocks until the task ends, so Make's
    ``-j N`` gives N concurrent tasks.

    Args:
        func, args, kwargs: the call; ``kwargs`` must not use this function's own names.
        address: scheduler address, ``tcp://host:port``.
        resources: worker resources the task needs (``{"GPU": 1}``); ``"auto"`` asks for one
            GPU only when some worker declares one (see :func:`gpu_resources`).
        retries: re-runs after an exception raised by the task. A worker death is retried by
            the scheduler regardless (up to ``distributed.scheduler.allowed-failures``).
        timeout: seconds to reach the scheduler (not a limit on the task).
        isolate: run the call in a fresh process on the worker (see
            :func:`_call_in_process`): bit-identical results for jobs that seed global RNGs
            (CNN training), and their memory freed after each job.
        keep_process: with ``isolate``, run it in a job process the worker keeps for its
            next such calls (:class:`_KeptProcess`): what the call built (a compiled
            model) serves the next; for calls that reset the global state they read.

    Raises:
        ConnectionError: the scheduler cannot be reached within ``timeout``.
        RemoteTaskError: the cluster could not finish the task (e.g. it killed every worker
            that ran it), one line naming the task and the scheduler.
        Exception: an error raised by ``func`` itself, with its own type and message, exactly
            as a local call would raise it.
    """
    from concurrent.futures import CancelledError

    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    what = _describe(func, args)
    with connect(address, timeout=timeout) as client:
        if resources == "auto":
            resources = gpu_resources(client)
        started = time.perf_counter()
        future = client.submit(
            _call_in_dir,
            os.getcwd(),
            func,
            args,
            kwargs,
            isolate,
            keep_process,
            resources=dict(resources) if resources else None,
            retries=retries,
            pure=False,
        )
        log.info("submitted %s to %s (resources %s)", what, address, resources or "none")
        try:
            result = future.result()
        except (KilledWorker, CancelledError, CommClosedError) as exc:
            # The cluster failed, not the task: say so in one line (no remote traceback).
            raise RemoteTaskError(
                f"{what} could not finish on the Dask cluster at {address}: "
                f"{type(exc).__name__}: {_one_line(exc)}; see the scheduler and worker logs"
            ) from None
        except Exception:
            # The task's own error, same type and message as a local run would raise.
            log.error("%s failed on the Dask cluster at %s", what, address)
            raise
        holders = client.who_has(future).get(future.key, ())
        log.info(
            "%s done in %.1fs on %s", what, time.perf_counter() - started, ", ".join(holders) or "?"
        )
        return result


def maybe_remote(
    func: Callable[..., T], *args: Any, keep_process: bool = False, **kwargs: Any
) -> T:
    """``func(*args, **kwargs)`` on the cluster named by ``DASK_SCHEDULER``, else locally.

    The one switch of the pipeline: a stage calls its ``run`` through this, and the same
    code writes the same files either way. On a cluster the task asks for one GPU when any
    worker declares a ``GPU`` resource (CNN jobs), else for nothing, and runs in a fresh
    process on the worker, as ``python -m stages...`` would locally (``isolate=True``);
    with ``keep_process`` in one the worker keeps for the next such tasks (fold jobs: a
    kept process reuses its compiled models, see ``pipeline.train.session``).
    """
    address = scheduler_address()
    if address is None:
        return func(*args, **kwargs)
    return run_remote(
        func,
        *args,
        address=address,
        resources="auto",
        isolate=True,
        keep_process=keep_process,
        **kwargs,
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
