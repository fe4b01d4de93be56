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

from pipeline.ensemble.thresholds import ThresholdSearch


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


def fold_losses(files: dict) -> dict:
    """Member -> its training loss per epoch, the mean over its fold files (``files``:
    :func:`pipeline.ensemble.select.group_pred_files`)."""
    from pipeline.artifacts import load_fold_predictions

    return {
        name: np.mean(np.stack([load_fold_predictions(p)["loss"] for p in paths]), axis=0)
        for name, paths in files.items()
    }


def member_records(base, y, beta: float, step: float, average: str, losses=None) -> dict:
    """Per base model (in column order): its epochs' OOF macro F-beta (``epochs``,
    ``oof_fbeta``), its best epoch (``epoch``) with that epoch's OOF thresholds, OOF column
    (``oof``) and fold-mean test probabilities (``test_prob``), and its training loss per
    epoch averaged over folds (``loss``; NaN when not given). What the report and the
    predictor read, so neither re-runs the search nor reopens a fold file.

    Args:
        losses: member -> (epochs,) mean loss over its folds, as the fold files hold it.
    """
    out = {}
    for name in dict.fromkeys(b for b, _ in base.columns):
        per_epoch = epoch_scores(base, name, y, beta, step, average)
        score, c, ts = max(per_epoch, key=lambda t: t[0])
        loss = (losses or {}).get(name)
        out[name] = {
            "epochs": np.array([int(base.columns[e][1]) for _, e, _ in per_epoch]),
            "oof_fbeta": np.array([s for s, _, _ in per_epoch], dtype=np.float64),
            "loss": np.full(len(per_epoch), np.nan) if loss is None else np.asarray(loss),
            "epoch": np.int64(base.columns[c][1]),
            "thresholds": np.asarray(ts.thresholds_, dtype=np.float64),
            "oof": base.oof[:, c],
            "test_prob": base.test[:, :, c].mean(axis=0),
            "oof_fbeta_best": float(score),
        }
    return out


def build_manifest(base, y: np.ndarray, level, records: dict) -> dict:
    """What a prediction needs that only the stack stage knows (it holds every base model's
    OOF): each base model's best epoch with its OOF thresholds (as the report picks them),
    and the base columns the chosen second level reads.

    Args:
        base: the ``pipeline.ensemble.select`` base predictions the stack was fitted on.
        y: (n, L) OOF truth (NaN = unknown).
        level: the fitted ``pipeline.ensemble.second_level.SecondLevel``.
        records: :func:`member_records` of ``base``.
    """
    members = {
        name: {
            "epoch": int(r["epoch"]),
            "thresholds": [float(t) for t in r["thresholds"]],
            "oof_fbeta": r["oof_fbeta_best"],
        }
        for name, r in records.items()
    }
    return {
        "labels": list(base.labels),
        "n_folds": int(base.test.shape[0]),
        "used_columns": [
            [str(level.columns[c][0]), int(level.columns[c][1])] for c in level.used_columns
        ],
        "members": members,
    }
