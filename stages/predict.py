"""`make predict IMAGE=...`: score image files with a run's export (ensemble or one model).

    python -m stages.predict --export build/<name>/export --image A.jpg [B.jpg ...]
        [--model ensemble|<backbone>|twoflow] [--json]

Prints, per image, the predicted labels and a table of probability vs threshold per label
(``--json``: one JSON object per image, the format `make serve` shows). It reads only the
export (``make export``): no TensorFlow, no build tree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages.common import cli


def run(export: Path, images: list[Path], model: str, as_json: bool) -> None:
    from pipeline.runtime.exported import load, print_predictions

    print_predictions(images, load(export).predict(images, model), as_json)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--export", type=Path, required=True, help="the run's export folder")
    ap.add_argument("--image", type=Path, nargs="+", required=True)
    ap.add_argument("--model", default="ensemble", help="ensemble (default) or a base model")
    ap.add_argument("--json", action="store_true", help="one JSON object per image")
    args = ap.parse_args(argv)
    return cli(lambda: run(args.export, args.image, args.model, args.json))


if __name__ == "__main__":
    sys.exit(main())
