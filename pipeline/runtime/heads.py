"""The frozen members' heads: every head kind in one place, fitted by `make frozen` and
scored by the predictor and the exported runtime.

A head maps a frozen backbone's embedding (n, D) to per-label probabilities (n, L). Each
kind is one class here and one entry of :data:`HEADS` (its config name, ``heads = [...]``
of a ``[[frozen]]`` entry): ``from_config`` reads its settings from the entry, ``fit`` learns,
``get_state`` / ``set_state`` are the plain arrays a head file holds, and the static
``proba(state, X)`` scores from those arrays alone. Adding a head kind is a class and an
entry here; the config's check, the fold fits, the predictor and the export read
:data:`HEADS`.

NumPy only at import: ``make export`` copies this file (``tests/test_layers.py``). A
``fit`` may import the training stack (scikit-learn) inside itself; the export never fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class LogisticHead:
    """Standardise, then per label an L2 logistic regression (balanced classes: rare labels
    keep their recall before thresholds)."""

    name = "logistic"
    STATE = ("mean", "scale", "coef", "intercept")

    def __init__(self, C: float = 0.1, max_iter: int = 500) -> None:
        self.C = C
        self.max_iter = max_iter

    @classmethod
    def from_config(cls, f: Any) -> LogisticHead:
        """The head with a ``[[frozen]]`` entry's settings (``C``)."""
        return cls(C=f.C)

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight=None) -> LogisticHead:
        """``sample_weight``: (n,) how much each row's labelled cells count (default 1)."""
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)  # (n, L) 1/0/NaN, checked by the caller
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

    @staticmethod
    def proba(state: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        """(m, L): standardise, then per label ``sigmoid(z @ coef + b)``."""
        Z = (np.asarray(X, dtype=np.float64) - state["mean"]) / state["scale"]
        return 1.0 / (1.0 + np.exp(-(Z @ state["coef"].T + state["intercept"])))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.proba(self.get_state(), X)

    def get_state(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, f"{k}_") for k in self.STATE}

    def set_state(self, state: Mapping[str, np.ndarray]) -> LogisticHead:
        for k in self.STATE:
            setattr(self, f"{k}_", np.asarray(state[k], dtype=np.float64))
        return self


def knn_normalise(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Rows centred on ``mean`` and scaled to unit length (cosine similarity by dot)."""
    Z = np.asarray(X, dtype=np.float64) - mean
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


class KNNHead:
    """Cosine k nearest neighbours: per label, (sum of w * y + prior) / (sum of w + 1) over
    the k most similar known rows, with w = max(similarity, 0)^3 times the neighbour's
    sample weight (default 1) and prior = prevalence."""

    name = "knn"

    def __init__(self, k: int = 25) -> None:
        self.k = k

    @classmethod
    def from_config(cls, f: Any) -> KNNHead:
        """The head with a ``[[frozen]]`` entry's settings (``knn_k``)."""
        return cls(k=f.knn_k)

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight=None) -> KNNHead:
        y = np.asarray(y, dtype=np.float64)  # (n, L) 1/0/NaN, checked by the caller
        self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        self.train_ = knn_normalise(X, self.mean_)
        self.y_ = y
        n = len(y)
        self.weight_ = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        return self

    @staticmethod
    def proba(state: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        """(m, L) from the head's state (see the class doc)."""
        train, y, weight = state["train"], state["y"], state["weight"]
        sims = knn_normalise(X, state["mean"]) @ train.T  # (m, n)
        k = min(int(state["k"]), sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** 3  # (m, k)
        w = w * weight[top]
        known = ~np.isnan(y)
        prior = np.nanmean(np.where(known, y, np.nan), axis=0)
        prior = np.nan_to_num(prior, nan=0.0)
        yk, kk = np.nan_to_num(y)[top], known[top]  # (m, k, L)
        num = np.einsum("mk,mkl->ml", w, yk * kk) + prior
        den = np.einsum("mk,mkl->ml", w, kk.astype(np.float64)) + 1.0
        return np.clip(num / den, 0.0, 1.0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.proba(self.get_state(), X)

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean_,
            "train": self.train_,
            "y": self.y_,
            "k": np.asarray(self.k),
            "weight": self.weight_,
        }

    def set_state(self, state: Mapping[str, np.ndarray]) -> KNNHead:
        self.k = int(state["k"])
        self.mean_ = np.asarray(state["mean"], dtype=np.float64)
        self.train_ = np.asarray(state["train"], dtype=np.float64)
        self.y_ = np.asarray(state["y"], dtype=np.float64)
        self.weight_ = np.asarray(state["weight"], dtype=np.float64)
        return self


#: every head kind by its config name (``[[frozen]] heads``)
HEADS: dict[str, type] = {cls.name: cls for cls in (LogisticHead, KNNHead)}
#: the same classes by the kind a head file records (its class name)
HEAD_KINDS: dict[str, type] = {cls.__name__: cls for cls in HEADS.values()}


def head_proba(state: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """(m, L) of the head whose file state (with its ``kind``) is ``state``."""
    kind = str(state["kind"])
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {kind!r}; known: {sorted(HEAD_KINDS)}")
    return HEAD_KINDS[kind].proba(state, X)
