"""Benchmark: does the ensemble beat its parts on images it never trained on?

    python -m benchmarks.bench_ensemble --metrics build/<name>/report/metrics.json \
        --out build/bench/ensemble_<name>.json

Reads the report's scores (``make report``: every score below is on the held-out test
truth, with thresholds tuned on out-of-fold predictions only) and writes, per model, the
held-out macro F2 and macro F1 (F1 at thresholds re-tuned for F1 on OOF), with:
``best_single`` (the base model with the best OOF F2, as the pipeline would pick it),
``ensemble_gain`` = vote - best single, ``stack_gain`` = stack - best single and
``vs_sklearn`` = vote - the scikit-learn baseline (logistic regression per label on CNN
embeddings), each with its paired bootstrap 95% interval over the held-out images
(``*_ci``, from the report) and labels won/lost/tied; ``combiners``: the held-out F2 of
every second-level combiner at its best rule by outer CV. Prints one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.artifacts import load_metrics, write_json_atomic


def summarise(metrics: dict) -> dict:
    """The evaluation table of one run's ``metrics.json``."""
    if "summary" not in metrics:
        raise ValueError(
            "metrics.json has no held-out scores: the config needs data.test_truth "
            "(a test split with labels, or data.holdout_source)"
        )
    baselines = set(metrics.get("baselines", []))
    rows = {}
    for name, m in metrics["models"].items():
        kind = (
            name
            if name in ("stack", "vote")
            else "sklearn_baseline"
            if name in baselines
            else "single"
        )
        rows[name] = {
            "kind": kind,
            "detail": m["detail"],
            "oof_f2": m["oof_fbeta_macro"],
            "test_f2": m["test_fbeta_macro"],
            "test_f1": m.get("test_f1_macro"),
        }
    singles = {n: r for n, r in rows.items() if r["kind"] == "single"}
    best = metrics["best_single"]
    best_test = max(singles, key=lambda n: singles[n]["test_f2"])
    vote, stack = rows["vote"]["test_f2"], rows["stack"]["test_f2"]
    out = {
        "name": metrics["name"],
        "beta": metrics["beta"],
        "n_labels": len(metrics["labels"]),
        "models": rows,
        "best_single": best,
        "best_single_on_test": best_test,
        "best_single_test_f2": rows[best]["test_f2"],
        "stack_test_f2": stack,
        "vote_test_f2": vote,
        "all_ones_test_f2": metrics["all_ones_test_fbeta_macro"],
        "ensemble_gain": vote - rows[best]["test_f2"],
        "stack_gain": stack - rows[best]["test_f2"],
        "ensemble_gain_vs_best_on_test": vote - rows[best_test]["test_f2"],
        "best_single_test_f1": rows[best]["test_f1"],
        "stack_test_f1": rows["stack"]["test_f1"],
        "vote_test_f1": rows["vote"]["test_f1"],
    }
    if baselines:
        b = sorted(baselines)[0]
        out["sklearn_baseline_test_f2"] = rows[b]["test_f2"]
        out["sklearn_baseline_test_f1"] = rows[b]["test_f1"]
        out["vs_sklearn"] = vote - rows[b]["test_f2"]
    for name, iv in metrics.get("intervals", {}).items():  # ensemble_gain, vs_sklearn
        out[f"{name}_ci"] = [iv["low"], iv["high"]]
        out[f"{name}_labels"] = {k: len(iv[k]) for k in ("won", "lost", "tied")}
        if name == "ensemble_gain":
            out["ensemble_gain_bootstrap"] = {
                k: iv[k] for k in ("gain", "low", "high", "p_le_0", "n_boot", "seed")
            }
    if "combiners" in metrics:
        out["combiners"] = {n: r.get("test_fbeta") for n, r in metrics["combiners"].items()}
        out["combiners_test_f1"] = {n: r.get("test_f1") for n, r in metrics["combiners"].items()}
        out["combiners_outer_cv"] = {
            n: {"rule": r["rule"], "outer_cv_f2": r["outer_cv_fbeta"]}
            for n, r in metrics["combiners"].items()
        }
        out["second_level"] = metrics.get("second_level")
    return out


def table_markdown(result: dict) -> str:
    """The README table of one run: a row per model, best single marked."""
    lines = ["| model | kind | OOF F2 | held-out F2 | held-out F1 |", "|---|---|---|---|---|"]
    for name, r in result["models"].items():
        mark = " (best single)" if name == result["best_single"] else ""
        f1 = "-" if r["test_f1"] is None else f"{r['test_f1']:.4f}"
        lines.append(
            f"| {name}{mark} | {r['kind']} | {r['oof_f2']:.4f} | {r['test_f2']:.4f} | {f1} |"
        )
    lines.append(f"| all ones | - | - | {result['all_ones_test_f2']:.4f} | - |")
    if "combiners" in result:
        lines += ["", "| combiner (rule) | outer-CV F2 | held-out F2 | held-out F1 |"]
        lines.append("|---|---|---|---|")
        for name, cv in result["combiners_outer_cv"].items():
            f2, f1 = result["combiners"][name], result["combiners_test_f1"][name]
            lines.append(
                f"| {name} ({cv['rule']}) | {cv['outer_cv_f2']:.4f} | {f2:.4f} | {f1:.4f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metrics", type=Path, required=True, help="build/<name>/report/metrics.json")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--markdown", action="store_true", help="also print the README table")
    args = ap.parse_args(argv)
    result = summarise(load_metrics(args.metrics))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    base = result.get("sklearn_baseline_test_f2")
    print(
        f"ensemble[{result['name']}]: vote F2 {result['vote_test_f2']:.4f}, stack "
        f"{result['stack_test_f2']:.4f}, best single {result['best_single']} "
        f"{result['best_single_test_f2']:.4f}"
        + (f", sklearn LR {base:.4f}" if base is not None else "")
        + f", ensemble_gain {result['ensemble_gain']:+.4f}"
        + (
            " [{:+.4f}, {:+.4f}]".format(*result["ensemble_gain_ci"])
            if "ensemble_gain_ci" in result
            else ""
        )
        + f" -> {args.out}"
    )
    if args.markdown:
        print(table_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
