"""Helpers shared by the stage CLIs: logging set-up and error reporting."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable


def setup_logging() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def cli(body: Callable[[], None]) -> int:
    """Run a stage body; turn expected input errors into one clear line and exit code 2."""
    setup_logging()
    try:
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


def add_fold_model_args(ap, what: str) -> None:
    """The arguments of a stage fit on one CNN fold's embeddings (Two-Flow, baseline)."""
    from pathlib import Path

    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--backbone", required=True, help=f"the backbone whose embeddings {what}")
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--folds", type=Path, required=True, help="folds CSV from `make folds`")
    ap.add_argument(
        "--cnn-work-dir",
        type=Path,
        required=True,
        help="that backbone's fold work dir (build/<name>/cnn/<backbone>.fold<k>)",
    )
    ap.add_argument("--out", type=Path, required=True, help="predictions .npz (CNN format)")
