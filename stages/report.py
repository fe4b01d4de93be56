"""`make report`: metrics.json + one self-contained index.html describing the run."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from pipeline.artifacts import load_fold_predictions, load_stacked, write_text_atomic
from pipeline.config import Config, load_config, to_dict
from stages.common import cli

log = logging.getLogger("stages.report")


def intervals(cfg: Config, y_test, vote_row, best, baselines, labels) -> dict:
    """Vote minus the best single model (by OOF) and minus the scikit-learn baseline on the
    held-out images: the gain, its paired bootstrap 95% interval, and labels won/lost/tied."""
    from pipeline.metrics import paired_bootstrap
    from pipeline.report import per_label_record

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


def run(
    cfg: Config,
    folds_csv: Path,
    preds,
    stacked: Path,
    thresholds: Path,
    submission: Path,
    out_dir: Path,
    similar: Path | None = None,
    augment_preview: Path | None = None,
    baseline=None,
    data_report: Path | None = None,
) -> None:
    import pandas as pd

    from pipeline.data import read_labels, read_test_truth
    from pipeline.metrics import fbeta_per_label, precision_recall_per_label
    from pipeline.report import (
        ModelScores,
        f1_at_oof_thresholds,
        plots,
        render_html,
        score_backbones,
        versions,
    )
    from pipeline.select import group_pred_files, load_base_predictions

    beta, step, avg = cfg.thresholds.beta, cfg.thresholds.step, cfg.thresholds.average
    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    labels = list(table.labels)
    y = table.y
    files = group_pred_files(preds)
    base = load_base_predictions(files, table.ids)
    z = load_stacked(stacked)
    s_oof, s_test, test_ids = z["oof"], z["test"], z["test_ids"]
    sel_path = stacked.parent / "selection.json"
    sel = json.loads(sel_path.read_text()) if sel_path.is_file() else {}
    level = sel.get("second_level")
    chosen = sorted({c["combiner"] for c in level["chosen"].values()}) if level else ["xgb"]
    th = json.loads(thresholds.read_text())
    t = np.asarray(th["thresholds"])
    sub = pd.read_csv(submission, dtype={cfg.data.id_column: str})
    vote = sub[labels].to_numpy()
    y_test = None
    if cfg.data.test_truth:
        y_test = read_test_truth(
            cfg.data.test_truth, labels, cfg.data.id_column, test_ids
        ).to_numpy()

    models, curves = score_backbones(base, y, beta, step, avg, y_test)
    baselines = []
    if baseline:
        from pipeline.baseline import NAME

        b_base = load_base_predictions(group_pred_files(baseline), table.ids)
        baselines, _ = score_backbones(b_base, y, beta, step, avg, y_test)
        for m in baselines:
            m.detail = f"scikit-learn logistic regression on CNN embeddings ({NAME})"
    stack_oof_pred = (np.nan_to_num(s_oof) >= t).astype(np.int8)
    stack_test_pred = (s_test.mean(axis=0) >= t).astype(np.int8)
    sub_cfg = cfg.submit

    def vote_with(thr):
        from pipeline.submit import fold_votes, majority_vote

        return majority_vote(fold_votes(s_test, thr), sub_cfg.tie)

    def scores(pred):
        if y_test is None:
            return None, None, None
        p, r = precision_recall_per_label(y_test, pred)
        return fbeta_per_label(y_test, pred, beta=beta), p, r

    f1_thresholds = None
    if level and avg == "macro" and y_test is not None:
        from pipeline.second_level import chosen_thresholds

        # F1 at the chosen rules re-fitted for F1, on the chosen combiners' OOF
        f1_thresholds = chosen_thresholds(
            y,
            z["candidates_oof"],
            z["choice_combiner"],
            z["choice_rule"],
            1.0,
            step,
            cfg.stack.shrink,
        )
    stack_row = ModelScores(
        "stack",
        fbeta_per_label(y, stack_oof_pred, beta=beta),
        *scores(stack_test_pred),
        detail=f"second level ({', '.join(chosen)}), fold-mean probability",
        test_f1=(
            fbeta_per_label(y_test, (s_test.mean(axis=0) >= f1_thresholds).astype(np.int8), 1.0)
            if f1_thresholds is not None
            else f1_at_oof_thresholds(s_oof, y, s_test.mean(axis=0), y_test, step, avg)
        ),
        test_pred=stack_test_pred,
    )
    vote_row = ModelScores(
        "vote",
        stack_row.oof_fbeta,
        *scores(vote),
        detail=f"majority of {s_test.shape[0]} fold votes (OOF = stack's)",
        test_f1=(
            fbeta_per_label(y_test, vote_with(f1_thresholds), 1.0)
            if f1_thresholds is not None
            else f1_at_oof_thresholds(s_oof, y, None, y_test, step, avg, votes_of=vote_with)
        ),
        test_pred=vote,
    )
    rows = [*models, *baselines, stack_row, vote_row]
    tables: dict = {}
    if level:
        from pipeline.report import candidate_scores

        metrics_combiners = candidate_scores(
            z, y, y_test, level, beta, step, cfg.stack.shrink, sub_cfg.tie
        )
        tables["Second level: every combiner at its best threshold rule (nested CV on OOF)"] = (
            ["combiner", "rule", "outer-CV F", "OOF F", "test F", "test F1"],
            [
                [
                    n,
                    r["rule"],
                    r["outer_cv_fbeta"],
                    r["oof_fbeta"],
                    r.get("test_fbeta", "-"),
                    r.get("test_f1", "-"),
                ]
                for n, r in metrics_combiners.items()
            ],
        )
        tables["Second level: the choice per label (by outer CV only)"] = (
            ["label", "combiner", "rule", "outer-CV F"],
            [
                [lab, c["combiner"], c["rule"], c["outer_cv_fbeta"]]
                for lab, c in level["chosen"].items()
            ],
        )
    best = max(models, key=lambda m: m.oof_fbeta.mean())
    metrics = {
        "name": cfg.name,
        "beta": beta,
        "labels": labels,
        "prevalence": dict(zip(labels, map(float, np.nanmean(y, axis=0)), strict=True)),
        "models": {m.name: m.as_dict(labels) for m in rows},
        "best_single": best.name,
        "thresholds": dict(zip(labels, map(float, t), strict=True)),
    }
    if level:
        metrics["combiners"] = metrics_combiners
        metrics["second_level"] = {
            k: level[k] for k in ("mode", "global_winner", "chosen", "chosen_outer_cv_fbeta")
        }
    if y_test is not None:
        ones = np.ones_like(y_test, dtype=np.int8)
        metrics["all_ones_test_fbeta_macro"] = float(
            fbeta_per_label(y_test, ones, beta=beta).mean()
        )
        metrics["summary"] = {
            "best_single_test": float(best.test_fbeta.mean()),
            "stack_test": float(stack_row.test_fbeta.mean()),
            "vote_test": float(vote_row.test_fbeta.mean()),
            "all_ones_test": metrics["all_ones_test_fbeta_macro"],
            "ensemble_gain": float(vote_row.test_fbeta.mean() - best.test_fbeta.mean()),
            "best_single_test_f1": float(best.test_f1.mean()),
            "stack_test_f1": float(stack_row.test_f1.mean()),
            "vote_test_f1": float(vote_row.test_f1.mean()),
        }
        if baselines:
            metrics["summary"]["sklearn_baseline_test"] = float(baselines[0].test_fbeta.mean())
            metrics["summary"]["sklearn_baseline_test_f1"] = float(baselines[0].test_f1.mean())
        metrics["baselines"] = [m.name for m in baselines]
        metrics["intervals"] = intervals(cfg, y_test, vote_row, best, baselines, labels)
        interval_rows = [
            [
                r["comparison"],
                f"{r['gain']:+.4f}",
                f"[{r['low']:+.4f}, {r['high']:+.4f}]",
                "yes" if r["low"] > 0 else "no (within noise)" if r["high"] > 0 else "no",
                f"{len(r['won'])} / {len(r['lost'])} / {len(r['tied'])}",
            ]
            for r in metrics["intervals"].values()
        ]
        tables[
            f"Held-out gains with paired bootstrap 95% intervals ({cfg.stack.n_boot} "
            f"resamples of the {len(y_test)} test images)"
        ] = (
            ["comparison", "gain", "95% interval", "clear gain?", "labels won / lost / tied"],
            interval_rows,
        )
    losses = {}
    for b, paths in files.items():
        series = [load_fold_predictions(p)["loss"] for p in paths]
        losses[b] = np.mean(np.stack(series), axis=0).tolist()
    figures = plots(labels, y, rows, np.nan_to_num(s_oof), t, curves, losses, beta, step)
    if augment_preview is not None and augment_preview.is_file():
        import base64

        b64 = base64.b64encode(augment_preview.read_bytes()).decode()
        figures["Colour-change augmentation: originals, garment masks, recoloured copies"] = (
            f'<img src="data:image/png;base64,{b64}">'
        )
    selection_rows = []
    if sel:
        metrics["selection"] = sel["labels"]
        for lab in labels:
            picked = sel["labels"].get(lab, [])
            selection_rows.append(
                [lab, ", ".join(f"{c['backbone']}:{c['epoch']} ({c['fbeta']:.3f})" for c in picked)]
            )
    summary_rows = [
        [
            m.name,
            m.detail,
            float(m.oof_fbeta.mean()),
            float(m.test_fbeta.mean()) if m.test_fbeta is not None else "-",
            float(m.test_f1.mean()) if m.test_f1 is not None else "-",
        ]
        for m in rows
    ]
    if y_test is not None:
        summary_rows.append(
            [
                "all ones",
                "predict every label",
                "-",
                metrics["all_ones_test_fbeta_macro"],
                float(fbeta_per_label(y_test, ones, beta=1.0).mean()),
            ]
        )
    header = (
        ["label", "prevalence", "threshold"] + [f"{m.name} F" for m in rows] + ["vote P", "vote R"]
    )
    label_rows = []
    for j, lab in enumerate(labels):
        f = [(m.test_fbeta if m.test_fbeta is not None else m.oof_fbeta)[j] for m in rows]
        pr = (
            [vote_row.test_precision[j], vote_row.test_recall[j]]
            if y_test is not None
            else ["-", "-"]
        )
        label_rows.append([lab, float(np.nanmean(y[:, j])), float(t[j]), *f, *pr])
    if similar is not None and similar.is_file():
        sim = json.loads(similar.read_text())
        metrics["similarity"] = sim
        summary_rows.append(
            [
                f"similarity P@{sim['k']}",
                "CNN embeddings (vs raw pixels)",
                "-",
                f"{sim['model_precision_at_k']:.4f} (pixels {sim['pixels_precision_at_k']:.4f})",
                "-",
            ]
        )
    if data_report is not None and data_report.is_file():
        from pipeline.report import data_check_tables

        data_tables, metrics["data_checks"] = data_check_tables(json.loads(data_report.read_text()))
        tables.update(data_tables)
    metrics["versions"] = versions()
    page = render_html(
        f"{cfg.name}: F{beta:g} report",
        summary_rows,
        label_rows,
        header,
        selection_rows,
        figures,
        to_dict(cfg),
        [[lab, float(v)] for lab, v in zip(labels, t, strict=True)],
        tables,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    write_text_atomic(out_dir / "index.html", page)
    log.info("report -> %s", out_dir / "index.html")


def print_summary(path: Path) -> None:
    m = json.loads(path.read_text())
    b = m["beta"]
    for name, d in m["models"].items():
        test = f"  test F{b:g} {d['test_fbeta_macro']:.4f}" if "test_fbeta_macro" in d else ""
        if "test_f1_macro" in d:
            test += f"  F1 {d['test_f1_macro']:.4f}"
        print(f"  {name:<20} OOF F{b:g} {d['oof_fbeta_macro']:.4f}{test}")
    if "summary" in m:
        s = m["summary"]
        print(
            f"  all-ones test F{b:g} {s['all_ones_test']:.4f}; vote - best single "
            f"({m['best_single']}) = {s['ensemble_gain']:+.4f}"
        )
    for iv in m.get("intervals", {}).values():
        print(
            f"  {iv['comparison']}: {iv['gain']:+.4f}, 95% interval [{iv['low']:+.4f}, {iv['high']:+.4f}], "
            f"labels won/lost/tied {len(iv['won'])}/{len(iv['lost'])}/{len(iv['tied'])}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--summary", type=Path, help="print a metrics.json summary and exit")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--folds", type=Path)
    ap.add_argument("--preds", type=Path, nargs="+")
    ap.add_argument("--stacked", type=Path)
    ap.add_argument("--thresholds", type=Path)
    ap.add_argument("--submission", type=Path)
    ap.add_argument("--out-dir", type=Path)
    ap.add_argument("--similar", type=Path, help="similarity evaluation JSON (make similar)")
    ap.add_argument("--augment-preview", type=Path, help="augmentation preview PNG")
    ap.add_argument("--baseline", type=Path, nargs="*", help="sklearn baseline fold files")
    ap.add_argument("--data-report", type=Path, help="make folds' data_report.json (copies)")
    args = ap.parse_args(argv)
    if args.summary:
        return cli(lambda: print_summary(args.summary))
    need = ("config", "preds", "stacked", "thresholds", "submission", "out_dir")
    missing = [n for n in need if getattr(args, n) is None]
    if missing:
        ap.error("missing " + ", ".join("--" + n.replace("_", "-") for n in missing))
    return cli(
        lambda: run(
            load_config(args.config),
            args.folds,
            args.preds,
            args.stacked,
            args.thresholds,
            args.submission,
            args.out_dir,
            args.similar,
            args.augment_preview,
            args.baseline,
            args.data_report,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
