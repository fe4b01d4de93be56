"""`make import-data`: a published data-set format -> our train folder (labels.csv + images/).

    python -m stages.import_data --format kaggle_csv --src train.csv --out data/x \\
        --id-column image_name --labels-column tags --extension .jpg

Formats (see pipeline/data/datasets/): folder_per_class (SRC = tree root, class folder names
split on --separator into labels), kaggle_csv (SRC = the CSV), imaterialist_json (SRC =
the JSON; local images only, URLs are recorded, never downloaded), clothing_attribute_mat
(SRC = the release root with ground_truth/*_GT.mat + images/). OUT is replaced atomically
when it holds a previous IMPORT.json; images are hard-linked where possible.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.data.datasets import FORMATS
from stages.common import cli

log = logging.getLogger("stages.import_data")

#: format option -> its command-line flag (options not given are left to each adapter)
OPTIONS: dict[str, dict[str, Any]] = {
    "id_column": {"help": "kaggle_csv: image-id column (default image_id)"},
    "labels_column": {"help": "kaggle_csv: space-separated label column (default labels)"},
    "separator": {
        "help": "folder_per_class: splits class folder names (default _); "
        "kaggle_csv: between labels in a cell (default whitespace)"
    },
    "image_dir": {
        "type": Path,
        "help": "where the images are (default: images/ beside SRC, or SRC/images)",
    },
    "extension": {"help": "file extension for ids given without one (e.g. .jpg)"},
    "label_names": {"type": Path, "help": "imaterialist_json: JSON {label id: name}"},
    "skip_missing": {
        "action": "store_true",
        "help": "imaterialist_json: leave out images with no local file instead of failing",
    },
    "gt_dir": {"type": Path, "help": "clothing_attribute_mat: default SRC/ground_truth"},
    "positive_value": {
        "type": int,
        "help": "clothing_attribute_mat: binary GT value meaning yes (default 2; 1 = no)",
    },
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run(fmt: str, src: Path, out: Path, overwrite: bool = False, **options: Any) -> dict[str, Any]:
    """Check that every given option applies to ``fmt``, then convert."""
    convert = FORMATS[fmt]
    accepted = set(inspect.signature(convert).parameters) - {"src", "out_dir", "overwrite"}
    wrong = [o for o in options if o not in accepted]
    if wrong:
        takes = ", ".join(flag(o) for o in sorted(accepted)) or "no options"
        raise ValueError(f"{flag(wrong[0])} does not apply to --format {fmt} (it takes {takes})")
    summary = convert(src, out, overwrite=overwrite, **options)
    log.info("positives per label: %s", json.dumps(summary["positives"]))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stages.import_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--format", required=True, choices=sorted(FORMATS))
    ap.add_argument("--src", type=Path, required=True, help="the data set as published")
    ap.add_argument("--out", type=Path, required=True, help="train folder to write")
    ap.add_argument(
        "--overwrite", action="store_true", help="replace an OUT this tool did not write"
    )
    group = ap.add_argument_group("format options (only given ones are passed)")
    for name, kw in OPTIONS.items():
        group.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, **kw)
    args = vars(ap.parse_args(argv))
    fmt, src, out, overwrite = (args.pop(k) for k in ("format", "src", "out", "overwrite"))
    return cli(lambda: run(fmt, src, out, overwrite, **args))


if __name__ == "__main__":
    sys.exit(main())
