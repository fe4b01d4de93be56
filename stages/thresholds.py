"""`make thresholds`: per-label threshold search on the stacked out-of-fold predictions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from pipeline.artifacts import load_stacked, save_thresholds
from pipeline.config.schema import Config, load_config, to_dict
from stages.common import cli

log = logging.getLogger("stages.thresholds")


def stacked_thresholds(cfg: Config, z) -> tuple[np.ndarray, str]:
    """(L,) thresholds for a stacked file: each label's chosen rule, fitted on its chosen
    combiner's OOF over all labels (as the nested CV scored it); micro/samples averaging
    couples labels, so it runs the coordinate-ascent search on the stacked OOF instead."""
    from pipeline.ensemble.second_level import chosen_thresholds
    from pipeline.ensemble.thresholds import ThresholdSearch

    t, s = cfg.thresholds, cfg.stack
    y, oof = z["y"], z["oof"]
    if t.average != "macro" or "candidates_oof" not in z:
        search = ThresholdSearch(beta=t.beta, step=t.step, average=t.average)
        return search.fit(np.nan_to_num(oof, nan=0.0), y).thresholds_, f"search ({t.average})"
    # the rate rule cuts the test rows: each candidate's mean over the CNN folds
    scored = z["candidates_test"].mean(axis=1)
    out = chosen_thresholds(
        y,
        z["candidates_oof"],
        z["choice_combiner"],
        z["choice_rule"],
        t.beta,
        t.step,
        s.shrink,
        scored,
    )
    pick, rules = z["choice_combiner"], z["choice_rule"]
    names = [f"{z['combiners'][c]}/{r}" for c, r in zip(pick, rules, strict=True)]
    return out, ", ".join(f"{n} x{names.count(n)}" for n in dict.fromkeys(names))


def run(cfg: Config, stacked: Path, out: Path) -> None:
    from pipeline.metrics import fbeta_per_label, fbeta_score

    z = load_stacked(stacked)
    labels = [str(s) for s in z["labels"]]
    y, oof = z["y"], z["oof"]
    known = ~np.isnan(oof)
    if not known[~np.isnan(y)].all():
        raise ValueError(
            f"{stacked}: stacked OOF has gaps where labels are known; rerun make stack"
        )
    thresholds, how = stacked_thresholds(cfg, z)
    t = cfg.thresholds
    pred = (np.nan_to_num(oof, nan=0.0) >= thresholds).astype(np.int8)
    per_label = fbeta_per_label(y, pred, beta=t.beta)
    score = fbeta_score(y, pred, beta=t.beta, average=t.average)
    save_thresholds(out, labels, thresholds, per_label, score, how, to_dict(t))
    log.info("thresholds (%s): OOF F%.3g (%s) = %.4f -> %s", how, t.beta, t.average, score, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--stacked", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    return cli(lambda: run(load_config(args.config), args.stacked, args.out))


if __name__ == "__main__":
    sys.exit(main())
