"""Dask glue: connect to a scheduler given by address, failing fast with a clear message."""

from __future__ import annotations


def connect(address: str, timeout: float = 10.0):
    """A ``dask.distributed.Client`` for ``address``; an unreachable one fails within ``timeout``."""
    from dask.distributed import Client

    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"cannot reach the Dask scheduler at {address} within {timeout:.0f}s ({exc}); "
            "start it with `dask scheduler` (or `make cluster-up`) or unset DASK_SCHEDULER"
        ) from exc
