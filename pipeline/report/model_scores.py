"""One model's scores as the report holds them: plain arrays, shared by the report's
scoring (:mod:`pipeline.report.summary`) and its page (:mod:`pipeline.report.page`), so neither
imports the other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ModelScores:
    """One row of the comparison: a model's per-label scores on OOF (and test)."""

    name: str
    oof_fbeta: np.ndarray
    test_fbeta: np.ndarray | None = None
    test_precision: np.ndarray | None = None
    test_recall: np.ndarray | None = None
    detail: str = ""
    test_f1: np.ndarray | None = None  # per label, at thresholds tuned for F1 on OOF
    test_pred: np.ndarray | None = None  # (m, L) 0/1 held-out predictions (for intervals)

    def as_dict(self, labels) -> dict:
        out = {
            "detail": self.detail,
            "oof_fbeta_macro": float(np.mean(self.oof_fbeta)),
            "oof_fbeta_per_label": dict(zip(labels, map(float, self.oof_fbeta), strict=True)),
        }
        if self.test_fbeta is not None:
            out["test_fbeta_macro"] = float(np.mean(self.test_fbeta))
            out["test_fbeta_per_label"] = dict(
                zip(labels, map(float, self.test_fbeta), strict=True)
            )
            out["test_precision_per_label"] = dict(
                zip(labels, map(float, self.test_precision), strict=True)
            )
            out["test_recall_per_label"] = dict(
                zip(labels, map(float, self.test_recall), strict=True)
            )
        if self.test_f1 is not None:
            out["test_f1_macro"] = float(np.mean(self.test_f1))
        return out
