"""`make report`: metrics.json + one self-contained index.html describing the run."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.artifacts import load_metrics, save_metrics, write_text_atomic
from pipeline.config.schema import Config, load_config
from stages.common import cli

log = logging.getLogger("stages.report")


def run(
    cfg: Config,
    stacked: Path,
    thresholds: Path,
    submission: Path,
    out_dir: Path,
    similar: Path | None = None,
    augment_preview: Path | None = None,
    baseline: list[Path] | None = None,
    data_report: Path | None = None,
) -> None:
    """Score the run (``pipeline.report.summary.make_report``); write metrics.json and index.html."""
    from pipeline.report.summary import make_report

    metrics, page = make_report(
        cfg, stacked, thresholds, submission, baseline, similar, augment_preview, data_report
    )
    save_metrics(out_dir / "metrics.json", metrics)
    write_text_atomic(out_dir / "index.html", page)
    log.info("report -> %s", out_dir / "index.html")


def print_summary(path: Path) -> None:
    m = load_metrics(path)
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
    need = ("config", "stacked", "thresholds", "submission", "out_dir")
    missing = [n for n in need if getattr(args, n) is None]
    if missing:
        ap.error("missing " + ", ".join("--" + n.replace("_", "-") for n in missing))
    return cli(
        lambda: run(
            load_config(args.config),
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
