"""Scores and one self-contained HTML page (plots embedded) describing a run.

Scores: per-label and macro F-beta, precision and recall of every backbone (its best
epoch, thresholds tuned on its own OOF), of the stack and of the final vote; on OOF, and on
the test truth when one is given (the demo has it).
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from dataclasses import dataclass

import numpy as np

from pipeline.metrics import fbeta_per_label, fbeta_threshold_curves, precision_recall_per_label
from pipeline.predict_manifest import epoch_scores
from pipeline.thresholds import ThresholdSearch


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


def _test_scores(y_test, pred, beta):
    if y_test is None:
        return None, None, None
    prec, rec = precision_recall_per_label(y_test, pred)
    return fbeta_per_label(y_test, pred, beta=beta), prec, rec


def score_backbones(base, y, beta, step, average, y_test=None) -> tuple[list[ModelScores], dict]:
    """Each backbone at its best epoch (by OOF macro F-beta at per-label OOF thresholds).

    The test prediction averages the K fold models' test probabilities at that epoch and
    applies the OOF thresholds, as a single-model submission would.
    """
    rows, curves = [], {}
    for b in dict.fromkeys(name for name, _ in base.columns):
        per_epoch = epoch_scores(base, b, y, beta, step, average)
        curves[b] = {
            "epochs": [int(base.columns[c][1]) for _, c, _ in per_epoch],
            "oof_fbeta": [s for s, _, _ in per_epoch],
        }
        best_score, c, ts = max(per_epoch, key=lambda t: t[0])
        oof_f = fbeta_per_label(y, ts.transform(base.oof[:, c]), beta=beta)
        test_prob = base.test[:, :, c].mean(axis=0)
        test_pred = ts.transform(test_prob)
        f, p, r = _test_scores(y_test, test_pred, beta)
        f1 = f1_at_oof_thresholds(base.oof[:, c], y, test_prob, y_test, step, average)
        rows.append(ModelScores(b, oof_f, f, p, r, f"epoch {base.columns[c][1]}", f1, test_pred))
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


def figure_png(fig) -> str:
    """A matplotlib figure as an inline ``<img>`` tag (base64 PNG), then closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.4f}"
    return html.escape(str(v))


def plots(
    labels, y, models: list[ModelScores], stacked_oof, thresholds, curves, losses, beta, step
):
    """The report's figures as ``{title: <img> tag}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    n_labels = len(labels)
    x = np.arange(n_labels)
    has_test = all(m.test_fbeta is not None for m in models)
    fig, ax = plt.subplots(figsize=(max(8, n_labels * 0.7), 4))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        vals = m.test_fbeta if has_test else m.oof_fbeta
        ax.bar(x + i * width, vals, width, label=m.name)
    ax.set_xticks(x + 0.4 - width / 2, labels, rotation=45, ha="right")
    ax.set_ylabel(f"F{beta:g} ({'test' if has_test else 'OOF'})")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    out["Per-label F-beta of every model"] = figure_png(fig)

    fig, ax = plt.subplots(figsize=(max(8, n_labels * 0.5), 3))
    prev = np.nanmean(y, axis=0)
    ax.bar(x, prev, color="gray")
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylabel("prevalence (train)")
    out["Label frequencies"] = figure_png(fig)

    grid, curves_f = fbeta_threshold_curves(y, stacked_oof, beta=beta, step=step)
    cols = min(5, n_labels)
    rows = int(np.ceil(n_labels / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n_labels:
            ax.axis("off")
            continue
        ax.plot(grid, curves_f[:, j])
        ax.axvline(thresholds[j], color="red", lw=0.8)
        ax.set_title(labels[j], fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    out["Threshold curves (stacked OOF F-beta vs threshold; red = chosen)"] = figure_png(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for b, c in curves.items():
        a1.plot(c["epochs"], c["oof_fbeta"], marker="o", label=b)
    a1.set_xlabel("epoch")
    a1.set_ylabel(f"OOF F{beta:g}")
    a1.legend(fontsize=8)
    for b, series in losses.items():
        a2.plot(np.arange(1, len(series) + 1), series, marker="o", label=b)
    a2.set_xlabel("epoch")
    a2.set_ylabel("training loss (mean over folds)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    out["Training curves"] = figure_png(fig)

    fig, ax = plt.subplots(figsize=(4, 4))
    known = ~np.isnan(y)
    p, t = stacked_oof[known], y[known]
    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(p, bins) - 1, 0, 9)
    mean_p = [p[idx == i].mean() if (idx == i).any() else np.nan for i in range(10)]
    frac = [t[idx == i].mean() if (idx == i).any() else np.nan for i in range(10)]
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot(mean_p, frac, marker="o")
    ax.set_xlabel("stacked probability")
    ax.set_ylabel("observed frequency")
    out["Reliability of stacked probabilities (OOF)"] = figure_png(fig)
    return out


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in (
        "tensorflow",
        "keras",
        "xgboost",
        "numpy",
        "pandas",
        "scikit-learn",
        "opencv-python-headless",
        "dask",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def render_html(
    title,
    summary_rows,
    label_rows,
    label_header,
    selection_rows,
    figures,
    config,
    thresholds,
    tables: dict | None = None,
) -> str:
    """One self-contained page; ``tables``: more titled tables ``{title: (header, rows)}``
    shown after the summary (the second level's candidates, the intervals)."""
    css = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "th{background:#eee}img{max-width:100%}h2{margin-top:1.6em}"
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>",
        "<h2>Summary (macro F-beta)</h2>",
        _table(["model", "detail", "OOF", "test", "test F1"], summary_rows),
    ]
    for name, (header, rows) in (tables or {}).items():
        parts += [f"<h2>{html.escape(name)}</h2>", _table(header, rows)]
    parts += [
        "<h2>Per label</h2>",
        _table(label_header, label_rows),
    ]
    for name, img in figures.items():
        parts += [f"<h2>{html.escape(name)}</h2>", img]
    parts += [
        "<h2>Selected epochs per label (stacker inputs)</h2>",
        _table(["label", "selected (backbone:epoch, OOF F-beta)"], selection_rows),
        "<h2>Thresholds</h2>",
        _table(["label", "threshold"], thresholds),
        "<h2>Config and software</h2>",
        f"<pre>{html.escape(json.dumps(config, indent=2))}</pre></body></html>",
    ]
    return "\n".join(parts)


def candidate_scores(z, y, y_test, report: dict, beta, step, shrink, tie) -> dict:
    """Held-out F-beta and F1 of every second-level combiner, each at its own best rule by
    outer CV (thresholds fitted on its OOF), voted over the CNN folds as the submission is.

    Args:
        z: the stacked file's arrays (``combiners``, ``candidates_oof``, ``candidates_test``).
        report: the second level's record (``selection.json`` ``second_level``).
    """
    from pipeline.submit import fold_votes, majority_vote
    from pipeline.thresholds import rule_thresholds

    out = {}
    for c, name in enumerate(str(n) for n in z["combiners"]):
        mine = [r for r in report["candidates"] if r["combiner"] == name]
        best = max(mine, key=lambda r: r["outer_cv_fbeta"])
        row = {"rule": best["rule"], "outer_cv_fbeta": best["outer_cv_fbeta"]}
        oof, test = z["candidates_oof"][c], z["candidates_test"][c]
        for key, b in (("fbeta", beta), ("f1", 1.0)):
            t = rule_thresholds(oof, y, best["rule"], b, step, shrink)
            row[f"oof_{key}"] = float(fbeta_per_label(y, (oof >= t).astype(np.int8), b).mean())
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
    """Report tables and metrics of `make folds`' data report (``data_report.json``).

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
    rows = [
        ["training copy groups, exact / with near copies", f"{g['exact']} / {g['all']}"],
        ["training rows in copy groups (each group in one fold)", g["rows_in_groups"]],
        ["copy groups with conflicting labels", g["with_conflicting_labels"]],
        ["test images that nearly copy a training image", cross["count"]],
    ]
    tables = {
        "Data checks (make folds: copies grouped, train/test near copies)": (
            ["check", "count"],
            rows,
        )
    }
    if cross["pairs"]:
        shown = cross["pairs"][:max_pairs]
        tables[
            f"Test images that nearly copy a training image ({len(shown)} of {cross['count']}; "
            f"pHash within {report['near_duplicate_max_distance']} bits)"
        ] = (
            ["test image", "training image", "pHash distance"],
            [[p["test"], p["train"], p["distance"]] for p in shown],
        )
    return tables, counts
