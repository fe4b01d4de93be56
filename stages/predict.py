"""`make predict IMAGE=...`: score image files with a finished run (ensemble or one model).

    python -m stages.predict --config C --build build/<name> --image A.jpg [B.jpg ...]
        [--model ensemble|<backbone>|twoflow] [--json]

Prints, per image, the predicted labels and a table of probability vs threshold per label
(``--json``: one JSON object per image, the format `make serve` shows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.config import load_config
from stages.common import cli


def run(config: Path, build: Path, images: list[Path], model: str, as_json: bool) -> None:
    from pipeline.predict import Predictor

    predictor = Predictor(load_config(config), build)
    for image, pred in zip(images, predictor.predict(images, model), strict=True):
        if as_json:
            print(json.dumps({"image": str(image), **pred.as_dict()}, sort_keys=True))
            continue
        print(f"{image}: {' '.join(pred.positive_labels) or '(no label)'}  [{pred.detail}]")
        for j, lab in enumerate(pred.labels):
            mark = "*" if pred.predicted[j] else " "
            print(f"  {mark} {lab:<24} p={pred.probabilities[j]:.3f}  t={pred.thresholds[j]:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--build", type=Path, required=True, help="the run's build/<name> folder")
    ap.add_argument("--image", type=Path, nargs="+", required=True)
    ap.add_argument("--model", default="ensemble", help="ensemble (default) or a base model")
    ap.add_argument("--json", action="store_true", help="one JSON object per image")
    args = ap.parse_args(argv)
    return cli(lambda: run(args.config, args.build, args.image, args.model, args.json))


if __name__ == "__main__":
    sys.exit(main())
