"""`make cluster-up` / `cluster-down` / `cluster-status`: a Dask cluster as real processes.

``up`` starts ``dask scheduler`` and N ``dask worker`` processes in the background (pid
files, logs and the scheduler address under ``--dir``) and returns once the scheduler sees
every worker; ``down`` stops them; ``status`` prints the workers and their resources. With
``--scheduler tcp://head:8786``, ``up`` starts workers only and joins that scheduler (run
it on each extra machine, ``--host`` = that machine's address). The processes are managed
by ``pipeline.cluster``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages.common import cli

DEFAULT_DIR = Path("build/cluster")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a scheduler and N workers in the background")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--threads", type=int, default=1, help="threads per worker")
    up.add_argument("--port", type=int, default=8786)
    up.add_argument("--host", default="127.0.0.1", help="address to listen on and advertise")
    up.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    up.add_argument("--gpu-resource", action="store_true", help="workers declare GPU=1")
    up.add_argument("--scheduler", help="join this scheduler (workers only)")
    up.add_argument("--timeout", type=float, default=90.0)
    down = sub.add_parser("down", help="stop the processes started by `up`")
    down.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    st = sub.add_parser("status", help="print the workers and their resources")
    st.add_argument("--address", help="scheduler address (default: DASK_SCHEDULER or --dir)")
    st.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    return ap


def main(argv: list[str] | None = None) -> int:
    from pipeline.cluster import cluster_status, scheduler_address, start_cluster, stop_cluster

    args = parser().parse_args(argv)

    def body() -> None:
        if args.command == "up":
            cluster = start_cluster(
                args.dir,
                args.workers,
                args.threads,
                args.port,
                args.host,
                args.gpu_resource,
                args.scheduler,
                args.timeout,
            )
            print(cluster.address)
        elif args.command == "down":
            stop_cluster(args.dir)
        else:
            print(cluster_status(scheduler_address(args.address, args.dir)))

    return cli(body)  # a ClusterError (a RuntimeError) is one line on stderr and exit 2


if __name__ == "__main__":
    sys.exit(main())
