"""Adapters from published data-set formats to the pipeline's data contract.

Each ``convert_<format>(src, out_dir, **options) -> summary`` is a pure function of its
inputs: it reads ``src`` (never modifies it) and writes ``out_dir/labels.csv`` +
``out_dir/images/`` (hard links where possible, else copies) + ``out_dir/IMPORT.json``,
atomically. :func:`split_holdout` makes a seeded, stratified held-out part for data sets
published without one. ``FORMATS`` maps a format name to its converter, so the CLI and the
tests loop over it and adding a format is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.data.datasets.clothing_attribute_mat import convert_clothing_attribute_mat
from pipeline.data.datasets.folder_per_class import convert_folder_per_class
from pipeline.data.datasets.imaterialist_json import convert_imaterialist_json
from pipeline.data.datasets.kaggle_csv import convert_kaggle_csv
from pipeline.data.datasets.split import split_holdout

FORMATS: dict[str, Callable[..., dict[str, Any]]] = {
    "folder_per_class": convert_folder_per_class,
    "kaggle_csv": convert_kaggle_csv,
    "imaterialist_json": convert_imaterialist_json,
    "clothing_attribute_mat": convert_clothing_attribute_mat,
}

__all__ = [
    "FORMATS",
    "convert_clothing_attribute_mat",
    "convert_folder_per_class",
    "convert_imaterialist_json",
    "convert_kaggle_csv",
    "split_holdout",
]
