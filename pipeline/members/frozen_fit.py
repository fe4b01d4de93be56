"""One frozen member's head for one CNN fold, with the two refit tricks of real
multi-label competitions (both off by default, measured per data set):

- **OOF-error filtering** (``[denoise]``, iMet 2019's winner): training rows whose
  out-of-fold loss is extreme are likely mislabelled; they are dropped or down-weighted in
  the head's fit. The loss of a row is measured by an inner cross-validation inside fold
  k's training rows (a cosine-kNN head fitted on the other training folds, never fold k),
  so fold k's labels never decide which rows train fold k's head. Only the fit changes:
  every row is still predicted and scored.
- **Pseudo-labels** (``[pseudo]``): confident test predictions become extra training rows
  for a twin member ``<member>_pl``. The teacher of fold k is the mean of every base
  member's fold-k test probabilities, made by models that never saw fold k's rows; the
  confidence cuts per label come from the same mean's OOF on the other folds' rows; test
  truth is never read (the stage is not given it).

Heads are the ones of :mod:`pipeline.members.frozen`; predictions go out in the CNN fold-file
format (one "epoch") and the fitted head beside them, so the predictor scores a new image
with a twin exactly as with its member.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.members.frozen import make_head, parse_member, save_head
from pipeline.members.registry import PSEUDO
from pipeline.runtime.heads import KNNHead

log = logging.getLogger(__name__)

#: probabilities are clipped to [EPS, 1 - EPS] before a log loss
EPS = 1e-4


def row_losses(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n,) mean binary cross-entropy of ``p`` over each row's known cells (0 without any)."""
    p = np.clip(p, EPS, 1 - EPS)
    known = ~np.isnan(y)
    yk = np.nan_to_num(y)
    cell = -(yk * np.log(p) + (1 - yk) * np.log(1 - p))
    n = known.sum(axis=1)
    return np.where(n > 0, np.where(known, cell, 0.0).sum(axis=1) / np.maximum(n, 1), 0.0)


def inner_oof_losses(X: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = 25) -> np.ndarray:
    """(n,) each row's loss under a cosine-kNN head fitted on the rows of the other
    ``groups`` (the CNN folds the rows belong to): an out-of-fold loss that reads only
    these rows."""
    p = np.empty(y.shape, dtype=np.float64)
    for g in np.unique(groups):
        inner = groups == g
        if inner.all():
            raise ValueError("inner OOF losses need rows of at least two folds")
        p[inner] = KNNHead(k).fit(X[~inner], y[~inner]).predict_proba(X[inner])
    return row_losses(p, y)


def denoise_weights(losses: np.ndarray, quantile: float, weight: float) -> np.ndarray:
    """(n,) sample weights: ``weight`` for rows whose loss lies above the ``quantile`` of
    ``losses``, 1 for the others."""
    cut = np.quantile(losses, quantile)
    return np.where(losses > cut, weight, 1.0)


def final_epoch(path: str | Path) -> dict[str, np.ndarray]:
    """A fold file's last epoch: its validation ids and OOF, its test ids and predictions."""
    from pipeline.artifacts import load_fold_predictions

    data = load_fold_predictions(path)
    last = int(np.argmax(data["epochs"]))
    return {
        "labels": data["labels"],
        "val_ids": data["val_ids"].astype(str),
        "oof": data["oof"][last].astype(np.float64),
        "test_ids": data["test_ids"].astype(str),
        "test": data["test"][last].astype(np.float64),
    }


def teacher(
    files: Sequence[str | Path],
    train_ids: np.ndarray,
    folds: np.ndarray,
    test_ids: np.ndarray,
    labels: Sequence[str],
    fold: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``fold``'s teacher: the (n, L) OOF of the other folds' rows (NaN on fold
    ``fold``'s rows) and the (m, L) test probabilities of fold ``fold``'s models, each the
    mean over the members of their final epoch.

    A file's fold is the fold of the rows it validates (read from ``folds``), so the
    teacher never takes a prediction made by a model that saw fold ``fold``'s rows for its
    test side, and never takes fold ``fold``'s own OOF rows at all.
    """
    where = {i: r for r, i in enumerate(train_ids.astype(str))}
    test_where = {i: r for r, i in enumerate(test_ids.astype(str))}
    L = len(labels)
    oof_sum, oof_n = np.zeros((len(train_ids), L)), np.zeros(len(train_ids))
    test_sum, test_n = np.zeros((len(test_ids), L)), 0
    for path in files:
        d = final_epoch(path)
        if list(d["labels"]) != list(labels):
            raise ValueError(f"{path}: labels differ from the training labels; re-run its stage")
        rows = np.array([where[i] for i in d["val_ids"]])
        file_folds = np.unique(folds[rows])
        if len(file_folds) != 1:
            raise ValueError(f"{path}: its validation rows span folds {file_folds.tolist()}")
        if file_folds[0] == fold:
            cols = np.array([test_where[i] for i in d["test_ids"]])
            if len(cols) != len(test_ids):
                raise ValueError(f"{path}: its test predictions miss test images; re-run it")
            test_sum[cols] += d["test"]
            test_n += 1
        else:
            oof_sum[rows] += d["oof"]
            oof_n[rows] += 1
    if test_n == 0:
        raise ValueError(f"no teacher file validates fold {fold}; pass every base fold file")
    oof = np.where(oof_n[:, None] > 0, oof_sum / np.maximum(oof_n, 1)[:, None], np.nan)
    return oof, test_sum / test_n


def confidence_cuts(
    p: np.ndarray, y: np.ndarray, precision: float, min_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per label, (lo, hi): the lowest cut whose precision among the rows at or above it
    reaches ``precision``, and the highest cut below which at most ``1 - precision`` of the
    label's positives lie, each with at least ``min_rows`` known rows beyond it; ``+inf`` /
    ``-inf`` where no cut qualifies (that side gives no pseudo-label).

    The negative side bounds the share of *positives* lost, not the negative predictive
    value: a label with 5% positives has an NPV of 95% with every row called negative,
    which would teach the twin to miss exactly the rare positives F2 weighs most."""
    L = y.shape[1]
    lo, hi = np.full(L, -np.inf), np.full(L, np.inf)
    for j in range(L):
        known = ~np.isnan(y[:, j]) & ~np.isnan(p[:, j])
        pj, yj = p[known, j], y[known, j]
        order = np.argsort(-pj, kind="stable")
        ps, ys = pj[order], yj[order]
        # top-down: the rows with p >= ps[i] are order[: i + 1]
        n_top = np.arange(1, len(ps) + 1)
        prec = np.cumsum(ys) / n_top
        ok = (prec >= precision) & (n_top >= min_rows)
        # a cut between tied probabilities is not a cut: only the last of a tie counts
        last = np.r_[ps[1:] != ps[:-1], True]
        ok &= last
        if ok.any():
            hi[j] = ps[np.flatnonzero(ok)[-1]]
        # bottom-up: the rows with p <= ps[i]; the share of the positives among them
        rs, ry = ps[::-1], ys[::-1]
        n_bot = np.arange(1, len(rs) + 1)
        missed = np.cumsum(ry) / max(ys.sum(), 1.0)
        ok = (missed <= 1 - precision) & (n_bot >= min_rows) & np.r_[rs[1:] != rs[:-1], True]
        if ok.any():
            lo[j] = rs[np.flatnonzero(ok)[-1]]
    return lo, hi


def pseudo_labels(p_test: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(m, L) 1 where ``p_test >= hi``, 0 where ``<= lo``, NaN (unknown) elsewhere."""
    out = np.full(p_test.shape, np.nan)
    out[p_test <= lo] = 0.0
    out[p_test >= hi] = 1.0
    return out


def run_frozen_fold(
    cfg,
    member: str,
    fold: int,
    folds_csv,
    embedding,
    out_path,
    head_out=None,
    teacher_files: Sequence[str | Path] = (),
) -> dict:
    """Fit member ``member``'s head on the rows outside ``fold`` (with ``[denoise]``'s
    weights when on; for a twin ``<member>_pl``, plus the pseudo-labelled test rows of
    ``teacher_files``' fold-``fold`` teacher); write fold ``fold``'s OOF and test
    predictions (CNN format) and, with ``head_out``, the head's state. Returns a summary."""
    from threadpoolctl import threadpool_limits

    from pipeline.artifacts import load_embeddings, save_single_epoch_predictions
    from pipeline.data.contract import read_labels, read_test_ids
    from pipeline.data.folds import read_folds

    m = parse_member(cfg, member)
    f, head_name, twin = m.frozen, m.head, m.kind == PSEUDO
    if twin and not teacher_files:
        raise ValueError(f"{member} is a pseudo-labelled twin: give the teacher's fold files")
    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    folds = read_folds(folds_csv, table.ids, cfg.folds.n_folds)
    if not 0 <= fold < cfg.folds.n_folds:
        raise ValueError(f"fold {fold} is outside 0..{cfg.folds.n_folds - 1}")
    test_ids, _ = read_test_ids(cfg.data.test_dir, cfg.data.id_column, check_images=False)
    emb = load_embeddings(embedding, table.ids, test_ids)
    tr, va = folds != fold, folds == fold
    X, y = emb["train"][tr], table.y[tr]
    weight = np.ones(len(y))
    summary: dict = {"member": member, "fold": fold, "rows": int(tr.sum())}
    with threadpool_limits(limits=1):  # Make runs fold jobs side by side
        d = cfg.denoise
        if d.enabled:
            losses = inner_oof_losses(X, y, folds[tr], f.knn_k)
            weight = denoise_weights(losses, d.quantile, d.weight)
            summary["denoised"] = int((weight < 1).sum())
        if twin:
            oof, p_test = teacher(teacher_files, table.ids, folds, test_ids, table.labels, fold)
            lo, hi = confidence_cuts(oof, table.y, cfg.pseudo.precision, cfg.pseudo.min_rows)
            pseudo = pseudo_labels(p_test, lo, hi)
            keep = ~np.isnan(pseudo).all(axis=1)
            X = np.concatenate([X, emb["test"][keep]])
            y = np.concatenate([y, pseudo[keep]])
            weight = np.concatenate([weight, np.ones(int(keep.sum()))])
            summary["pseudo_rows"] = int(keep.sum())
            summary["pseudo_cells"] = int((~np.isnan(pseudo)).sum())
            summary["pseudo_positive"] = int(np.nansum(pseudo))
        head = make_head(f, head_name)
        fit = weight > 0
        w = None if (weight[fit] == 1).all() else weight[fit]
        head.fit(X[fit], y[fit], sample_weight=w)
        oof_pred = head.predict_proba(emb["train"][va])
        test = head.predict_proba(emb["test"])
    if head_out is not None:
        save_head(head_out, head)
    save_single_epoch_predictions(out_path, table.labels, table.ids[va], test_ids, oof_pred, test)
    log.info("%s fold %d: %s, wrote %s", member, fold, summary, out_path)
    return summary
