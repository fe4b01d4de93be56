"""Load a fold's ``.weights.h5`` into a built model in milliseconds, not Keras' 0.4 s.

``model.load_weights`` walks the model's attribute tree (``dir()`` of every layer) on
every call; a predictor that swaps 40 fold x epoch weight sets into one model per backbone
paid most of a cold `make predict` there. The file itself is a plain HDF5 tree, one dataset
per variable, laid out by the model's architecture (class names and positions, not layer
names), so it is the same for every model one architecture builds.

:class:`WeightFile` learns that layout once per model: it gives each variable a unique
marker value, lets Keras write the file (its own layout, not re-implemented here), and
reads back which dataset holds which marker. Later loads read the datasets with h5py in
``model.weights`` order and ``set_weights`` them. Anything unexpected (a dataset that holds
no single marker, a variable without a dataset, a file without a dataset of the layout)
falls back to ``model.load_weights``, which then raises Keras' own error for a wrong file.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _layout(model) -> list[str] | None:
    """The HDF5 dataset path of each of ``model.weights`` (in that order), or None where
    the file Keras writes does not map one dataset to one variable."""
    import h5py

    variables = model.weights
    saved = [np.array(v.numpy()) for v in variables]
    paths: list[str | None] = [None] * len(variables)
    ok = True
    try:
        for i, v in enumerate(variables):
            v.assign(np.full(tuple(v.shape), i + 1, dtype=saved[i].dtype))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "layout.weights.h5"
            model.save_weights(path)
            with h5py.File(path, "r") as f:
                datasets: list[tuple[str, np.ndarray]] = []
                f.visititems(
                    lambda name, obj: (
                        datasets.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None
                    )
                )
        for name, value in datasets:
            marks = np.unique(np.asarray(value).ravel())
            i = int(marks[0]) - 1 if marks.size == 1 else -1
            if not 0 <= i < len(paths) or paths[i] is not None:
                ok = False
                break
            paths[i] = name
    finally:
        for v, a in zip(variables, saved, strict=True):
            v.assign(a)
    if not ok or any(p is None for p in paths):
        return None
    return [p for p in paths if p is not None]


class WeightFile:
    """Loads ``.weights.h5`` files into models of one architecture.

    Args:
        model: a built Keras model; its layout (dataset per variable) is learnt from it
            and holds for every model built the same way (same backbone and settings).
    """

    def __init__(self, model):
        self.paths = _layout(model)
        if self.paths is None:
            log.info("%s: weight file layout not one dataset per variable; using Keras", model.name)

    def load(self, model, path: str | Path) -> None:
        """Fill ``model``'s variables from ``path``, as ``model.load_weights(path)`` would."""
        import h5py

        if self.paths is not None and len(self.paths) == len(model.weights):
            try:
                with h5py.File(path, "r") as f:
                    values = [f[p][()] for p in self.paths]
                model.set_weights(values)
                return
            except (KeyError, ValueError, OSError):
                pass  # not this architecture's file: Keras says what is wrong with it
        model.load_weights(path)
