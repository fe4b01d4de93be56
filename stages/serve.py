"""`make serve`: the interactive page over a finished run (http://127.0.0.1:8000/).

python -m stages.serve --config C --build build/<name> [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import cli


def run(config: Path, build: Path, host: str, port: int, max_upload_mb: float) -> None:
    import uvicorn

    from pipeline.serve import create_app

    app = create_app(load_config(config), build, int(max_upload_mb * 1024 * 1024))
    print(f"serving {build} on http://{host}:{port}/  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--build", type=Path, required=True, help="the run's build/<name> folder")
    ap.add_argument("--host", default="127.0.0.1", help="default: this machine only")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-upload-mb", type=float, default=10.0)
    args = ap.parse_args(argv)
    return cli(lambda: run(args.config, args.build, args.host, args.port, args.max_upload_mb))


if __name__ == "__main__":
    sys.exit(main())
