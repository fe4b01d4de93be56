"""`make export`: the finished run as one folder that predicts without the build tree.

    python -m stages.export --config C --build build/<name> --out build/<name>/export

Writes ``build/<name>/export/`` (see ``pipeline.export`` and ``pipeline.runtime.exported``):
ONNX networks, the heads, Two-Flow and the second level as arrays and JSON, the thresholds,
the runtime's code and a manifest. ``cd <folder> && python -m runtime photo.jpg`` labels an
image with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import cli


def run(config: Path, build: Path, out: Path) -> None:
    from pipeline.export import export_run

    out = export_run(load_config(config), config, build, out)
    print(f"export: {out}  (labels an image: cd {out} && python -m runtime photo.jpg)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--build", type=Path, required=True, help="the run's build/<name> folder")
    ap.add_argument("--out", type=Path, required=True, help="the export folder to write")
    args = ap.parse_args(argv)
    return cli(lambda: run(args.config, args.build, args.out), tensorflow=True)


if __name__ == "__main__":
    sys.exit(main())
