"""`make stack`: per-label epoch selection on OOF -> per-label XGBoost stacker.

Writes ``stacked.npz`` (stacked OOF and, per CNN fold, stacked test probabilities),
``selection.json``, the XGBoost models (JSON) and ``predict.json`` (what `make predict`
and `make serve` read instead of recomputing: each base model's best epoch and OOF
thresholds, the columns the second level reads) beside it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from pipeline.artifacts import (
    MEMBER_SCORES,
    PREDICT_MANIFEST,
    SELECTION_FILE,
    save_member_scores,
    save_predict_manifest,
    save_selection,
    save_stacked,
)
from pipeline.config.schema import Config, load_config
from stages.common import cli

log = logging.getLogger("stages.stack")


def make_stacker(cfg: Config, features=None, client=None):
    """The per-label XGBoost stacker as the config describes it."""
    from pipeline.ensemble.stack import PerLabelXGBStacker

    s = cfg.stack
    return PerLabelXGBStacker(
        features_per_label=features,
        eta=s.eta,
        max_depth=s.max_depth,
        min_child_weight=s.min_child_weight,
        n_estimators=s.n_estimators,
        early_stopping_rounds=s.early_stopping_rounds,
        n_folds=s.n_folds,
        beta=cfg.thresholds.beta,
        threshold_step=cfg.thresholds.step,
        seed=s.seed,
        n_jobs=s.n_jobs,
        client=client,
        search=s.search,
        halving_factor=s.halving_factor,
        halving_min_rows=s.halving_min_rows,
        max_bin=s.max_bin,
    )


def make_second_level_combiners(cfg: Config, columns) -> dict:
    """The config's candidate combiners over ``columns`` (``[stack] combiners``)."""
    from pipeline.ensemble.second_level import make_combiners

    s, t = cfg.stack, cfg.thresholds
    return make_combiners(
        s.combiners,
        columns,
        stacker=make_stacker(cfg),
        top_n=s.top_n,
        corr_threshold=s.corr_threshold,
        beta=t.beta,
        step=t.step,
        inner_folds=s.n_folds,
        seed=s.seed,
        logistic_c=s.logistic_c,
    )


def run(cfg: Config, preds, out: Path, client=None) -> None:
    from threadpoolctl import threadpool_limits

    from pipeline.data.contract import read_labels
    from pipeline.ensemble.predict_manifest import build_manifest, fold_losses, member_records
    from pipeline.ensemble.second_level import fit_second_level
    from pipeline.ensemble.select import group_pred_files, load_base_predictions

    s, t = cfg.stack, cfg.thresholds
    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    files = group_pred_files(preds)
    base = load_base_predictions(files, table.ids)
    n, n_cols, n_labels = base.oof.shape
    combiners = make_second_level_combiners(cfg, base.columns)
    # one BLAS thread per process: Make runs stages side by side on few cores, and threaded
    # BLAS under contention made the small logistic fits ~10x slower (measured)
    with threadpool_limits(limits=1):
        level = fit_second_level(
            base.oof,
            table.y,
            base.columns,
            base.labels,
            combiners,
            rules=s.rules,
            outer_folds=s.outer_folds,
            mode=s.mode,
            beta=t.beta,
            step=t.step,
            shrink=s.shrink,
            seed=s.seed,
            n_boot=s.n_boot,
            client=client,
            incumbent=tuple(s.incumbent.split("/", 1)) if s.incumbent else None,
        )
        names = list(level.combiners)
        k = base.test.shape[0]
        cand_oof = np.stack([level.combiners[c].oof_ for c in names]).astype(np.float32)
        cand_test = np.stack(
            [
                np.stack([level.combiners[c].predict_proba(base.test[f]) for f in range(k)])
                for c in names
            ]
        ).astype(np.float32)
    pick = np.array([names.index(c) for c, _ in level.choice])
    labels_idx = np.arange(n_labels)
    oof = cand_oof[pick, :, labels_idx].T
    test = cand_test[pick, :, :, labels_idx].transpose(1, 2, 0)
    oof = np.where(np.isnan(table.y), np.nan, oof).astype(np.float32)
    level.save(out.parent / "models")
    # every combiner refitted on all rows made this same selection (one rule, all OOF rows)
    selection = next(iter(level.combiners.values())).selection_
    save_selection(out.parent / SELECTION_FILE, selection.to_dict(base.labels), level.report)
    records = member_records(base, table.y, t.beta, t.step, t.average, fold_losses(files))
    save_member_scores(out.parent / MEMBER_SCORES, records)
    save_predict_manifest(
        out.parent / PREDICT_MANIFEST, build_manifest(base, table.y, level, records)
    )
    save_stacked(
        out,
        labels=base.labels,
        train_ids=table.ids,
        test_ids=base.test_ids,
        y=table.y,
        oof=oof,
        test=test,
        combiners=names,
        candidates_oof=cand_oof,
        candidates_test=cand_test,
        choice_combiner=pick,
        choice_rule=[r for _, r in level.choice],
    )
    log.info(
        "stack: %d labels, %d base columns, %d CNN folds; chosen %s -> %s",
        n_labels,
        n_cols,
        k,
        ", ".join(sorted({f"{c}/{r}" for c, r in level.choice})),
        out,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--preds", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    client = None
    if os.environ.get("DASK_SCHEDULER"):
        from pipeline.distributed import connect

        client = connect(os.environ["DASK_SCHEDULER"])
    return cli(lambda: run(load_config(args.config), args.preds, args.out, client))


if __name__ == "__main__":
    sys.exit(main())
