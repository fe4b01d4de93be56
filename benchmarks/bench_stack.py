"""Benchmark: our selection + per-label XGBoost stack + thresholds + vote vs scikit-learn.

    python -m benchmarks.bench_stack --config configs/demo.toml --out build/bench/stack_vs_sklearn.json

Both sides see the same inputs: the CNN fold models' per-epoch OOF predictions for the
training rows and their per-fold test predictions (``make train-cnn`` output). Both are
scored on the held-out test truth (the demo has one), macro F-beta.

The scikit-learn baseline is ``MultiOutputClassifier(StackingClassifier(...))`` over all
OOF columns (every backbone x epoch x label), test features = the fold models' mean, with
thresholds 0.5 and thresholds tuned on its own cross-validated OOF predictions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_json_atomic
from pipeline.config.schema import load_config


def run(config: Path, build: Path) -> dict:
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.naive_bayes import GaussianNB

    from pipeline.data.contract import read_labels, read_test_truth
    from pipeline.ensemble.select import (
        feature_indices,
        flatten_columns,
        group_pred_files,
        load_base_predictions,
        select_columns,
    )
    from pipeline.ensemble.submit import fold_votes, majority_vote
    from pipeline.ensemble.thresholds import ThresholdSearch
    from pipeline.metrics import fbeta_score
    from stages.stack import make_stacker

    cfg = load_config(config)
    if not cfg.data.test_truth:
        raise ValueError(f"{config}: data.test_truth is needed to score on held-out data")
    beta, step, s = cfg.thresholds.beta, cfg.thresholds.step, cfg.stack
    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    preds = sorted((build / "preds").glob("*.fold*.npz"))
    if not preds:
        raise FileNotFoundError(f"no predictions under {build}/preds; run `make train-cnn`")
    base = load_base_predictions(group_pred_files(preds), table.ids)
    y = table.y
    y_test = read_test_truth(
        cfg.data.test_truth, base.labels, cfg.data.id_column, base.test_ids
    ).to_numpy(dtype=np.float64)
    n, n_cols, n_labels = base.oof.shape
    X = flatten_columns(base.oof)

    t0 = time.perf_counter()
    sel = select_columns(base.oof, y, base.columns, beta, s.top_n, s.corr_threshold, step)
    stacker = make_stacker(cfg, feature_indices(sel.indices, n_labels)).fit(X, y)
    th = ThresholdSearch(beta=beta, step=step, average=cfg.thresholds.average)
    th.fit(stacker.oof_, y)
    test_probs = np.stack([stacker.predict_proba(flatten_columns(t)) for t in base.test])
    ours_vote = majority_vote(fold_votes(test_probs, th.thresholds_), cfg.submit.tie)
    ours = fbeta_score(y_test, ours_vote, beta=beta)
    t_ours = time.perf_counter() - t0

    # scikit-learn: every OOF column, rows with unknown cells set to 0 (sklearn cannot mask)
    t0 = time.perf_counter()
    y0 = np.nan_to_num(y, nan=0.0).astype(int)
    stack = StackingClassifier(
        estimators=[("lr", LogisticRegression(max_iter=2000, C=0.5)), ("nb", GaussianNB())],
        final_estimator=LogisticRegression(max_iter=2000),
        cv=s.n_folds,
    )
    model = MultiOutputClassifier(stack)
    X_test = flatten_columns(base.test.mean(axis=0))
    model.fit(X, y0)
    p_test = np.stack([pr[:, 1] for pr in model.predict_proba(X_test)], axis=1)
    cv_oof = cross_val_predict(
        MultiOutputClassifier(stack), X, y0, cv=s.n_folds, method="predict_proba"
    )
    p_oof = np.stack([pr[:, 1] for pr in cv_oof], axis=1)
    tuned = ThresholdSearch(beta=beta, step=step, average=cfg.thresholds.average).fit(p_oof, y)
    sk_05 = fbeta_score(y_test, (p_test >= 0.5).astype(int), beta=beta)
    sk_tuned = fbeta_score(y_test, tuned.transform(p_test), beta=beta)
    t_sk = time.perf_counter() - t0
    best_sk = max(sk_05, sk_tuned)
    return {
        "config": str(config),
        "beta": beta,
        "ours_f": ours,
        "sklearn_f_threshold_0.5": sk_05,
        "sklearn_f_tuned": sk_tuned,
        "sklearn_f": best_sk,
        "difference": ours - best_sk,
        "ours_seconds": t_ours,
        "sklearn_seconds": t_sk,
        "n_train": int(n),
        "n_columns": int(n_cols),
        "labels": int(n_labels),
        "baseline": "MultiOutputClassifier(StackingClassifier([LogReg, GaussianNB] -> LogReg))",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    ap.add_argument("--build", type=Path, help="build dir (default build/<config name>)")
    ap.add_argument("--out", type=Path, default=Path("build/bench/stack_vs_sklearn.json"))
    args = ap.parse_args(argv)
    build = args.build or Path("build") / args.config.stem
    result = run(args.config, build)
    write_json_atomic(args.out, result)
    b = result["beta"]
    print(
        f"bench-stack: ours F{b:g} {result['ours_f']:.4f} vs sklearn {result['sklearn_f']:.4f} "
        f"(0.5: {result['sklearn_f_threshold_0.5']:.4f}, tuned: {result['sklearn_f_tuned']:.4f})"
        f", difference {result['difference']:+.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
