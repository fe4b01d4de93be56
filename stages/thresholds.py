"""`make thresholds`: per-label threshold search on the stacked out-of-fold predictions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from pipeline.config import Config, load_config, to_dict
from pipeline.data import write_text_atomic
from stages.common import cli

log = logging.getLogger("stages.thresholds")


def run(cfg: Config, stacked: Path, out: Path) -> None:
    from pipeline.metrics import fbeta_per_label
    from pipeline.thresholds import ThresholdSearch

    with np.load(stacked) as z:
        labels = [str(s) for s in z["labels"]]
        y, oof = z["y"], z["oof"]
    known = ~np.isnan(oof)
    if not known[~np.isnan(y)].all():
        raise ValueError(
            f"{stacked}: stacked OOF has gaps where labels are known; rerun make stack"
        )
    t = cfg.thresholds
    search = ThresholdSearch(beta=t.beta, step=t.step, average=t.average).fit(
        np.nan_to_num(oof, nan=0.0), y
    )
    per_label = fbeta_per_label(y, search.transform(np.nan_to_num(oof, nan=0.0)), beta=t.beta)
    payload = {
        "labels": labels,
        "thresholds": [float(v) for v in search.thresholds_],
        "oof_fbeta_per_label": [float(v) for v in per_label],
        "oof_fbeta": float(search.score_),
        "config": to_dict(t),
    }
    write_text_atomic(out, json.dumps(payload, indent=2) + "\n")
    log.info("thresholds: OOF F%.3g (%s) = %.4f -> %s", t.beta, t.average, search.score_, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--stacked", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    return cli(lambda: run(load_config(args.config), args.stacked, args.out))


if __name__ == "__main__":
    sys.exit(main())
