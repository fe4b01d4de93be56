"""`make stack`: per-label epoch selection on OOF -> per-label XGBoost stacker.

Writes ``stacked.npz`` (stacked OOF and, per CNN fold, stacked test probabilities),
``selection.json`` and the XGBoost models (JSON) beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from pipeline.config import Config, load_config
from pipeline.data import save_npz_atomic, write_text_atomic
from stages.common import cli, group_pred_files

log = logging.getLogger("stages.stack")


def make_stacker(cfg: Config, features, client=None):
    """The per-label XGBoost stacker as the config describes it."""
    from pipeline.stack import PerLabelXGBStacker

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
    )


def run(cfg: Config, preds, out: Path, client=None) -> None:
    from pipeline.data import read_labels
    from pipeline.select import feature_indices, load_base_predictions, select_columns

    s = cfg.stack
    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    base = load_base_predictions(group_pred_files(preds), table.ids)
    n, n_cols, n_labels = base.oof.shape
    selection = select_columns(
        base.oof,
        table.y,
        base.columns,
        beta=cfg.thresholds.beta,
        top_n=s.top_n,
        corr_threshold=s.corr_threshold,
        step=cfg.thresholds.step,
    )
    features = feature_indices(selection.indices, n_labels)
    stacker = make_stacker(cfg, features, client)
    stacker.fit(base.oof.reshape(n, n_cols * n_labels), table.y)
    k = base.test.shape[0]
    m = base.test.shape[1]
    test = np.stack(
        [stacker.predict_proba(base.test[f].reshape(m, n_cols * n_labels)) for f in range(k)]
    ).astype(np.float32)
    stacker.save(out.parent / "models", labels=base.labels)
    sel = selection.to_dict(base.labels)
    write_text_atomic(out.parent / "selection.json", json.dumps(sel, indent=2) + "\n")
    save_npz_atomic(
        out,
        labels=np.asarray(base.labels),
        train_ids=table.ids.astype(str),
        test_ids=np.asarray(base.test_ids).astype(str),
        y=table.y,
        oof=stacker.oof_.astype(np.float32),
        test=test,
    )
    log.info("stack: %d labels, %d base columns, %d CNN folds -> %s", n_labels, n_cols, k, out)


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
