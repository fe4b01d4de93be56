"""Helpers shared by the stage CLIs: logging set-up and error reporting."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator


def setup_logging() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def cli(body: Callable[[], None], tensorflow: bool = False) -> int:
    """Run a stage body; turn expected input errors into one clear line and exit code 2.

    ``tensorflow``: the stage runs a Keras model; import TensorFlow first, without its
    start-up noise (:func:`import_tensorflow_quietly`).
    """
    setup_logging()
    with _timed_stage():
        return _run(body, tensorflow)


#: When set, names a file every stage run appends one JSON line to (stage, arguments,
#: start, end): ``make bench-speed`` reads where a run's wall time went.
STAGE_TIMES_ENV = "FASHION_STAGE_TIMES"


@contextlib.contextmanager
def _timed_stage() -> Iterator[None]:
    start = time.time()
    try:
        yield
    finally:
        path = os.environ.get(STAGE_TIMES_ENV)
        if path:
            stage = os.path.splitext(os.path.basename(sys.argv[0]))[0]
            line = {"stage": stage, "argv": sys.argv[1:], "start": start, "end": time.time()}
            with open(path, "a", encoding="utf-8") as fh:  # one O_APPEND write per run
                fh.write(json.dumps(line) + "\n")


def _run(body: Callable[[], None], tensorflow: bool) -> int:
    try:
        if tensorflow:
            import_tensorflow_quietly()
        body()
    except (
        ValueError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        ConnectionError,
        RuntimeError,  # incl. pipeline.distributed.RemoteTaskError (a cluster failure)
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


CACHE_HELP = "decode cache index (make's build/<name>/cache/images.index.json); omit to decode"


def add_fold_args(ap) -> None:
    """The arguments of every stage that works on one CNN fold: the config, the fold, the
    folds CSV (the embedding, frozen-head, Two-Flow and baseline stages)."""
    from pathlib import Path

    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--folds", type=Path, required=True, help="folds CSV from `make folds`")


def add_fold_model_args(ap, what: str) -> None:
    """The arguments of a stage fit on one CNN fold's embeddings (Two-Flow, baseline)."""
    from pathlib import Path

    add_fold_args(ap)
    ap.add_argument("--backbone", required=True, help=f"the backbone whose embeddings {what}")
    ap.add_argument(
        "--embedding",
        type=Path,
        required=True,
        help="that fold's CNN embedding file (make embed-cnn: "
        "build/<name>/embed/cnn.<backbone>.fold<k>.npz)",
    )
    ap.add_argument("--out", type=Path, required=True, help="predictions .npz (CNN format)")


#: TensorFlow's start-up lines on a machine without a GPU (written by its C++ runtime
#: straight to file descriptor 2, before Python logging exists, so no log level hides
#: them): the CUDA probe's failure, the driver search, oneDNN's and absl's notices.
TF_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "port.cc:",  # "oneDNN custom operations are on ..."
    "cudart_stub.cc:",  # "Could not find cuda drivers on your machine ..."
    "cuda_platform.cc:",  # "failed call to cuInit: ..."
    "cuda_executor.cc:",
    "cuda_diagnostics.cc:",
    "gpu_device.cc:",  # "Cannot dlopen some GPU libraries ..."
    "computation_placer.cc:",
    "cuda_fft.cc:",
    "cuda_dnn.cc:",
    "cuda_blas.cc:",
    "Unable to register cu",  # cuFFT / cuDNN / cuBLAS factory notices
    "TF-TRT Warning",
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with stderr captured, then pass on every
    line but :data:`TF_STARTUP_NOISE`: each stage would otherwise open with the same
    CUDA-probe errors on a CPU machine. A real import error still shows in full.
    Does nothing under another Keras backend or when ``LOGLEVEL=DEBUG``."""
    import tempfile

    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    if os.environ.get("LOGLEVEL", "").upper() == "DEBUG" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe happens here, once
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in TF_STARTUP_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()
