"""The second level, chosen by nested cross-validation on the OOF rows (never the holdout).

Candidates are (combiner, threshold rule) pairs: every combiner of ``pipeline.ensemble.combiners``
times each threshold rule asked for (``pipeline.ensemble.thresholds.RULES``). The outer CV splits
the OOF rows into ``outer_folds`` folds (iterative stratification); for each outer fold, every combiner is
fitted on the other rows only (its column selection included), its thresholds are fitted
by each rule on its inner-CV ``oof_`` of those rows only, and the outer rows are predicted
0/1. So every outer-fold prediction was made without its row's own label, and the
per-label outer-CV F-beta of every candidate is an honest estimate.

The choice (``mode``):
- ``global``: one candidate for all labels, the best outer-CV macro F-beta;
- ``per_label``: each label's best candidate (optimistic: a max over candidates);
- ``auto`` (default): the global winner, except where a label's own best candidate beats it
  on that label with a paired bootstrap 95% interval (over the OOF rows) above 0. The max
  over many candidates on few positives is mostly noise, so a label leaves the global
  winner only on evidence.

The guard (``incumbent``, off when empty): the global winner is a fixed candidate named in
advance (e.g. ``mean_members``/``shrunk``) unless the outer CV's best beats it on macro
F-beta with a paired bootstrap 95% interval (over the OOF rows) above 0. A max over many
close candidates moves with any new member or rule by less than its own noise (the
winner's curse); the guard takes a challenger only on evidence, as ``auto`` does per label.

Then every combiner is refitted on all OOF rows; the chosen one supplies each label's
stacked OOF (its inner-CV ``oof_``, which the thresholds stage fits on) and its test
probabilities per CNN fold (the vote stays: ``pipeline.ensemble.submit``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from tqdm.auto import tqdm

from pipeline.ensemble.combiners import (
    CaruanaCombiner,
    Combiner,
    LogisticCombiner,
    MeanCombiner,
    XGBCombiner,
    check_cube,
    fit_combiners,
    row_folds,
)
from pipeline.ensemble.select import Column
from pipeline.ensemble.stack import jsonable
from pipeline.ensemble.thresholds import DEFAULT_RULES, rule_thresholds
from pipeline.metrics import check_labels, fbeta_per_label, paired_bootstrap

log = logging.getLogger(__name__)

MODES = ("auto", "global", "per_label")
STATE_FILE = "second_level.json"
FORMAT_VERSION = 1

#: The combiners the second level can choose from, by name (config ``stack.combiners``).
COMBINERS = (
    "xgb",
    "logistic_own",
    "logistic_all",
    "caruana",
    "mean_top",
    "mean_members",
)


def make_combiners(
    names: Sequence[str],
    columns: Sequence[Column],
    stacker: Any = None,
    top_n: int = 6,
    corr_threshold: float = 0.9,
    beta: float = 2.0,
    step: float = 0.01,
    inner_folds: int = 5,
    seed: int = 0,
    logistic_c: float = 0.1,
) -> dict[str, Combiner]:
    """The named combiners over ``columns``, sharing the selection rule and seeds."""
    unknown = sorted(set(names) - set(COMBINERS))
    if unknown:
        raise ValueError(f"unknown combiner(s) {unknown}; choose from {COMBINERS}")
    common = dict(
        columns=list(columns),
        top_n=top_n,
        corr_threshold=corr_threshold,
        beta=beta,
        step=step,
        inner_folds=inner_folds,
        seed=seed,
    )
    factories = {
        "xgb": lambda: XGBCombiner(stacker=stacker, **common),
        "logistic_own": lambda: LogisticCombiner(scope="own", C=1.0, **common),
        "logistic_all": lambda: LogisticCombiner(scope="all", C=logistic_c, **common),
        "caruana": lambda: CaruanaCombiner(**common),
        "mean_top": lambda: MeanCombiner(pool="selected", **common),
        "mean_members": lambda: MeanCombiner(pool="members", **common),
    }
    return {name: factories[name]() for name in names}


def _fit(est: Combiner, P: np.ndarray, y: np.ndarray, client: Any) -> Combiner:
    if isinstance(est, XGBCombiner):
        return est.fit(P, y, client=client)
    return est.fit(P, y)


def pooled_xgb_fits(
    P: np.ndarray,
    y: np.ndarray,
    combiners: Mapping[str, Combiner],
    folds: np.ndarray,
    refit: bool,
    client: Any = None,
) -> dict[tuple[int | None, str], Combiner]:
    """Every XGBoost combiner fitted on every outer fold's training rows (key ``(k,
    name)``) and, with ``refit``, on all rows (``(None, name)``), in one task pool
    (``pipeline.ensemble.combiners.fit_combiners``): the nested CV then waits for its slowest label
    once, not once per fit. The same models as fitting them one by one in the loop."""
    keys = [
        (k, name)
        for k in [*np.unique(folds).tolist(), *([None] if refit else [])]
        for name, est in combiners.items()
        if isinstance(est, XGBCombiner)
    ]
    if not keys:
        return {}

    def jobs():  # one fold's rows at a time
        for k, name in keys:
            rows = slice(None) if k is None else folds != k
            yield clone(combiners[name]), P[rows], y[rows]

    return dict(zip(keys, fit_combiners(jobs(), client), strict=True))


@dataclass(frozen=True, eq=False)
class OuterCV:
    """Outer-CV outcome of every (combiner, rule) candidate.

    Attributes:
        candidates: (combiner name, rule) in evaluation order (combiners, then rules).
        per_label: (n_candidates, L) outer-CV F-beta per label.
        pred: (n_candidates, n, L) bool outer-CV 0/1 predictions.
        folds: (n,) the outer fold of every OOF row.
    """

    candidates: list[tuple[str, str]]
    per_label: np.ndarray
    pred: np.ndarray
    folds: np.ndarray

    @property
    def macro(self) -> np.ndarray:
        return self.per_label.mean(axis=1)


def nested_cv(
    P: np.ndarray,
    y: np.ndarray,
    combiners: Mapping[str, Combiner],
    rules: Sequence[str] = DEFAULT_RULES,
    outer_folds: int = 5,
    beta: float = 2.0,
    step: float = 0.01,
    shrink: float = 20.0,
    seed: int = 0,
    client: Any = None,
    prefitted: Mapping[tuple[int | None, str], Combiner] | None = None,
    folds: np.ndarray | None = None,
) -> OuterCV:
    """Score every (combiner, rule) pair by outer K-fold CV over the OOF rows.

    Args:
        P: (n, C, L) base OOF probabilities; y: (n, L) labels 1/0/NaN.
        combiners: name -> unfitted combiner (cloned per outer fold).
        rules: threshold rules to try on each combiner.
        outer_folds: K of the outer CV.
        beta, step, shrink: F-beta, threshold grid, and the ``shrunk`` rule's strength.
        seed: seeds the outer folds.
        client: optional Dask client for the XGBoost grid.
        prefitted: ``(k, name)`` -> that combiner already fitted on outer fold k's training
            rows (:func:`pooled_xgb_fits`); the others are fitted here. Default: the
            XGBoost combiners are pooled here.
        folds: (n,) the outer fold of every row, when the caller has them already (the ones
            ``prefitted`` was fitted on); default ``row_folds(y, outer_folds, seed)``.
    """
    y = check_labels(y)
    P = check_cube(P, y)
    if folds is None:
        folds = row_folds(y, outer_folds, seed)
    if prefitted is None:
        prefitted = pooled_xgb_fits(P, y, combiners, folds, refit=False, client=client)
    candidates = [(name, rule) for name in combiners for rule in rules]
    pred = np.zeros((len(candidates), *y.shape), dtype=bool)
    bar = tqdm(total=outer_folds * len(combiners), desc="second level (outer CV)")
    for k in range(outer_folds):
        out = folds == k
        for ci, (name, est) in enumerate(combiners.items()):
            key = (k, name)
            fitted = (
                prefitted[key] if key in prefitted else _fit(clone(est), P[~out], y[~out], client)
            )
            p_out = fitted.predict_proba(P[out])
            for ri, rule in enumerate(rules):
                t = rule_thresholds(fitted.oof_, y[~out], rule, beta, step, shrink, p_out)
                pred[ci * len(rules) + ri, out] = p_out >= t
            bar.update()
    bar.close()
    per_label = np.stack([fbeta_per_label(y, p, beta) for p in pred])
    for (name, rule), score in zip(candidates, per_label.mean(axis=1), strict=True):
        log.info("outer CV: %-13s %-9s macro F%g %.4f", name, rule, beta, score)
    return OuterCV(candidates, per_label, pred, folds)


def global_winner(
    outer: OuterCV,
    y: np.ndarray,
    incumbent: tuple[str, str] | None = None,
    beta: float = 2.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[int, dict | None]:
    """The global winner's index, and the guard's record (None without an incumbent).

    Without ``incumbent``: the best outer-CV macro F-beta (ties keep the earlier candidate,
    the order of ``COMBINERS`` then ``RULES``). With it: the incumbent, unless the best
    candidate's outer-CV predictions beat the incumbent's with a paired bootstrap interval
    of the macro F-beta difference above 0.
    """
    best = int(np.argmax(outer.macro))
    if incumbent is None:
        return best, None
    if incumbent not in outer.candidates:
        raise ValueError(
            f"incumbent {incumbent} is not a candidate; candidates: {outer.candidates}"
        )
    inc = outer.candidates.index(incumbent)
    record = {"incumbent": {"combiner": incumbent[0], "rule": incumbent[1]}}
    record["challenger"] = {
        "combiner": outer.candidates[best][0],
        "rule": outer.candidates[best][1],
    }
    if best == inc or outer.macro[best] <= outer.macro[inc]:
        return inc, {**record, "gain": 0.0, "low": 0.0, "high": 0.0, "kept": True}
    boot = paired_bootstrap(y, outer.pred[best], outer.pred[inc], beta, n_boot, seed)
    kept = not boot["low"] > 0
    log.info(
        "guard: %s/%s vs the incumbent %s/%s: outer CV F%g %+.4f [%+.4f, %+.4f]: %s",
        *outer.candidates[best],
        *incumbent,
        beta,
        boot["gain"],
        boot["low"],
        boot["high"],
        "incumbent kept" if kept else "challenger wins",
    )
    record.update(gain=boot["gain"], low=boot["low"], high=boot["high"], kept=kept)
    return (inc if kept else best), record


def choose(
    outer: OuterCV,
    y: np.ndarray,
    mode: str = "auto",
    beta: float = 2.0,
    n_boot: int = 1000,
    seed: int = 0,
    g: int | None = None,
) -> tuple[np.ndarray, int]:
    """Per label, the index of its chosen candidate; and the global winner's index.

    ``g``: the global winner (:func:`global_winner`); default the best outer-CV macro
    F-beta, ties keeping the earlier candidate (the order of ``COMBINERS`` then ``RULES``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    y = check_labels(y)
    if g is None:
        g = int(np.argmax(outer.macro))
    n_labels = y.shape[1]
    chosen = np.full(n_labels, g, dtype=np.int64)
    if mode == "global":
        return chosen, g
    for j in range(n_labels):
        best = int(np.argmax(outer.per_label[:, j]))
        if best == g:
            continue
        if mode == "per_label":
            chosen[j] = best
            continue
        boot = paired_bootstrap(
            y[:, j : j + 1],
            outer.pred[best][:, j : j + 1],
            outer.pred[g][:, j : j + 1],
            beta,
            n_boot,
            seed + j,
        )
        if boot["low"] > 0:
            chosen[j] = best
    return chosen, g


@dataclass(eq=False)
class SecondLevel:
    """The fitted second level: every combiner refitted on all OOF rows, and the choice.

    Attributes:
        labels: the L label names.
        columns: the C base columns (member, epoch).
        combiners: name -> combiner fitted on all OOF rows.
        choice: (L,) per label, its (combiner name, rule).
        report: JSON-ready record of the outer CV (every candidate's scores) and the choice.
    """

    labels: list[str]
    columns: list[Column]
    combiners: dict[str, Combiner]
    choice: list[tuple[str, str]]
    report: dict[str, Any]

    @property
    def used_columns(self) -> list[int]:
        """Column indices any chosen combiner reads (what a predictor must compute)."""
        names = {name for name, _ in self.choice}
        cols = set()
        for name in names:
            cols.update(int(c) for c in self.combiners[name].used_columns_)
        return sorted(cols)

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        """(n, L) probabilities: label j from its chosen combiner."""
        out = np.empty((P.shape[0], len(self.labels)))
        for name in dict.fromkeys(name for name, _ in self.choice):
            cols = [j for j, (n, _) in enumerate(self.choice) if n == name]
            out[:, cols] = self.combiners[name].predict_proba(P)[:, cols]
        return out

    def save(self, path: str | Path) -> None:
        """Write to directory ``path`` (atomically): ``second_level.json`` + XGBoost JSON."""
        from pipeline.artifacts import atomic_dir

        state = {
            "format": FORMAT_VERSION,
            "labels": self.labels,
            "columns": [[m, int(e)] for m, e in self.columns],
            "choice": [{"combiner": c, "rule": r} for c, r in self.choice],
            "combiners": {},
            "report": self.report,
        }
        with atomic_dir(path) as tmp:
            for name, est in self.combiners.items():
                params = {
                    k: v
                    for k, v in est.get_params(deep=False).items()
                    if k not in ("columns", "stacker")
                }
                state["combiners"][name] = {
                    "class": type(est).__name__,
                    "params": params,
                    "n_columns": int(est.n_columns_),
                    "n_labels": int(est.n_labels_),
                    "state": est.get_state(),
                }
                if isinstance(est, XGBCombiner):
                    est.stacker_.save(Path(tmp) / name, labels=self.labels)
            (Path(tmp) / STATE_FILE).write_text(json.dumps(jsonable(state)) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SecondLevel:
        """Read what :meth:`save` wrote; it predicts exactly as the saved one."""
        from pipeline.ensemble import combiners as combiner_module
        from pipeline.ensemble.stack import PerLabelXGBStacker

        path = Path(path)
        state_file = path / STATE_FILE
        if not state_file.is_file():
            raise FileNotFoundError(f"{state_file} does not exist; run `make stack` first")
        state = json.loads(state_file.read_text())
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(f"{state_file}: format {state.get('format')!r}; re-run `make stack`")
        columns = [(str(m), int(e)) for m, e in state["columns"]]
        fitted: dict[str, Combiner] = {}
        for name, rec in state["combiners"].items():
            est = getattr(combiner_module, rec["class"])(columns=columns, **rec["params"])
            est.set_state(rec["state"])
            est.n_columns_, est.n_labels_ = rec["n_columns"], rec["n_labels"]
            if isinstance(est, XGBCombiner):
                est.stacker_ = PerLabelXGBStacker.load(path / name)
            fitted[name] = est
        choice = [(c["combiner"], c["rule"]) for c in state["choice"]]
        return cls(list(state["labels"]), columns, fitted, choice, state["report"])


def fit_second_level(
    P: np.ndarray,
    y: np.ndarray,
    columns: Sequence[Column],
    labels: Sequence[str],
    combiners: Mapping[str, Combiner],
    rules: Sequence[str] = DEFAULT_RULES,
    outer_folds: int = 5,
    mode: str = "auto",
    beta: float = 2.0,
    step: float = 0.01,
    shrink: float = 20.0,
    seed: int = 0,
    n_boot: int = 1000,
    client: Any = None,
    incumbent: tuple[str, str] | None = None,
) -> SecondLevel:
    """Nested-CV choice, then every combiner refitted on all rows (see the module doc).

    ``incumbent``: the guard's ``(combiner, rule)`` (:func:`global_winner`); None = off.
    """
    y = check_labels(y)
    P = check_cube(P, y)
    folds = row_folds(y, outer_folds, seed)
    pooled = pooled_xgb_fits(P, y, combiners, folds, refit=True, client=client)
    outer = nested_cv(
        P, y, combiners, rules, outer_folds, beta, step, shrink, seed, client, pooled, folds
    )
    g, guard = global_winner(outer, y, incumbent, beta, n_boot, seed)
    chosen, g = choose(outer, y, mode, beta, n_boot, seed, g)
    fitted = {}
    for name, est in tqdm(combiners.items(), desc="second level (refit on all rows)"):
        key = (None, name)
        fitted[name] = pooled[key] if key in pooled else _fit(clone(est), P, y, client)
    choice = [outer.candidates[c] for c in chosen]
    report = {
        "mode": mode,
        "outer_folds": outer_folds,
        "beta": beta,
        "shrink": shrink,
        "global_winner": {"combiner": outer.candidates[g][0], "rule": outer.candidates[g][1]},
        "guard": guard,
        "candidates": [
            {
                "combiner": name,
                "rule": rule,
                "outer_cv_fbeta": float(outer.macro[i]),
                "outer_cv_fbeta_per_label": dict(
                    zip(labels, map(float, outer.per_label[i]), strict=True)
                ),
            }
            for i, (name, rule) in enumerate(outer.candidates)
        ],
        "chosen": {
            lab: {
                "combiner": c,
                "rule": r,
                "outer_cv_fbeta": float(outer.per_label[chosen[j], j]),
            }
            for j, (lab, (c, r)) in enumerate(zip(labels, choice, strict=True))
        },
        "chosen_outer_cv_fbeta": float(np.mean(outer.per_label[chosen, np.arange(len(chosen))])),
    }
    log.info(
        "second level: global winner %s/%s (outer CV F%g %.4f); %d of %d labels choose another",
        *outer.candidates[g],
        beta,
        outer.macro[g],
        int((chosen != g).sum()),
        len(chosen),
    )
    return SecondLevel(list(labels), list(columns), fitted, choice, report)


def chosen_thresholds(
    y: np.ndarray,
    candidates_oof: np.ndarray,
    pick: np.ndarray,
    rules: Sequence[str],
    beta: float = 2.0,
    step: float = 0.01,
    shrink: float = 20.0,
    candidates_scored: np.ndarray | None = None,
) -> np.ndarray:
    """(L,) thresholds of the chosen second level: label j gets its rule ``rules[j]`` fitted
    on its combiner's OOF ``candidates_oof[pick[j]]`` over all labels, exactly as the outer
    CV scored that candidate (a ``global`` threshold is that combiner's, over every label).
    ``candidates_scored`` (C, m, L): each candidate's probabilities of the rows to be
    labelled (the test set), which the ``rate`` rule cuts.
    """
    pick = np.asarray(pick)
    rules = np.asarray(rules).astype(str)
    out = np.empty(len(pick))
    for c, rule in sorted({(int(c), str(r)) for c, r in zip(pick, rules, strict=True)}):
        cols = (pick == c) & (rules == rule)
        scored = None if candidates_scored is None else candidates_scored[c]
        out[cols] = rule_thresholds(candidates_oof[c], y, rule, beta, step, shrink, scored)[cols]
    return out
