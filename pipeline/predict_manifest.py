"""``stack/predict.json``: what a prediction needs that only `make stack` knows.

The stack stage holds every base model's OOF predictions; from them it picks each base
model's best epoch (by OOF macro F-beta, at thresholds tuned per label on its own OOF, as
the report scores it) and knows which base columns the chosen second level reads. This
module builds that record (:func:`build_manifest`); :mod:`pipeline.artifacts` writes and
reads the file (:func:`~pipeline.artifacts.save_predict_manifest`,
:func:`~pipeline.artifacts.load_predict_manifest`), so `make predict` and `make serve` read a
few hundred bytes instead of every prediction file plus a threshold search per model. A
module of its own, apart from ``pipeline.predict``: the stack stage imports it, so editing
the predictor does not re-run the stack.
"""

from __future__ import annotations

import numpy as np

from pipeline.thresholds import ThresholdSearch


def epoch_scores(base, member: str, y: np.ndarray, beta: float, step: float, average: str):
    """(OOF macro F-beta, column, fitted ThresholdSearch) of each of a base model's epochs."""
    out = []
    for c, (b, _) in enumerate(base.columns):
        if b == member:
            ts = ThresholdSearch(beta=beta, step=step, average=average).fit(base.oof[:, c], y)
            out.append((float(ts.score_), c, ts))
    if not out:
        raise ValueError(f"no prediction columns for base model {member!r}")
    return out


def best_epoch(base, member: str, y: np.ndarray, beta: float, step: float, average: str):
    """A base model's best epoch column: (OOF macro F-beta, column index, ThresholdSearch)."""
    return max(epoch_scores(base, member, y, beta, step, average), key=lambda t: t[0])


def build_manifest(base, y: np.ndarray, level, beta: float, step: float, average: str) -> dict:
    """What a prediction needs that only the stack stage knows (it holds every base model's
    OOF): each base model's best epoch with its OOF thresholds (as the report picks them),
    and the base columns the chosen second level reads.

    Args:
        base: the ``pipeline.select`` base predictions the stack was fitted on.
        y: (n, L) OOF truth (NaN = unknown).
        level: the fitted ``pipeline.second_level.SecondLevel``.
    """
    members = {}
    for name in dict.fromkeys(b for b, _ in base.columns):
        score, c, ts = best_epoch(base, name, y, beta, step, average)
        members[name] = {
            "epoch": int(base.columns[c][1]),
            "thresholds": [float(t) for t in ts.thresholds_],
            "oof_fbeta": float(score),
        }
    return {
        "labels": list(base.labels),
        "n_folds": int(base.test.shape[0]),
        "used_columns": [
            [str(level.columns[c][0]), int(level.columns[c][1])] for c in level.used_columns
        ],
        "members": members,
    }
