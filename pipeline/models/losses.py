"""Masked multi-label losses in ``keras.ops`` (backend-neutral).

Unknown label cells arrive as ``-1`` in ``y_true`` (the feed maps NaN -> -1) and get zero
weight, so an image with some unknown attributes still teaches the known ones.
"""

from __future__ import annotations

import keras
from keras import ops

EPS = 1e-7


@keras.saving.register_keras_serializable(package="pipeline")
class MaskedMultiLabelLoss(keras.losses.Loss):
    """BCE, weighted BCE (positive weight K) or focal loss, averaged over known cells.

    Args:
        kind: ``"bce"``, ``"weighted_bce"`` or ``"focal"``.
        pos_weight: K for weighted BCE: ``-(K y log p + (1 - y) log(1 - p))``.
        gamma, alpha: focal loss ``-(a y (1-p)^g log p + (1-a)(1-y) p^g log(1-p))``.
    """

    def __init__(
        self,
        kind: str = "bce",
        pos_weight: float = 1.0,
        gamma: float = 2.0,
        alpha: float = 0.25,
        name: str = "masked_multilabel_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if kind not in ("bce", "weighted_bce", "focal"):
            raise ValueError(f"unknown loss {kind!r}; choose bce, weighted_bce or focal")
        self.kind = kind
        self.pos_weight = float(pos_weight)
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        mask = ops.cast(ops.greater_equal(y_true, 0.0), "float32")
        y = ops.clip(y_true, 0.0, 1.0)
        p = ops.clip(y_pred, EPS, 1.0 - EPS)
        log_p, log_q = ops.log(p), ops.log(1.0 - p)
        if self.kind == "bce":
            cell = -(y * log_p + (1.0 - y) * log_q)
        elif self.kind == "weighted_bce":
            cell = -(self.pos_weight * y * log_p + (1.0 - y) * log_q)
        else:
            g = self.gamma
            cell = -(
                self.alpha * y * ops.power(1.0 - p, g) * log_p
                + (1.0 - self.alpha) * (1.0 - y) * ops.power(p, g) * log_q
            )
        known = ops.sum(mask, axis=-1)
        return ops.sum(cell * mask, axis=-1) / ops.maximum(known, 1.0)

    def get_config(self):
        return {
            **super().get_config(),
            "kind": self.kind,
            "pos_weight": self.pos_weight,
            "gamma": self.gamma,
            "alpha": self.alpha,
        }


@keras.saving.register_keras_serializable(package="pipeline")
class TriangularCyclicLR(keras.optimizers.schedules.LearningRateSchedule):
    """Triangular cyclical learning rate (Smith 2017) between ``lr_min`` and ``lr_max``."""

    def __init__(self, lr_min: float, lr_max: float, half_cycle_steps: int):
        self.lr_min = float(lr_min)
        self.lr_max = float(lr_max)
        self.half_cycle_steps = int(max(1, half_cycle_steps))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        h = float(self.half_cycle_steps)
        cycle = ops.floor(1.0 + step / (2.0 * h))
        x = ops.abs(step / h - 2.0 * cycle + 1.0)
        return self.lr_min + (self.lr_max - self.lr_min) * ops.maximum(0.0, 1.0 - x)

    def get_config(self):
        return {
            "lr_min": self.lr_min,
            "lr_max": self.lr_max,
            "half_cycle_steps": self.half_cycle_steps,
        }
