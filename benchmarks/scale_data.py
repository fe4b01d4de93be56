"""Synthetic base-model predictions at competition scale, in the project's file formats.

The JD AI Fashion-Challenge had 54,908 training and 10,000 test images, 13 labels with 104
to 49,893 positives, and hundreds of CNN members. :func:`generate` writes a stand-in that
the second-level stages read exactly as they read a real run's files: ``labels.csv``,
``test.csv``, a test-truth CSV, a folds CSV and, per member and fold,
``preds/<member>.fold<k>.npz`` with per-epoch OOF and test predictions.

How a prediction is made (row i, label j, member m, epoch e, logit scale):

    z = logit(prev_j) + s_m * g_e * (2 y_ij - 1)
        + sigma * (rho * d_ij + sqrt(1 - rho^2) * (w * u_mij + sqrt(1 - w^2) * v_meij))

- ``prev_j``: per-label prevalence, log-spaced between the JD table's extremes
  (104 / 54,908 and 49,893 / 54,908); positives are placed exactly (``round(prev * n)``).
- ``s_m``: member strength, log-spaced 0.5 .. 1.6 (members of varied strength).
- ``g_e``: learning curve over epochs (rises, then drifts down a little: over-fitting).
- ``d_ij``: an error every member shares (hard images): correlated errors, ``rho``.
- ``u_mij``: member m's own error, kept across its epochs (``w``), ``v_meij`` per epoch,
  so epochs of one member are highly correlated and members less so.
- A test row's prediction by fold k's model adds a fold-specific part to ``u``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import save_fold_predictions, write_csv_atomic

JD_N_TRAIN = 54_908
JD_POSITIVES = (104, 49_893)

#: The JD winner's XGBoost grid, and the second level a competitor runs at that size
#: (the constants bench_scale and scale_checks share)
JD_GRID = {
    "eta": [0.025, 0.05, 0.1, 0.2],
    "max_depth": [2, 3, 4, 5, 6, 7, 8, 9, 10],
    "min_child_weight": [1, 2, 4, 8, 16],
}
SCALE_STACK = {
    **JD_GRID,
    "search": "halving",
    "halving_factor": 3,
    "halving_min_rows": 500,
    "max_bin": 64,
    "n_estimators": 400,
    "early_stopping_rounds": 30,
    "top_n": 6,
    "n_folds": 5,
    "outer_folds": 3,
    "n_jobs": 2,
    # Caruana's bagged hill-climbing, inside its inner CV inside the outer CV, costs ~36
    # ensemble selections per label: at 55k rows that alone passes the 30-minute budget
    "combiners": ["xgb", "logistic_own", "logistic_all", "mean_top", "mean_members"],
    "seed": 11,
}


def jd_prevalences(n_labels: int = 13) -> np.ndarray:
    """Per-label prevalences log-spaced between the JD table's rarest and commonest label."""
    lo, hi = (p / JD_N_TRAIN for p in JD_POSITIVES)
    return np.geomspace(lo, hi, n_labels)


@dataclass(frozen=True)
class ScaleSpec:
    """The size of a synthetic run. ``n_test`` defaults to ``n_train / 5.5`` (JD's ratio)."""

    n_train: int
    n_test: int = 0
    n_labels: int = 13
    n_members: int = 16
    n_epochs: int = 8
    n_folds: int = 5
    seed: int = 0
    separation: float = 1.2
    sigma: float = 1.0
    rho: float = 0.6
    epoch_corr: float = 0.85

    @property
    def test_rows(self) -> int:
        return self.n_test or max(1, round(self.n_train / 5.5))


def exact_labels(n: int, prevalence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, L) 0/1 with exactly ``max(1, round(p * n))`` positives per label, placed at random."""
    y = np.zeros((n, len(prevalence)), dtype=np.int8)
    for j, p in enumerate(prevalence):
        k = min(n - 1, max(1, round(p * n)))
        y[rng.choice(n, k, replace=False), j] = 1
    return y


def learning_curve(n_epochs: int) -> np.ndarray:
    e = np.arange(1, n_epochs + 1)
    return (1 - 0.55 * np.exp(-e / 2.0)) * (1 - 0.02 * np.maximum(0, e - 5))


def generate(spec: ScaleSpec, out: Path) -> dict:
    """Write the synthetic run under ``out``; returns the paths (and the spec's numbers).

    Layout: ``data/train/labels.csv``, ``data/test/test.csv``, ``data/test_truth.csv``,
    ``folds.csv`` and ``preds/m<NN>.fold<k>.npz``. Deterministic for a spec.
    """
    out = Path(out)
    rng = np.random.default_rng(spec.seed)
    n, n_test, n_labels = spec.n_train, spec.test_rows, spec.n_labels
    prevalence = jd_prevalences(n_labels)
    labels = [f"label{j:02d}" for j in range(n_labels)]
    train_ids = np.array([f"tr{i:06d}" for i in range(n)])
    test_ids = np.array([f"te{i:06d}" for i in range(n_test)])
    y = exact_labels(n, prevalence, rng)
    y_test = exact_labels(n_test, prevalence, rng)
    fold = rng.permutation(np.arange(n) % spec.n_folds)

    data = out / "data"
    write_csv_atomic(
        pd.DataFrame({"image": train_ids, **{c: y[:, j] for j, c in enumerate(labels)}}),
        data / "train" / "labels.csv",
    )
    write_csv_atomic(pd.DataFrame({"image": test_ids}), data / "test" / "test.csv")
    write_csv_atomic(
        pd.DataFrame({"image": test_ids, **{c: y_test[:, j] for j, c in enumerate(labels)}}),
        data / "test_truth.csv",
    )
    write_csv_atomic(pd.DataFrame({"image": train_ids, "fold": fold}), out / "folds.csv")

    offset = np.log(prevalence / (1 - prevalence)).astype(np.float32)
    strength = rng.permutation(np.geomspace(0.5, 1.6, spec.n_members))
    curve = learning_curve(spec.n_epochs)
    w, rho, sigma = spec.epoch_corr, spec.rho, spec.sigma
    shared = rng.standard_normal((n, n_labels), dtype=np.float32)
    shared_test = rng.standard_normal((n_test, n_labels), dtype=np.float32)
    sign, sign_test = (2 * y - 1).astype(np.float32), (2 * y_test - 1).astype(np.float32)
    epochs = np.arange(1, spec.n_epochs + 1, dtype=np.int64)
    files = []
    for m in range(spec.n_members):
        member = f"m{m:02d}"
        own = rng.standard_normal((n, n_labels), dtype=np.float32)
        own_test = rng.standard_normal((n_test, n_labels), dtype=np.float32)
        base = offset + sigma * (rho * shared + np.sqrt(1 - rho**2) * w * own)
        base_test = offset + sigma * (rho * shared_test + np.sqrt(1 - rho**2) * w * own_test)
        noise_scale = sigma * np.sqrt(1 - rho**2) * np.sqrt(1 - w**2)
        oof = np.empty((spec.n_epochs, n, n_labels), dtype=np.float32)
        for e, g in enumerate(curve):
            z = base + strength[m] * g * spec.separation * sign
            z += noise_scale * rng.standard_normal((n, n_labels), dtype=np.float32)
            oof[e] = 1 / (1 + np.exp(-z))
        for k in range(spec.n_folds):
            rows = np.flatnonzero(fold == k)
            fold_part = 0.4 * rng.standard_normal((n_test, n_labels), dtype=np.float32)
            test = np.empty((spec.n_epochs, n_test, n_labels), dtype=np.float32)
            for e, g in enumerate(curve):
                z = base_test + strength[m] * g * spec.separation * sign_test
                z += noise_scale * (
                    fold_part + rng.standard_normal((n_test, n_labels), dtype=np.float32)
                )
                test[e] = 1 / (1 + np.exp(-z))
            path = out / "preds" / f"{member}.fold{k}.npz"
            loss = np.full(spec.n_epochs, np.nan, dtype=np.float32)
            save_fold_predictions(
                path, labels, train_ids[rows], test_ids, epochs, oof[:, rows], test, loss
            )
            files.append(path)
    return {
        "train_dir": data / "train",
        "test_dir": data / "test",
        "test_truth": data / "test_truth.csv",
        "folds": out / "folds.csv",
        "preds": files,
        "labels": labels,
        "prevalence": prevalence,
        "positives": y.sum(axis=0),
    }
