"""`make twoflow`: fit the Two-Flow base model for one CNN fold; write its OOF + test predictions.

The output has the CNN prediction-file format, so `make stack` takes
``preds/twoflow.fold<k>.npz`` like any backbone's ``preds/<backbone>.fold<k>.npz``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import load_config
from stages.common import CACHE_HELP, add_fold_model_args, cli


def run(
    cfg,
    backbone: str,
    fold: int,
    folds_csv: Path,
    embedding: Path,
    out: Path,
    n_components: int | None = None,
    pixel_size: int | None = None,
    n_trees: int | None = None,
    top_features: int | None = None,
    seed: int | None = None,
    model_out: Path | None = None,
    image_cache: Path | None = None,
) -> dict:
    """Fit one fold's Two-Flow model; unset sizes come from the config's ``[twoflow]``."""
    from pipeline.data.image_cache import open_cache
    from pipeline.members.twoflow import TwoFlowModel, run_twoflow_fold

    t = cfg.twoflow
    n_components = t.n_components if n_components is None else n_components
    pixel_size = t.pixel_size if pixel_size is None else pixel_size
    n_trees = t.n_trees if n_trees is None else n_trees
    top_features = t.top_features if top_features is None else top_features

    model = TwoFlowModel(
        n_components=n_components,
        pixel_size=pixel_size,
        n_trees=n_trees,
        top_features=top_features,
        seed=cfg.train.fold_seed(fold) if seed is None else seed,
    )
    return run_twoflow_fold(
        cfg,
        backbone,
        fold,
        folds_csv,
        embedding,
        out,
        model=model,
        model_out=model_out,
        cache=open_cache(image_cache),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    add_fold_model_args(ap, "are flow 2")
    ap.add_argument("--image-cache", type=Path, help=CACHE_HELP)
    ap.add_argument("--n-components", type=int, default=None, help="pixel random projections")
    ap.add_argument("--pixel-size", type=int, default=None, help="pixel thumbnail side")
    ap.add_argument("--n-trees", type=int, default=None, help="trees per label forest")
    ap.add_argument("--top-features", type=int, default=None, help="features kept by importance")
    ap.add_argument("--seed", type=int, default=None, help="default: train.seed * 1000 + fold")
    ap.add_argument(
        "--model-out", type=Path, default=None, help="also save the fitted model (joblib)"
    )
    args = ap.parse_args(argv)
    return cli(
        lambda: run(
            load_config(args.config),
            args.backbone,
            args.fold,
            args.folds,
            args.embedding,
            args.out,
            args.n_components,
            args.pixel_size,
            args.n_trees,
            args.top_features,
            args.seed,
            args.model_out,
            args.image_cache,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
