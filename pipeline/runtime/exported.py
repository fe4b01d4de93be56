"""Predict from a ``make export`` folder: no build tree, no training code, no TensorFlow.

An export (``pipeline.export.export_run``) holds everything a finished run predicts with:

- ``manifest.json``: labels, folds, thresholds, the tie rule, which network and which head
  every base column runs, the second level's columns, versions and the config's hash;
- ``nets/*.onnx``: every network a model reads (a fine-tuned fold model at an epoch, with
  its pooled embedding when Two-Flow reads it; a frozen ImageNet backbone), run by ONNX
  Runtime;
- ``heads/*.npz``, ``twoflow/*.npz``: the frozen members' heads and Two-Flow's projection
  and forests as plain arrays;
- ``second_level/``: the chosen combiners as JSON (XGBoost's own JSON for its boosters,
  scored by :mod:`xgb_trees` without ``xgboost``);
- ``runtime/``: this module and the NumPy modules it imports, copied from the repository.

So a folder copied to another machine predicts with ``numpy``, ``opencv-python-headless``,
``pillow`` and ``onnxruntime`` (an XGBoost second level is scored in NumPy from its JSON)::

    cd <export folder> && python -m runtime photo.jpg [more.jpg ...] [--model NAME] [--json]

or, from Python, ``sys.path.insert(0, folder); import runtime; runtime.load(folder)``.
``make predict`` and ``make serve`` use it too. Everything here is computed as the run
computed it (``tests/test_export.py`` checks the outputs against ``stacked.npz``, the
submission and :class:`pipeline.predict.Predictor`).

This module imports only sibling modules, relatively (``tests/test_layers.py`` checks it),
so it runs in the repository (``pipeline.runtime.exported``) and in an export (``runtime``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .forest_arrays import ForestArrays
from .heads import head_proba
from .images import decode_image, resize_image
from .ops import (
    flip_batch,
    flip_mean,
    fold_votes,
    logistic_combiner_proba,
    majority_vote,
    weighted_mean_proba,
)
from .xgb_trees import BoosterArrays

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENSEMBLE = "ensemble"

Key = tuple[str, int, int]  # (member, fold, epoch): one fold model's base column


def column_id(key: Key) -> str:
    """A base column's name in the manifest: ``member|fold|epoch``."""
    member, fold, epoch = key
    return f"{member}|{int(fold)}|{int(epoch)}"


@dataclass
class Prediction:
    """One image's scores under one model.

    Attributes:
        model: ``"ensemble"`` or a base model's name.
        detail: how the scores were made (epoch, folds).
        labels: the L label names.
        probabilities: (L,) the model's probability per label (ensemble: the mean of the K
            stacked fold probabilities).
        thresholds: (L,) the thresholds the labels were cut at.
        predicted: (L,) 0/1 final labels.
        votes: (L,) how many of the K folds voted yes (ensemble only, else None).
    """

    model: str
    detail: str
    labels: list[str]
    probabilities: np.ndarray
    thresholds: np.ndarray
    predicted: np.ndarray
    votes: np.ndarray | None = None

    @property
    def positive_labels(self) -> list[str]:
        return [lab for lab, p in zip(self.labels, self.predicted, strict=True) if p]

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "detail": self.detail,
            "labels": self.positive_labels,
            "scores": {
                lab: {
                    "probability": float(self.probabilities[j]),
                    "threshold": float(self.thresholds[j]),
                    "predicted": int(self.predicted[j]),
                    **({"votes": int(self.votes[j])} if self.votes is not None else {}),
                }
                for j, lab in enumerate(self.labels)
            },
        }


def decode(image: str | Path | np.ndarray) -> np.ndarray:
    """An image file (or an already decoded uint8 RGB array) -> uint8 RGB (H, W, 3), once;
    every model input is resized from it (:func:`resize_image`)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"a decoded image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}"
            )
        return image
    return decode_image(image)


def image_batch(images: Sequence[np.ndarray], size: int, tta_flip: bool) -> np.ndarray:
    """Decoded images -> one :func:`flip_batch` batch (float32, ``size`` px), the input the
    run's models were given."""
    batch = np.stack([resize_image(img, size) for img in images]).astype(np.float32)
    return flip_batch(batch, tta_flip)


# ---- the second level ----------------------------------------------------------------------


class _XGBoostLabels:
    """Per label, the mean of its K XGBoost boosters on its feature columns, scored in NumPy
    from the boosters' JSON (:class:`BoosterArrays`: no ``xgboost`` import)."""

    def __init__(self, folder: Path, state: dict):
        self.features = [np.asarray(f, dtype=np.int64) for f in state["features_per_label"]]
        self.boosters = [
            [BoosterArrays.load(folder / f"label{j}.fold{k}.json") for k in range(n_models)]
            for j, n_models in enumerate(state["n_models"])
        ]

    def __call__(self, P: np.ndarray) -> np.ndarray:
        X = P.reshape(len(P), -1).astype(np.float32)
        out = np.empty((len(P), len(self.boosters)))
        for j, (boosters, cols) in enumerate(zip(self.boosters, self.features, strict=True)):
            rows = X[:, cols]  # sliced once: each of the K boosters reads the same columns
            out[:, j] = np.mean([b.predict(rows) for b in boosters], axis=0)
        return out


def _combiner(folder: Path, name: str, rec: dict):
    """A chosen combiner's probability function of the (n, C, L) cube."""
    state, kind = rec["state"], rec["class"]
    if kind in ("MeanCombiner", "CaruanaCombiner"):
        weights = np.asarray(state["weights"], dtype=np.float64)
        return lambda P: weighted_mean_proba(weights, P)
    if kind == "LogisticCombiner":
        models, scope = state["models"], rec["scope"]
        return lambda P: logistic_combiner_proba(models, scope, P)
    if kind == "XGBCombiner":
        return _XGBoostLabels(folder / name, state)
    raise ValueError(f"{folder}: unknown combiner {kind!r}; re-run `make export`")


class SecondLevel:
    """The chosen second level: label j from its combiner, clipped to [0, 1]."""

    def __init__(self, folder: Path):
        state = json.loads((folder / "second_level.json").read_text())
        self.choice = list(state["choice"])
        self.combiners = {n: _combiner(folder, n, rec) for n, rec in state["combiners"].items()}

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        P = np.asarray(P, dtype=np.float64)
        out = np.empty((P.shape[0], len(self.choice)))
        for name in dict.fromkeys(self.choice):
            cols = [j for j, n in enumerate(self.choice) if n == name]
            out[:, cols] = np.clip(self.combiners[name](P), 0.0, 1.0)[:, cols]
        return out


# ---- base columns ---------------------------------------------------------------------------


class TwoFlow:
    """One fold's Two-Flow model: pixel thumbnail projection + the CNN embedding -> the
    selected features -> per-label random forests (``pipeline.members.twoflow.TwoFlowModel``)."""

    def __init__(self, path: Path):
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        self.pixel_size = int(state["pixel_size"])
        self.components = state["components"]
        self.selected = state["selected"]
        self.constant = state["constant"]
        self.fitted = state["fitted"]
        self.forests = (
            ForestArrays.from_state({k[7:]: v for k, v in state.items() if k.startswith("forest_")})
            if len(self.fitted)
            else None
        )

    def pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The thumbnail features ``pipeline.models.inference.decoded_pixels`` gives."""
        import cv2

        p = self.pixel_size
        out = np.empty((len(images), p * p * 3), dtype=np.float32)
        for i, img in enumerate(images):
            if img.shape[:2] != (p, p):
                img = cv2.resize(img, (p, p), interpolation=cv2.INTER_AREA)
            out[i] = img.reshape(-1) / np.float32(255.0)
        return out

    def predict_proba(self, pixels: np.ndarray, deep: np.ndarray) -> np.ndarray:
        flow1 = (pixels @ self.components.T).astype(np.float32)
        kept = np.concatenate([flow1, np.asarray(deep, dtype=np.float32)], axis=1)
        kept = kept[:, self.selected]
        out = np.empty((len(kept), len(self.constant)), dtype=np.float32)
        out[:] = self.constant
        if self.forests is not None:
            out[:, self.fitted] = self.forests.predict_positive(kept)
        return out


class Scorer:
    """What a finished run's scorer does with its base columns, shared by :class:`Exported`
    and the build-tree :class:`pipeline.predict.Predictor`: which fold models a model reads,
    the ensemble's second level, fold vote and majority, a single model's fold mean.

    A subclass sets ``labels``, ``n_folds``, ``tie``, ``thresholds`` (L,), ``columns`` (the
    second level's (member, epoch) columns), ``used_columns`` (those it reads), ``singles``
    (name -> (epoch, thresholds, OOF F-beta)), ``external`` (names), ``ensemble_detail``,
    and implements :meth:`columns_of` and :meth:`stack`.
    """

    labels: list[str]
    n_folds: int
    tie: str
    thresholds: np.ndarray
    columns: list[tuple[str, int]]
    used_columns: list[tuple[str, int]]
    singles: dict[str, tuple[int, np.ndarray, float]]
    external: set[str]
    ensemble_detail: str
    #: a single model's fold-model count and detail when not the K folds' (the student)
    single_folds: dict[str, int] = {}
    single_details: dict[str, str] = {}

    def columns_of(self, images: list[np.ndarray], keys: list[Key]) -> dict[Key, np.ndarray]:
        """(n, L) probabilities of each base column's fold model."""
        raise NotImplementedError

    def stack(self, P: np.ndarray) -> np.ndarray:
        """(n, L) second-level probabilities of an (n, C, L) cube of base columns."""
        raise NotImplementedError

    @property
    def model_names(self) -> list[str]:
        """``"ensemble"`` first, then every base model."""
        return [ENSEMBLE, *self.singles]

    def base_columns(self, model: str = ENSEMBLE) -> list[Key]:
        """The (member, fold, epoch) fold models ``model`` reads, in the order it reads them."""
        if model == ENSEMBLE:
            return [(b, k, e) for k in range(self.n_folds) for b, e in self.used_columns]
        epoch = self.singles[model][0]
        return [(model, k, epoch) for k in range(self.single_folds.get(model, self.n_folds))]

    def external_members(self, model: str = ENSEMBLE) -> list[str]:
        """The ``[[external]]`` members ``model`` reads (they cannot score a new image)."""
        return sorted({m for m, _, _ in self.base_columns(model) if m in self.external})

    def check_scorable(self, model: str = ENSEMBLE) -> None:
        """Refuse an unknown model and, naming the members, a model that reads
        ``[[external]]`` members: their predictions came as a file made elsewhere, so there
        is no model to run on a new image, and dropping their columns would silently
        change the second level."""
        if model != ENSEMBLE and model not in self.singles:
            raise ValueError(f"unknown model {model!r}; choose one of {self.model_names}")
        ext = self.external_members(model)
        if not ext:
            return
        own = [m for m in self.model_names if not self.external_members(m)]
        what = (
            f"the ensemble's second level reads the [[external]] member(s) {ext}"
            if model == ENSEMBLE
            else f"model {model!r} is an [[external]] member"
        )
        raise ValueError(
            f"{what}: trained elsewhere, they have no model here to score a new image; "
            f"choose a model of this run ({', '.join(own) or 'none'}), or remove the "
            "[[external]] entries from the config and re-run `make stack`"
        )

    #: calls of :meth:`warm_up` per model (a traced Keras graph needs two)
    warm_calls: int = 1

    def warm_up(self, image: str | Path | np.ndarray, models: Sequence[str] = (ENSEMBLE,)) -> None:
        """Run one image through ``models`` (``warm_calls`` times), so the first real request
        is as fast as the others; models reading ``[[external]]`` members are skipped."""
        for name in models:
            if self.external_members(name):
                continue
            for _ in range(self.warm_calls):
                self.predict([image], name)

    def predict(
        self, images: Sequence[str | Path | np.ndarray], model: str = ENSEMBLE
    ) -> list[Prediction]:
        """Score images (files, or uint8 RGB arrays decoded once by the caller) with
        ``model`` (``"ensemble"`` or a base model's name)."""
        self.check_scorable(model)
        decoded = [decode(x) for x in images]  # a bad file fails first, with its name
        n, n_labels = len(decoded), len(self.labels)
        cols = self.columns_of(decoded, self.base_columns(model))
        if model == ENSEMBLE:
            # the K folds' feature cubes as one (K*n, C, L) batch: one second-level call
            # (every combiner scores rows independently); unread columns stay 0
            x = np.zeros((self.n_folds, n, len(self.columns), n_labels), dtype=np.float32)
            index = {c: i for i, c in enumerate(self.columns)}
            for k in range(self.n_folds):
                for b, e in self.used_columns:
                    x[k, :, index[(b, e)]] = cols[(b, k, e)]
            flat = x.reshape(self.n_folds * n, len(self.columns), n_labels)
            stacked = self.stack(flat).reshape(self.n_folds, n, n_labels)
            votes = fold_votes(stacked, self.thresholds)
            final = majority_vote(votes, self.tie)
            prob = stacked.mean(axis=0)
            return [
                Prediction(
                    ENSEMBLE,
                    self.ensemble_detail,
                    self.labels,
                    prob[i],
                    self.thresholds,
                    final[i],
                    votes.sum(axis=0)[i].astype(np.int64),
                )
                for i in range(n)
            ]
        epoch, th, _ = self.singles[model]
        prob = np.mean([cols[key] for key in self.base_columns(model)], axis=0)
        pred = (prob >= th).astype(np.int8)
        detail = self.single_details.get(
            model, f"epoch {epoch}, mean of {self.n_folds} fold models, OOF thresholds"
        )
        return [Prediction(model, detail, self.labels, prob[i], th, pred[i]) for i in range(n)]


def ensemble_detail(n_used: int, n_folds: int, combiners) -> str:
    """How the ensemble's scores are made, in words."""
    return (
        f"{n_used} base columns x {n_folds} folds -> second level "
        f"({', '.join(sorted(set(combiners)))}) -> majority of {n_folds} fold votes"
    )


class Exported(Scorer):
    """A ``make export`` folder, loaded once; :meth:`predict` scores images.

    Networks are opened on first use (a one-off prediction opens only those its model reads).

    Args:
        folder: the export folder.
        threads: ONNX Runtime's threads per network call (default: its own choice).
    """

    def __init__(self, folder: str | Path, threads: int | None = None):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; run `make export CONFIG=...`")
        m = json.loads(path.read_text())
        if m.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format {m.get('format')!r}, this runtime reads {FORMAT_VERSION}; "
                "re-run `make export`"
            )
        self.manifest = m
        self.name = m["name"]
        self.labels = list(m["labels"])
        self.n_folds = int(m["n_folds"])
        self.tie = m["tie"]
        self.thresholds = np.asarray(m["thresholds"], dtype=np.float64)
        self.columns = [(str(b), int(e)) for b, e in m["ensemble"]["columns"]]
        self.used_columns = [(str(b), int(e)) for b, e in m["ensemble"]["used"]]
        self.singles = {
            name: (int(s["epoch"]), np.asarray(s["thresholds"], dtype=np.float64), s["oof_fbeta"])
            for name, s in m["singles"].items()
        }
        self.ensemble_detail = m["ensemble"]["detail"]
        self.single_folds = {n: int(s["folds"]) for n, s in m["singles"].items() if "folds" in s}
        self.single_details = {n: s["detail"] for n, s in m["singles"].items() if "detail" in s}
        self.external = set(m["external"])
        self.threads = threads
        self._sessions: dict[str, object] = {}
        self._level: SecondLevel | None = None
        self._heads: dict[str, dict] = {}
        self._twoflow: dict[str, TwoFlow] = {}

    # ---- networks --------------------------------------------------------------------------

    def session(self, net: str):
        """The ONNX Runtime session of network ``net`` (opened once)."""
        if net not in self._sessions:
            import onnxruntime as ort

            opts = session_options(self.threads)
            path = self.folder / self.manifest["nets"][net]["file"]
            self._sessions[net] = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        return self._sessions[net]

    def run_nets(self, images: Sequence[np.ndarray], nets: Sequence[str]) -> dict[str, list]:
        """Each network's outputs on the images (flip-TTA mean): one input batch per (size,
        TTA), one call per network."""
        batches: dict[tuple[int, bool], np.ndarray] = {}
        out = {}
        for net in dict.fromkeys(nets):
            spec = self.manifest["nets"][net]
            size, tta = int(spec["size"]), bool(spec["tta_flip"])
            if (size, tta) not in batches:
                batches[(size, tta)] = image_batch(images, size, tta)
            sess = self.session(net)
            ys = sess.run(None, {sess.get_inputs()[0].name: batches[(size, tta)]})
            out[net] = [flip_mean(np.asarray(y, dtype=np.float32), tta) for y in ys]
        return out

    def _head(self, file: str) -> dict:
        if file not in self._heads:
            with np.load(self.folder / file, allow_pickle=False) as z:
                self._heads[file] = {k: z[k] for k in z.files}
        return self._heads[file]

    def columns_of(self, images: list[np.ndarray], keys: list[Key]) -> dict[Key, np.ndarray]:
        specs = {key: self.manifest["columns"][column_id(key)] for key in keys}
        nets = self.run_nets(images, [s["net"] for s in specs.values()])
        pixels: dict[int, np.ndarray] = {}
        out = {}
        for key, spec in specs.items():
            y = nets[spec["net"]][spec["output"]]
            if spec.get("twoflow"):
                if spec["twoflow"] not in self._twoflow:
                    self._twoflow[spec["twoflow"]] = TwoFlow(self.folder / spec["twoflow"])
                tf = self._twoflow[spec["twoflow"]]
                if tf.pixel_size not in pixels:
                    pixels[tf.pixel_size] = tf.pixels(images)
                y = tf.predict_proba(pixels[tf.pixel_size], y)
            elif spec.get("head"):
                head = self._head(spec["head"])
                y = head_proba(head, y)
            out[key] = np.asarray(y, dtype=np.float32)
        return out

    def stack(self, P: np.ndarray) -> np.ndarray:
        if self._level is None:
            self._level = SecondLevel(self.folder / self.manifest["ensemble"]["second_level"])
        return self._level.predict_proba(P)

    # ---- public --------------------------------------------------------------------------

    def similar_embedding(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, D) embeddings of decoded images by the similarity index's network, made as
        the index's were (``manifest["similar"]``; raises when the index is of pixels)."""
        spec = self.manifest.get("similar")
        if not spec:
            raise ValueError(f"{self.folder}: the export has no similarity network")
        return self.run_nets(images, [spec["net"]])[spec["net"]][spec["output"]]


def session_options(threads: int | None = None):
    """ONNX Runtime options of every network's session. An export holds dozens of sessions
    (81 on clothing-attributes), each with its own thread pool, so:

    - no spinning: a pool's threads spin after each call by default, and the idle pools'
      spinning threads took the cores from the working one (the 81-network ensemble: p50
      0.47 s with spinning, 0.24 s without, one image, 2 cores);
    - no per-session arena: each would keep its largest batch's activations (out of memory
      on clothing-attributes' batch scoring).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.enable_cpu_mem_arena = False
    return opts


def load(folder: str | Path, threads: int | None = None) -> Exported:
    """The export in ``folder`` (see :class:`Exported`)."""
    return Exported(folder, threads)


def print_predictions(images: Sequence, preds: Sequence[Prediction], as_json: bool) -> None:
    """Per image its labels and a table of probability vs threshold (``as_json``: one JSON
    object per image, the format `make serve` shows)."""
    for image, pred in zip(images, preds, strict=True):
        if as_json:
            print(json.dumps({"image": str(image), **pred.as_dict()}, sort_keys=True))
            continue
        print(f"{image}: {' '.join(pred.positive_labels) or '(no label)'}  [{pred.detail}]")
        for j, lab in enumerate(pred.labels):
            mark = "*" if pred.predicted[j] else " "
            print(f"  {mark} {lab:<24} p={pred.probabilities[j]:.3f}  t={pred.thresholds[j]:.2f}")


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime IMAGE [IMAGE ...] [--model M] [--json] [--export FOLDER]`` in an
    export folder (``--export`` defaults to the folder holding this runtime)."""
    ap = argparse.ArgumentParser(description="label images with an exported ensemble")
    ap.add_argument("image", type=Path, nargs="+")
    ap.add_argument(
        "--export",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="the export folder (holds manifest.json; default: this runtime's)",
    )
    ap.add_argument("--model", default=ENSEMBLE, help="ensemble (default) or a base model")
    ap.add_argument("--json", action="store_true", help="one JSON object per image")
    args = ap.parse_args(argv)
    try:
        exported = load(args.export)
        preds = exported.predict(args.image, args.model)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_predictions(args.image, preds, args.json)
    return 0
