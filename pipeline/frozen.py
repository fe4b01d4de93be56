"""Frozen-feature members: a pretrained backbone embeds every image once, heads per fold.

DESIGN "Members and the second level": fine-tuning on CPU costs tens of minutes per
backbone at 96 px; embedding every image once with a frozen ImageNet backbone at its native
resolution (224 px or more, flip TTA) costs seconds to a minute, sees 5x more pixels, and
gives members whose errors differ from the fine-tuned ones' — the diversity a second level
needs. Per CNN fold k, a head is fitted on the rows of the other folds only and predicts
fold k's rows and the test set, written in the CNN prediction-file format (one "epoch"), so
selection and every combiner take it like any backbone, with no OOF leakage.

Heads (sklearn-style, state as plain arrays for the predictor):
- :class:`LogisticHead`: standardised embeddings, one L2 ``LogisticRegression`` per label
  (``class_weight="balanced"``: rare labels keep their recall before thresholds).
- :class:`KNNHead`: cosine nearest neighbours; per label the similarity-weighted share of
  positives among the ``k`` nearest known rows, shrunk towards the label's prevalence.

A member's fold fit (and its ``[denoise]`` / ``[pseudo]`` refits) is
:func:`pipeline.frozen_fit.run_frozen_fold`. The embedding file
(``build/<config>/embed/<name>.npz``) has one writer and one reader,
:func:`pipeline.artifacts.save_embeddings` / :func:`pipeline.artifacts.load_embeddings`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from pipeline.artifacts import save_embeddings
from pipeline.inference import embed_paths, embedding_model
from pipeline.metrics import check_labels

log = logging.getLogger(__name__)


def frozen_backbone(backbone: str, weights: str, image_size: int):
    """The pretrained backbone (with its preprocessing) up to global average pooling.

    Seeded, so ``weights="none"`` (random features, for tests) builds the same network in
    `make embed` and in the predictor.
    """
    import keras

    from pipeline.backbones import build_model

    keras.utils.set_random_seed(0)
    model = build_model(backbone, 1, image_size, weights, head_layers=0, seed=0)
    return embedding_model(model)


def run_embed(cfg, name: str, out_path, cache=None) -> None:
    """Embed every training and test image with frozen member ``name``; write the file.
    Images come from ``cache`` (``pipeline.image_cache.ImageCache``) when given."""
    from pipeline.data import read_dataset

    f = frozen_config(cfg, name)
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    table, test_ids = ds.train, ds.test_ids
    model = frozen_backbone(f.backbone, f.weights, f.image_size)
    paths = table.paths() + ds.test_paths()
    log.info(
        "%s: embedding %d images with frozen %s at %d px%s",
        name,
        len(paths),
        f.backbone,
        f.image_size,
        " (flip TTA)" if f.tta_flip else "",
    )
    emb = embed_paths(model, paths, f.image_size, f.batch_size, f.tta_flip, cache)
    n = len(table.ids)
    save_embeddings(out_path, table.ids, test_ids, emb[:n], emb[n:], f.backbone, f.image_size)
    log.info("%s: %s embeddings -> %s", name, emb.shape, out_path)


def frozen_config(cfg, name: str):
    for f in cfg.frozen:
        if f.name == name:
            return f
    raise ValueError(f"{name!r} is not a [[frozen]] entry of the config")


def parse_member(cfg, member: str) -> tuple[Any, str]:
    """A frozen member's name (``<name>_<head>``, or a pseudo twin's) -> (its FrozenConfig,
    head)."""
    members = cfg.frozen_members()
    if member not in members:
        raise ValueError(f"{member!r} is not a frozen member of the config ({list(members)})")
    return members[member]


class LogisticHead(BaseEstimator):
    """Standardise, then per label an L2 logistic regression (balanced classes)."""

    def __init__(self, C: float = 0.1, max_iter: int = 500) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight=None) -> LogisticHead:
        """``sample_weight``: (n,) how much each row's labelled cells count (default 1)."""
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        y = check_labels(y)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        Z = (X - self.mean_) / self.scale_
        self.coef_ = np.zeros((y.shape[1], X.shape[1]))
        self.intercept_ = np.zeros(y.shape[1])
        for j in range(y.shape[1]):
            known = ~np.isnan(y[:, j])
            yj = y[known, j].astype(int)
            if len(np.unique(yj)) < 2:
                rate = np.clip(yj.mean() if len(yj) else 0.0, 1e-6, 1 - 1e-6)
                self.intercept_[j] = np.log(rate / (1 - rate))
                continue
            lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=self.max_iter)
            lr.fit(Z[known], yj, sample_weight=None if w is None else w[known])
            self.coef_[j], self.intercept_[j] = lr.coef_[0], lr.intercept_[0]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return 1.0 / (1.0 + np.exp(-(Z @ self.coef_.T + self.intercept_)))

    def get_state(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, f"{k}_") for k in ("mean", "scale", "coef", "intercept")}

    def set_state(self, state) -> LogisticHead:
        for k in ("mean", "scale", "coef", "intercept"):
            setattr(self, f"{k}_", np.asarray(state[k], dtype=np.float64))
        return self


class KNNHead(BaseEstimator):
    """Cosine k nearest neighbours: per label, (sum of w * y + prior) / (sum of w + 1) over
    the k most similar known rows, with w = max(similarity, 0)^3 times the neighbour's
    sample weight (default 1) and prior = prevalence."""

    def __init__(self, k: int = 25) -> None:
        self.k = k

    @staticmethod
    def _normalise(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
        Z = np.asarray(X, dtype=np.float64) - mean
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight=None) -> KNNHead:
        y = check_labels(y)
        self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        self.train_ = self._normalise(X, self.mean_)
        self.y_ = y
        n = len(y)
        self.weight_ = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        sims = self._normalise(X, self.mean_) @ self.train_.T  # (m, n)
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** 3  # (m, k)
        w = w * self.weight_[top]
        known = ~np.isnan(self.y_)
        prior = np.nanmean(np.where(known, self.y_, np.nan), axis=0)
        prior = np.nan_to_num(prior, nan=0.0)
        yk, kk = np.nan_to_num(self.y_)[top], known[top]  # (m, k, L)
        num = np.einsum("mk,mkl->ml", w, yk * kk) + prior
        den = np.einsum("mk,mkl->ml", w, kk.astype(np.float64)) + 1.0
        return np.clip(num / den, 0.0, 1.0)

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean_,
            "train": self.train_,
            "y": self.y_,
            "k": np.asarray(self.k),
            "weight": self.weight_,
        }

    def set_state(self, state) -> KNNHead:
        self.k = int(state["k"])
        self.mean_ = np.asarray(state["mean"], dtype=np.float64)
        self.train_ = np.asarray(state["train"], dtype=np.float64)
        self.y_ = np.asarray(state["y"], dtype=np.float64)
        self.weight_ = np.asarray(state["weight"], dtype=np.float64)
        return self


def make_head(f, head: str):
    """The head estimator named ``head`` with the member's settings."""
    if head == "logistic":
        return LogisticHead(C=f.C)
    if head == "knn":
        return KNNHead(k=f.knn_k)
    raise ValueError(f"unknown frozen head {head!r}; choose logistic or knn")


def save_head(path, head) -> None:
    from pipeline.artifacts import save_npz_atomic

    save_npz_atomic(path, kind=np.asarray(type(head).__name__), **head.get_state())


def load_head(path):
    """A head written by :func:`save_head`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `make frozen`")
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["kind"])
        state = {k: z[k] for k in z.files if k != "kind"}
    cls = {"LogisticHead": LogisticHead, "KNNHead": KNNHead}.get(kind)
    if cls is None:
        raise ValueError(f"{path}: unknown head kind {kind!r}; re-run `make frozen`")
    return cls().set_state(state)
