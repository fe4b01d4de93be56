"""Score single images with a finished run: one base model, or the full ensemble.

The ensemble path repeats, for one image, exactly what the stages did for the test set:
every base column the stacker uses, ``(backbone, epoch)``, is predicted by each of the K
fold models at that epoch (flip TTA as in training), the K feature cubes go through the
chosen second-level combiners (``pipeline.second_level``), each fold's stacked probabilities are thresholded and the K
votes are bagged by majority (``submit.tie`` on ties). A single base model is its best
epoch (by OOF macro F-beta), the mean of its K fold models, at its own OOF thresholds,
as the report scores it. So a test image gets the labels its submission row has.

Needs a run's ``build/<name>/``: ``cnn/<backbone>.fold<k>/weights_epoch<EEE>.weights.h5``,
``twoflow/fold<k>.joblib`` (if Two-Flow is on), ``frozen/<member>.fold<k>.head.npz`` (frozen
members), ``stack/`` and ``thresholds.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import Config

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
TWOFLOW = "twoflow"


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


class Predictor:
    """Loads a finished run once; :meth:`predict` scores image files.

    Args:
        cfg: the run's config.
        build_dir: its build folder (``build/<name>``).
        preds: its base prediction files (default: every ``preds/*.fold<k>.npz`` of the
            config's backbones and Two-Flow), used to pick each base model's best epoch
            and thresholds.
    """

    def __init__(self, cfg: Config, build_dir: str | Path, preds=None):
        from pipeline.data import read_labels
        from pipeline.report import best_epoch
        from pipeline.second_level import SecondLevel
        from pipeline.select import group_pred_files, load_base_predictions

        self.cfg = cfg
        self.build = Path(build_dir)
        self.tta_flip = cfg.train.tta_flip
        self.size = cfg.data.image_size
        need = [self.build / "stack" / "selection.json", self.build / "thresholds.json"]
        for p in need:
            if not p.is_file():
                raise FileNotFoundError(f"{p} does not exist; run `make all CONFIG=...` first")
        selection = json.loads(need[0].read_text())
        self.columns = [(str(b), int(e)) for b, e in selection["columns"]]
        self.labels = list(selection["labels"])
        self.level = SecondLevel.load(self.build / "stack" / "models")
        th = json.loads(need[1].read_text())
        if list(th["labels"]) != self.labels:
            raise ValueError(f"{need[1]} and {need[0]} disagree on labels; re-run `make all`")
        self.thresholds = np.asarray(th["thresholds"], dtype=np.float64)
        if self.level.columns != self.columns or self.level.labels != self.labels:
            raise ValueError(f"{self.build / 'stack'}: models and selection.json disagree")
        self.used_columns = [self.columns[c] for c in self.level.used_columns]
        self.n_folds = cfg.folds.n_folds

        if preds is None:
            names = [b.name for b in cfg.train.backbones]
            if cfg.twoflow.enabled:
                names.append(TWOFLOW)
            preds = [
                self.build / "preds" / f"{b}.fold{k}.npz"
                for b in names
                for k in range(self.n_folds)
            ]
            preds += [
                self.build / "members" / f"{f.name}_{h}.fold{k}.npz"
                for f in cfg.frozen
                for h in f.heads
                for k in range(self.n_folds)
            ]
        table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
        base = load_base_predictions(group_pred_files(preds), table.ids)
        if list(base.labels) != self.labels:
            raise ValueError("the prediction files' labels differ from the stack's")
        beta, step, avg = cfg.thresholds.beta, cfg.thresholds.step, cfg.thresholds.average
        self.singles: dict[str, tuple[int, np.ndarray, float]] = {}
        for b in dict.fromkeys(name for name, _ in base.columns):
            score, c, ts = best_epoch(base, b, table.y, beta, step, avg)
            self.singles[b] = (base.columns[c][1], np.asarray(ts.thresholds_), score)
        self._models: dict[str, object] = {}
        self._weights: dict[tuple[str, int, int], list] = {}
        self._twoflow: dict[int, object] = {}
        self._frozen_members = {f"{f.name}_{h}": f for f in cfg.frozen for h in f.heads}
        self._heads: dict[tuple[str, int], object] = {}
        self._embedded: dict[str, tuple[tuple, np.ndarray]] = {}

    @property
    def model_names(self) -> list[str]:
        """``"ensemble"`` first, then every base model."""
        return [ENSEMBLE, *self.singles]

    # ---- base models -------------------------------------------------------------------

    def _work_dir(self, backbone: str, fold: int) -> Path:
        return self.build / "cnn" / f"{backbone}.fold{fold}"

    def _cnn(self, backbone: str, fold: int, epoch: int):
        """The backbone's model (built once) holding fold ``fold``'s epoch-``epoch`` weights."""
        from pipeline.backbones import build_model
        from pipeline.inference import epoch_weights_path

        if backbone not in self._models:
            b = self.cfg.backbone(backbone)
            self._models[backbone] = build_model(
                b.name,
                len(self.labels),
                self.size,
                "none",
                b.head_layers,
                b.head_units,
                b.width,
                bn_momentum=b.bn_momentum,
            )
        model = self._models[backbone]
        key = (backbone, fold, epoch)
        if key not in self._weights:
            path = epoch_weights_path(self._work_dir(backbone, fold), epoch)
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: the run predates per-epoch weights; re-run "
                    f"`make train-cnn CONFIG=...` (or `make clean` first)"
                )
            model.load_weights(path)
            self._weights[key] = model.get_weights()
        else:
            model.set_weights(self._weights[key])
        return model

    def _inputs(self, paths: list[Path], size: int | None = None, tta_flip=None) -> np.ndarray:
        """The decoded batch with flip TTA as in training (``pipeline.inference``; default:
        the CNNs' size and TTA; frozen members pass their own)."""
        from pipeline.inference import tta_inputs

        size = self.size if size is None else size
        return tta_inputs(paths, size, self.tta_flip if tta_flip is None else tta_flip)

    def _run(self, model, inputs: np.ndarray, tta_flip=None) -> np.ndarray:
        from pipeline.inference import run_batch

        return run_batch(model, inputs, self.tta_flip if tta_flip is None else tta_flip)

    def _column(self, paths, inputs, backbone: str, fold: int, epoch: int) -> np.ndarray:
        """(n, L) probabilities of one base column's fold-``fold`` model."""
        if backbone == TWOFLOW:
            return self._twoflow_column(paths, inputs, fold)
        if backbone in self._frozen_members:
            return self._frozen_column(paths, backbone, fold)
        return self._run(self._cnn(backbone, fold, epoch), inputs)

    def _frozen_column(self, paths, member: str, fold: int) -> np.ndarray:
        """A frozen-feature member: the pretrained embedding (once per image list and
        backbone, at the member's own size, flip TTA as in `make embed`) -> fold's head."""
        from pipeline.frozen import frozen_backbone, load_head

        f = self._frozen_members[member]
        key = tuple(str(p) for p in paths)
        if f.name not in self._embedded or self._embedded[f.name][0] != key:
            if f.name not in self._models:
                self._models[f.name] = frozen_backbone(f.backbone, f.weights, f.image_size)
            batch = self._inputs(paths, f.image_size, f.tta_flip)
            self._embedded[f.name] = (key, self._run(self._models[f.name], batch, f.tta_flip))
        if (member, fold) not in self._heads:
            path = self.build / "frozen" / f"{member}.fold{fold}.head.npz"
            self._heads[(member, fold)] = load_head(path)
        head = self._heads[(member, fold)]
        return head.predict_proba(self._embedded[f.name][1]).astype(np.float32)

    def _twoflow_column(self, paths, inputs, fold: int) -> np.ndarray:
        from pipeline.inference import downsample_pixels, embedding_model
        from pipeline.twoflow import load_model

        if fold not in self._twoflow:
            self._twoflow[fold] = load_model(self.build / "twoflow" / f"fold{fold}.joblib")
        tf_model = self._twoflow[fold]
        b = self.cfg.twoflow.backbone or self.cfg.train.backbones[0].name
        cnn = self._cnn(b, fold, self.cfg.backbone(b).epochs)  # its final epoch, as in fit
        key = f"{b}/embedding"
        if key not in self._models:  # shares cnn's layers: it follows its weight swaps
            self._models[key] = embedding_model(cnn)
        deep = self._run(self._models[key], inputs)
        pixels = downsample_pixels(paths, tf_model.pixel_size)
        return tf_model.predict_proba(pixels, deep).astype(np.float32)

    # ---- public ------------------------------------------------------------------------

    def warm_up(self, image: str | Path) -> None:
        """Load every fold x epoch weight set and trace every model once (one image through
        every model), so the first real request is as fast as the others."""
        for name in self.model_names:
            self.predict([image], name)

    def predict(self, paths, model: str = ENSEMBLE) -> list[Prediction]:
        """Score image files with ``model`` (``"ensemble"`` or a base model's name)."""
        from pipeline.submit import fold_votes, majority_vote

        paths = [Path(p) for p in paths]
        if model != ENSEMBLE and model not in self.singles:
            raise ValueError(f"unknown model {model!r}; choose one of {self.model_names}")
        inputs = self._inputs(paths)  # a clear error naming a bad file, before any model runs
        n, n_labels = len(paths), len(self.labels)
        if model == ENSEMBLE:
            stacked = np.empty((self.n_folds, n, n_labels))
            for k in range(self.n_folds):
                # columns no chosen combiner reads stay 0 (they get no weight)
                x = np.zeros((n, len(self.columns), n_labels), dtype=np.float32)
                for b, e in self.used_columns:
                    x[:, self.columns.index((b, e))] = self._column(paths, inputs, b, k, e)
                stacked[k] = self.level.predict_proba(x)
            votes = fold_votes(stacked, self.thresholds)
            final = majority_vote(votes, self.cfg.submit.tie)
            prob = stacked.mean(axis=0)
            detail = (
                f"{len(self.used_columns)} base columns x {self.n_folds} folds -> "
                f"second level ({', '.join(sorted({c for c, _ in self.level.choice}))}) -> "
                f"majority of {self.n_folds} fold votes"
            )
            return [
                Prediction(
                    ENSEMBLE,
                    detail,
                    self.labels,
                    prob[i],
                    self.thresholds,
                    final[i],
                    votes.sum(axis=0)[i].astype(np.int64),
                )
                for i in range(n)
            ]
        epoch, th, _ = self.singles[model]
        prob = np.mean(
            [self._column(paths, inputs, model, k, epoch) for k in range(self.n_folds)], axis=0
        )
        pred = (prob >= th).astype(np.int8)
        detail = f"epoch {epoch}, mean of {self.n_folds} fold models, OOF thresholds"
        return [Prediction(model, detail, self.labels, prob[i], th, pred[i]) for i in range(n)]
