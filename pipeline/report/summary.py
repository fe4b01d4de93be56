"""What `make report` shows about a run: scores, metrics.json and the page's tables.

Scores: per-label and macro F-beta, precision and recall of every backbone (its best
epoch, thresholds tuned on its own OOF), of the stack and of the final vote; on OOF, and on
the test truth when one is given (the demo has it), with paired bootstrap intervals for
the vote's gains. :func:`make_report` reads the run's files and returns ``metrics.json``'s
content and the page (drawn by ``pipeline.report.page``); the stage only writes them.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ensemble.thresholds import ThresholdSearch, apply_thresholds
from pipeline.metrics import fbeta_per_label, precision_recall_per_label
from pipeline.report.model_scores import ModelScores


def _test_scores(y_test, pred, beta):
    if y_test is None:
        return None, None, None
    prec, rec = precision_recall_per_label(y_test, pred)
    return fbeta_per_label(y_test, pred, beta=beta), prec, rec


def score_members(records: dict, y, beta, step, average, y_test=None):
    """Each member at its best epoch (by OOF macro F-beta at per-label OOF thresholds), from
    :func:`pipeline.ensemble.predict_manifest.member_records` (saved by `make stack`).

    The test prediction averages the K fold models' test probabilities at that epoch and
    applies the OOF thresholds, as a single-model submission would. Returns the rows and
    each member's OOF F-beta per epoch (the page's curves).
    """
    rows, curves = [], {}
    for name, r in records.items():
        curves[name] = {
            "epochs": [int(e) for e in r["epochs"]],
            "oof_fbeta": [float(f) for f in r["oof_fbeta"]],
        }
        oof_f = fbeta_per_label(y, apply_thresholds(r["oof"], r["thresholds"]), beta=beta)
        test_pred = apply_thresholds(r["test_prob"], r["thresholds"])
        f, p, rec = _test_scores(y_test, test_pred, beta)
        f1 = f1_at_oof_thresholds(r["oof"], y, r["test_prob"], y_test, step, average)
        detail = f"epoch {int(r['epoch'])}"
        rows.append(ModelScores(name, oof_f, f, p, rec, detail, f1, test_pred))
    return rows, curves


def f1_at_oof_thresholds(oof, y, test_prob, y_test, step, average, votes_of=None):
    """Per-label test F1 with thresholds re-tuned for F1 (not F2) on the OOF predictions,
    so the F1 is the model's own best shot at that metric, comparable with F1 literature.

    ``votes_of``: a function thresholds -> 0/1 test predictions (the vote bagging); by
    default ``test_prob >= thresholds``.
    """
    if y_test is None:
        return None
    ts = ThresholdSearch(beta=1.0, step=step, average=average).fit(np.nan_to_num(oof), y)
    pred = ts.transform(test_prob) if votes_of is None else votes_of(ts.thresholds_)
    return fbeta_per_label(y_test, pred, beta=1.0)


#: the libraries whose versions ``metrics.json`` records
REPORT_PACKAGES = (
    "tensorflow",
    "keras",
    "xgboost",
    "numpy",
    "pandas",
    "scikit-learn",
    "opencv-python-headless",
    "dask",
)


def versions(packages=REPORT_PACKAGES) -> dict:
    """Python's version and each of ``packages``' ("not installed" when absent)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def candidate_scores(z, y, y_test, report: dict, beta, step, shrink, tie) -> dict:
    """Held-out F-beta and F1 of every second-level combiner, each at its own best rule by
    outer CV (thresholds fitted on its OOF), voted over the CNN folds as the submission is.

    Args:
        z: the stacked file's arrays (``combiners``, ``candidates_oof``, ``candidates_test``).
        report: the second level's record (``selection.json`` ``second_level``).
    """
    from pipeline.ensemble.submit import fold_votes, majority_vote
    from pipeline.ensemble.thresholds import rule_thresholds

    out = {}
    for c, name in enumerate(str(n) for n in z["combiners"]):
        mine = [r for r in report["candidates"] if r["combiner"] == name]
        best = max(mine, key=lambda r: r["outer_cv_fbeta"])
        row = {"rule": best["rule"], "outer_cv_fbeta": best["outer_cv_fbeta"]}
        oof, test = z["candidates_oof"][c], z["candidates_test"][c]
        for key, b in (("fbeta", beta), ("f1", 1.0)):
            # the rate rule cuts the rows it labels: the OOF rows, then the test rows;
            # the other rules' thresholds do not depend on them
            t = rule_thresholds(oof, y, best["rule"], b, step, shrink, oof)
            row[f"oof_{key}"] = float(fbeta_per_label(y, (oof >= t).astype(np.int8), b).mean())
            if best["rule"] == "rate":
                t = rule_thresholds(oof, y, "rate", b, step, shrink, test.mean(axis=0))
            if y_test is not None:
                vote = majority_vote(fold_votes(test, t), tie)
                row[f"test_{key}"] = float(fbeta_per_label(y_test, vote, beta=b).mean())
        out[name] = row
    return out


def per_label_record(labels, a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> dict:
    """Labels where per-label score ``a`` beats, loses to or ties ``b``."""
    diff = np.asarray(a) - np.asarray(b)
    return {
        "won": [lab for lab, d in zip(labels, diff, strict=True) if d > tol],
        "lost": [lab for lab, d in zip(labels, diff, strict=True) if d < -tol],
        "tied": [lab for lab, d in zip(labels, diff, strict=True) if abs(d) <= tol],
    }


def data_check_tables(report: dict, max_pairs: int = 20) -> tuple[dict, dict]:
    """Report tables and metrics of `make data-checks`' data report (``data_report.json``).

    Returns ``({title: (header, rows)}, counts)``: copy groups kept in one fold and the
    test images that nearly copy a training image (their test scores flatter the models),
    with the first ``max_pairs`` pairs. The counts hold no timings, so reruns compare equal.
    """
    g = report["train_groups"]
    cross = report["train_test_near_duplicates"]
    counts = {
        "train_copy_groups_exact": int(g["exact"]),
        "train_copy_groups": int(g["all"]),
        "train_rows_in_groups": int(g["rows_in_groups"]),
        "groups_with_conflicting_labels": int(g["with_conflicting_labels"]),
        "test_near_copies_of_train": int(cross["count"]),
        "near_duplicate_max_distance": int(report["near_duplicate_max_distance"]),
    }
    mirrored = sum(bool(p.get("mirrored")) for p in cross["pairs"])
    counts["test_mirrored_copies_of_train"] = mirrored
    rows = [
        ["training copy groups, exact / with near copies", f"{g['exact']} / {g['all']}"],
        ["training rows in copy groups (each group in one fold)", g["rows_in_groups"]],
        ["copy groups with conflicting labels", g["with_conflicting_labels"]],
        ["test images that copy a training image (exact pixels or near)", cross["count"]],
        ["... of them mirrored", mirrored],
    ]
    tables = {
        "Data checks (copies grouped, train/test copies: exact, near, mirrored)": (
            ["check", "count"],
            rows,
        )
    }
    conflicts = report.get("conflicting_labels", [])  # reports before issue 27 lack it
    if conflicts:
        shown = conflicts[:max_pairs]
        tables[
            f"Copies of one photo with conflicting labels ({len(shown)} of {len(conflicts)} "
            "groups; fix them in labels.csv)"
        ] = (
            ["images", "labels that differ", "copies"],
            [
                [", ".join(c["ids"]), ", ".join(c["labels"]), "exact" if c["exact"] else "near"]
                for c in shown
            ],
        )
    if cross["pairs"]:
        shown = cross["pairs"][:max_pairs]
        tables[
            f"Test images that copy a training image ({len(shown)} of {cross['count']}; "
            f"pixels, or pHash within {report['near_duplicate_max_distance']} bits)"
        ] = (
            ["test image", "training image", "pHash distance", "how"],
            [
                [
                    p["test"],
                    p["train"],
                    p["distance"],
                    ("exact pixels" if p.get("exact") else "near")
                    + (", mirrored" if p.get("mirrored") else ""),
                ]
                for p in shown
            ],
        )
    return tables, counts


# ---- the report of a run: its files in, metrics.json and the page out ---------------------


@dataclass
class RunFiles:
    """What the report reads of a finished run, loaded once.

    Attributes:
        members: member -> its scores as `make stack` saved them (``stack/members.npz``).
        z: the stacked file's arrays; ``sel``: ``selection.json`` beside it ({} if absent);
            ``level``: its ``second_level`` record (None for a plain XGBoost stack).
        t: (L,) the chosen thresholds; ``vote``: (m, L) the submission's 0/1 cells.
        y_test: (m, L) the test truth, None without ``data.test_truth``.
        baseline: the scikit-learn baseline's predictions, None when not given.
    """

    labels: list[str]
    y: np.ndarray
    members: dict
    z: dict
    sel: dict
    level: dict | None
    t: np.ndarray
    vote: np.ndarray
    y_test: np.ndarray | None
    baseline: Any = None


def read_run(cfg, stacked, thresholds, submission, baseline=None) -> RunFiles:
    """Load the files the report scores (paths as Make names them): the stack's folder
    holds every member's scores (``members.npz``), so no member fold file is opened."""

    from pipeline.artifacts import (
        MEMBER_SCORES,
        SELECTION_FILE,
        load_member_scores,
        load_selection,
        load_stacked,
        load_submission_votes,
        load_thresholds,
    )
    from pipeline.data.contract import read_labels, read_test_truth
    from pipeline.ensemble.select import group_pred_files, load_base_predictions

    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    labels = list(table.labels)
    z = load_stacked(stacked)
    sel_path = Path(stacked).parent / SELECTION_FILE
    sel = load_selection(sel_path) if sel_path.is_file() else {}
    th = load_thresholds(thresholds, labels, Path(cfg.data.train_dir) / "labels.csv")
    y_test = None
    if cfg.data.test_truth:
        y_test = read_test_truth(
            cfg.data.test_truth, labels, cfg.data.id_column, z["test_ids"]
        ).to_numpy()
    return RunFiles(
        labels=labels,
        y=table.y,
        members=load_member_scores(Path(stacked).parent / MEMBER_SCORES),
        z=z,
        sel=sel,
        level=sel.get("second_level"),
        t=th["thresholds"],
        vote=load_submission_votes(submission, z["test_ids"], labels, cfg.data.id_column),
        y_test=y_test,
        baseline=(
            load_base_predictions(group_pred_files(baseline), table.ids) if baseline else None
        ),
    )


@dataclass
class RunScores:
    """Every row of the comparison: members, baselines, the stack and the vote; ``curves``:
    each member's OOF F-beta per epoch; ``best``: the best single member by OOF."""

    models: list[ModelScores]
    baselines: list[ModelScores]
    stack: ModelScores
    vote: ModelScores
    curves: dict
    best: ModelScores

    @property
    def rows(self) -> list[ModelScores]:
        return [*self.models, *self.baselines, self.stack, self.vote]


def score_run(cfg, run: RunFiles) -> RunScores:
    """Score the members (each at its best epoch), the baseline, the stack and the vote."""
    beta, step, avg = cfg.thresholds.beta, cfg.thresholds.step, cfg.thresholds.average
    models, curves = score_members(run.members, run.y, beta, step, avg, run.y_test)
    baselines = []
    if run.baseline is not None:
        from pipeline.ensemble.predict_manifest import member_records
        from pipeline.members.baseline import NAME

        records = member_records(run.baseline, run.y, beta, step, avg)
        baselines, _ = score_members(records, run.y, beta, step, avg, run.y_test)
        for m in baselines:
            m.detail = f"scikit-learn logistic regression on CNN embeddings ({NAME})"
    stack, vote = stack_and_vote(cfg, run)
    best = max(models, key=lambda m: m.oof_fbeta.mean())
    return RunScores(models, baselines, stack, vote, curves, best)


def _test_scores_of(run: RunFiles, pred, beta):
    if run.y_test is None:
        return None, None, None
    p, r = precision_recall_per_label(run.y_test, pred)
    return fbeta_per_label(run.y_test, pred, beta=beta), p, r


def stack_and_vote(cfg, run: RunFiles) -> tuple[ModelScores, ModelScores]:
    """The second level's rows: the stack (fold-mean probability at the thresholds) and the
    vote (the submission), each with its F1 at thresholds re-fitted for F1."""
    from pipeline.ensemble.submit import fold_votes, majority_vote

    beta, step, avg = cfg.thresholds.beta, cfg.thresholds.step, cfg.thresholds.average
    z, y, y_test, t, level = run.z, run.y, run.y_test, run.t, run.level
    s_oof, s_test = z["oof"], z["test"]
    chosen = sorted({c["combiner"] for c in level["chosen"].values()}) if level else ["xgb"]
    stack_test_pred = (s_test.mean(axis=0) >= t).astype(np.int8)

    def vote_with(thr):
        return majority_vote(fold_votes(s_test, thr), cfg.submit.tie)

    f1_t = None
    if level and avg == "macro" and y_test is not None:
        from pipeline.ensemble.second_level import chosen_thresholds

        # F1 at the chosen rules re-fitted for F1, on the chosen combiners' OOF
        choice = (z["candidates_oof"], z["choice_combiner"], z["choice_rule"])
        scored = z["candidates_test"].mean(axis=1)
        f1_t = chosen_thresholds(y, *choice, 1.0, step, cfg.stack.shrink, scored)
    if f1_t is not None:
        stack_f1 = fbeta_per_label(y_test, (s_test.mean(axis=0) >= f1_t).astype(np.int8), 1.0)
        vote_f1 = fbeta_per_label(y_test, vote_with(f1_t), 1.0)
    else:
        stack_f1 = f1_at_oof_thresholds(s_oof, y, s_test.mean(axis=0), y_test, step, avg)
        vote_f1 = f1_at_oof_thresholds(s_oof, y, None, y_test, step, avg, votes_of=vote_with)
    stack_row = ModelScores(
        "stack",
        fbeta_per_label(y, (np.nan_to_num(s_oof) >= t).astype(np.int8), beta=beta),
        *_test_scores_of(run, stack_test_pred, beta),
        detail=f"second level ({', '.join(chosen)}), fold-mean probability",
        test_f1=stack_f1,
        test_pred=stack_test_pred,
    )
    vote_row = ModelScores(
        "vote",
        stack_row.oof_fbeta,
        *_test_scores_of(run, run.vote, beta),
        detail=f"majority of {s_test.shape[0]} fold votes (OOF = stack's)",
        test_f1=vote_f1,
        test_pred=run.vote,
    )
    return stack_row, vote_row


def intervals(cfg, y_test, vote_row, best, baselines, labels) -> dict:
    """Vote minus the best single model (by OOF) and minus the scikit-learn baseline on the
    held-out images: the gain, its paired bootstrap 95% interval, and labels won/lost/tied."""
    from pipeline.metrics import paired_bootstrap

    beta = cfg.thresholds.beta
    out = {}
    others = [("ensemble_gain", f"vote - best single ({best.name})", best)]
    others += [("vs_sklearn", f"vote - {b.name} (scikit-learn baseline)", b) for b in baselines[:1]]
    for key, comparison, other in others:
        boot = paired_bootstrap(
            y_test, vote_row.test_pred, other.test_pred, beta, cfg.stack.n_boot, cfg.stack.seed
        )
        record = per_label_record(labels, vote_row.test_fbeta, other.test_fbeta)
        out[key] = {"comparison": comparison, **boot, **record}
    return out


def all_ones_fbeta(y_test: np.ndarray, beta: float) -> float:
    """Macro F-beta of predicting every label: the floor a model must beat."""
    return float(fbeta_per_label(y_test, np.ones_like(y_test, dtype=np.int8), beta=beta).mean())


def held_out_metrics(cfg, run: RunFiles, scores: RunScores) -> dict:
    """metrics.json's test-truth part: the all-ones floor, the summary, the intervals."""
    best, stack, vote, baselines = scores.best, scores.stack, scores.vote, scores.baselines
    all_ones = all_ones_fbeta(run.y_test, cfg.thresholds.beta)
    summary = {
        "best_single_test": float(best.test_fbeta.mean()),
        "stack_test": float(stack.test_fbeta.mean()),
        "vote_test": float(vote.test_fbeta.mean()),
        "all_ones_test": all_ones,
        "ensemble_gain": float(vote.test_fbeta.mean() - best.test_fbeta.mean()),
        "best_single_test_f1": float(best.test_f1.mean()),
        "stack_test_f1": float(stack.test_f1.mean()),
        "vote_test_f1": float(vote.test_f1.mean()),
    }
    if baselines:
        summary["sklearn_baseline_test"] = float(baselines[0].test_fbeta.mean())
        summary["sklearn_baseline_test_f1"] = float(baselines[0].test_f1.mean())
    return {
        "all_ones_test_fbeta_macro": all_ones,
        "summary": summary,
        "baselines": [m.name for m in baselines],
        "intervals": intervals(cfg, run.y_test, vote, best, baselines, run.labels),
    }


def run_metrics(cfg, run: RunFiles, scores: RunScores) -> dict:
    """metrics.json's scores: every row per label, the thresholds, the second level's
    choice and every combiner's scores, and the held-out summary when there is test truth."""
    beta, labels = cfg.thresholds.beta, run.labels
    metrics = {
        "name": cfg.name,
        "beta": beta,
        "labels": labels,
        "prevalence": dict(zip(labels, map(float, np.nanmean(run.y, axis=0)), strict=True)),
        "models": {m.name: m.as_dict(labels) for m in scores.rows},
        "best_single": scores.best.name,
        "thresholds": dict(zip(labels, map(float, run.t), strict=True)),
    }
    if run.level:
        step, shrink, tie = cfg.thresholds.step, cfg.stack.shrink, cfg.submit.tie
        metrics["combiners"] = candidate_scores(
            run.z, run.y, run.y_test, run.level, beta, step, shrink, tie
        )
        keys = ("mode", "global_winner", "guard", "chosen", "chosen_outer_cv_fbeta")
        metrics["second_level"] = {k: run.level.get(k) for k in keys}
    if run.y_test is not None:
        metrics |= held_out_metrics(cfg, run, scores)
    if run.sel:
        metrics["selection"] = run.sel["labels"]
    return metrics


def make_report(
    cfg,
    stacked,
    thresholds,
    submission,
    baseline=None,
    similar=None,
    augment_preview=None,
    data_report=None,
) -> tuple[dict, str]:
    """Score a finished run: ``(metrics.json's content, the HTML page)``. The optional
    inputs (baseline fold files, similarity metrics, augmentation preview, `make folds`'
    data report) add their rows and sections when given and present."""
    from pipeline.artifacts import load_data_report, load_similarity_metrics
    from pipeline.report.page import report_page

    run = read_run(cfg, stacked, thresholds, submission, baseline)
    scores = score_run(cfg, run)
    metrics = run_metrics(cfg, run, scores)
    if similar is not None and Path(similar).is_file():
        metrics["similarity"] = load_similarity_metrics(similar)
    data_tables = {}
    if data_report is not None and Path(data_report).is_file():
        report = load_data_report(data_report)
        data_tables, metrics["data_checks"] = data_check_tables(report)
    metrics["versions"] = versions()
    page = report_page(cfg, run, scores, metrics, data_tables, augment_preview)
    return metrics, page
