"""The report page: its figures (matplotlib, embedded as base64 PNG) and one
self-contained HTML file; the scores it shows come from ``pipeline.report.summary``."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.metrics import fbeta_threshold_curves

if TYPE_CHECKING:
    from pipeline.report.model_scores import ModelScores


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
    note: str = "",
) -> str:
    """One self-contained page; ``tables``: more titled tables ``{title: (header, rows)}``
    shown after the summary (the second level's candidates, the intervals); ``note``: a
    paragraph under the summary's title."""
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
        f"<p class='note'>{html.escape(note)}</p>" if note else "",
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


def png_file_img(path: str | Path) -> str:
    """A PNG file as an inline ``<img>`` tag (base64), so the page stays one file."""
    b64 = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{b64}">'


# ---- the page of a run (``pipeline.report.summary.make_report``) ----------------------------------


#: The summary's note for a run without test labels (a competition's test set).
NO_TRUTH_NOTE = (
    "No test labels (data.test_truth is empty, as in a competition): every score here is "
    "out of fold (OOF) or from the second level's outer CV on the training images. "
    "Held-out test scores and their bootstrap intervals need test labels: set "
    "data.test_truth to a labels file for the test images to see them."
)


def report_page(cfg, run, scores, metrics: dict, data_tables: dict, augment_preview=None) -> str:
    """The run's page: the summary, the second level's and the intervals' tables (from
    ``metrics``), ``data_tables``, the per-label table, the figures, selection and config.

    ``run``/``scores``: ``pipeline.report.summary.RunFiles`` / ``RunScores``.
    """
    from pipeline.config.schema import to_dict

    beta = cfg.thresholds.beta
    n_test = 0 if run.y_test is None else len(run.y_test)
    tables = {**second_level_tables(run.level, metrics), **interval_table(cfg, metrics, n_test)}
    tables.update(data_tables)
    header, label_rows = label_table(run, scores)
    selection_rows = []
    for lab in run.labels if run.sel else []:
        picked = run.sel["labels"].get(lab, [])
        shown = ", ".join(f"{c['backbone']}:{c['epoch']} ({c['fbeta']:.3f})" for c in picked)
        selection_rows.append([lab, shown])
    return render_html(
        f"{cfg.name}: F{beta:g} report",
        summary_rows(scores, metrics, run.y_test),
        label_rows,
        header,
        selection_rows,
        report_figures(cfg, run, scores, augment_preview),
        to_dict(cfg),
        [[lab, float(v)] for lab, v in zip(run.labels, run.t, strict=True)],
        tables,
        note=NO_TRUTH_NOTE if run.y_test is None else "",
    )


def second_level_tables(level: dict | None, metrics: dict) -> dict:
    """Every combiner at its best rule, and the choice per label (none for a plain stack)."""
    if not level:
        return {}
    rows = [
        [n, r["rule"], r["outer_cv_fbeta"], r["oof_fbeta"]]
        + [r.get("test_fbeta", "-"), r.get("test_f1", "-")]
        for n, r in metrics["combiners"].items()
    ]
    choice = [
        [lab, c["combiner"], c["rule"], c["outer_cv_fbeta"]] for lab, c in level["chosen"].items()
    ]
    tables = {}
    if guard := level.get("guard"):
        inc, ch = guard["incumbent"], guard["challenger"]
        tables["Second level: the guard (the incumbent unless beaten with an interval above 0)"] = (
            ["incumbent", "best by outer CV", "outer-CV F gain [95% CI]", "global winner"],
            [
                [
                    f"{inc['combiner']}/{inc['rule']}",
                    f"{ch['combiner']}/{ch['rule']}",
                    f"{guard['gain']:+.4f} [{guard['low']:+.4f}, {guard['high']:+.4f}]",
                    "incumbent kept" if guard["kept"] else "challenger",
                ]
            ],
        )
    return tables | {
        "Second level: every combiner at its best threshold rule (nested CV on OOF)": (
            ["combiner", "rule", "outer-CV F", "OOF F", "test F", "test F1"],
            rows,
        ),
        "Second level: the choice per label (by outer CV only)": (
            ["label", "combiner", "rule", "outer-CV F"],
            choice,
        ),
    }


def interval_table(cfg, metrics: dict, n_test: int) -> dict:
    """The vote's held-out gains with their bootstrap intervals over the ``n_test`` test
    images (none without test truth)."""
    if "intervals" not in metrics:
        return {}
    rows = [
        [
            r["comparison"],
            f"{r['gain']:+.4f}",
            f"[{r['low']:+.4f}, {r['high']:+.4f}]",
            "yes" if r["low"] > 0 else "no (within noise)" if r["high"] > 0 else "no",
            f"{len(r['won'])} / {len(r['lost'])} / {len(r['tied'])}",
        ]
        for r in metrics["intervals"].values()
    ]
    title = (
        f"Held-out gains with paired bootstrap 95% intervals ({cfg.stack.n_boot} "
        f"resamples of the {n_test} test images)"
    )
    header = ["comparison", "gain", "95% interval", "clear gain?", "labels won / lost / tied"]
    return {title: (header, rows)}


def summary_rows(scores, metrics: dict, y_test) -> list[list]:
    """The summary table: each row's macro scores, the all-ones floor, similarity search."""
    from pipeline.metrics import fbeta_per_label

    rows = [
        [
            m.name,
            m.detail,
            float(m.oof_fbeta.mean()),
            float(m.test_fbeta.mean()) if m.test_fbeta is not None else "-",
            float(m.test_f1.mean()) if m.test_f1 is not None else "-",
        ]
        for m in scores.rows
    ]
    if y_test is not None:
        ones = np.ones_like(y_test, dtype=np.int8)
        all_ones_f1 = float(fbeta_per_label(y_test, ones, beta=1.0).mean())
        all_ones = metrics["all_ones_test_fbeta_macro"]
        rows.append(["all ones", "predict every label", "-", all_ones, all_ones_f1])
    sim = metrics.get("similarity")
    if sim is not None:
        p_model, p_px = sim["model_precision_at_k"], sim["pixels_precision_at_k"]
        shown = f"{p_model:.4f} (pixels {p_px:.4f})"
        queries = sim.get("queries", "test images")
        detail = f"CNN embeddings (vs raw pixels); queries: {queries}"
        rows.append([f"similarity P@{sim['k']}", detail, "-", shown, "-"])
    return rows


def label_table(run, scores) -> tuple[list[str], list[list]]:
    """The per-label table: prevalence, threshold, every row's F-beta (test when there is
    test truth, else OOF) and the vote's test precision and recall."""
    rows = scores.rows
    header = ["label", "prevalence", "threshold"] + [f"{m.name} F" for m in rows]
    out = []
    for j, lab in enumerate(run.labels):
        f = [(m.test_fbeta if m.test_fbeta is not None else m.oof_fbeta)[j] for m in rows]
        pr = (
            [scores.vote.test_precision[j], scores.vote.test_recall[j]]
            if run.y_test is not None
            else ["-", "-"]
        )
        out.append([lab, float(np.nanmean(run.y[:, j])), float(run.t[j]), *f, *pr])
    return header + ["vote P", "vote R"], out


def report_figures(cfg, run, scores, augment_preview=None) -> dict:
    """The page's figures; the augmentation preview PNG too when the run made one."""
    losses = {name: r["loss"].tolist() for name, r in run.members.items()}
    figures = plots(
        run.labels,
        run.y,
        scores.rows,
        np.nan_to_num(run.z["oof"]),
        run.t,
        scores.curves,
        losses,
        cfg.thresholds.beta,
        cfg.thresholds.step,
    )
    if augment_preview is not None and Path(augment_preview).is_file():
        title = "Colour-change augmentation: originals, garment masks, recoloured copies"
        figures[title] = png_file_img(augment_preview)
    return figures
