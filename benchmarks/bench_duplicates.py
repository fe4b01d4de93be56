"""How many copies of one photo a data set holds, and how much they inflate OOF scores.

    python -m benchmarks.bench_duplicates --data ../shared/data/clothing-attributes \\
        --embedding build/clothing_attributes/embed/mnv2_224.npz --out build/bench/dups_ca.json

Counts exact copies (same bytes) and near copies (pHash, :func:`pipeline.data.duplicates.near_pairs`),
then scores a cheap proxy of a member out of fold twice, with folds from plain iterative
stratification and from the duplicate-aware one (same seed): the frozen-feature heads of
``pipeline.members.frozen`` (standardised logistic regression, cosine kNN) on a frozen embedding
file when given, else on 16 px RGB pixels. Macro F2 at each label's OOF-best threshold;
the difference plain - grouped carries a paired bootstrap interval over images, and the
kNN head is repeated over several fold seeds (the spread from re-drawing folds alone).
No CNN is trained: this measures the leak, not the pipeline's final score.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.bench_duplicates")


def _features(table, embedding: Path | None) -> tuple[np.ndarray, str]:
    from pipeline.runtime.images import load_image

    if embedding is None:
        x = np.stack([load_image(p, 16).reshape(-1) for p in table.paths()]).astype(np.float32)
        return x, "16 px RGB pixels"
    from pipeline.artifacts import load_embeddings

    z = load_embeddings(embedding)
    ids = np.concatenate([z["train_ids"], z["test_ids"]])
    emb = np.concatenate([z["train"], z["test"]])
    row = {i: r for r, i in enumerate(ids)}
    missing = [i for i in table.ids if i not in row]
    if missing:
        raise ValueError(f"{embedding} lacks {len(missing)} id(s), e.g. {missing[0]!r}")
    return emb[[row[i] for i in table.ids]], f"{embedding.name} ({z['backbone']})"


def _oof(head_factory, x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    p = np.zeros(y.shape, dtype=np.float64)
    for k in np.unique(folds):
        tr, va = folds != k, folds == k
        p[va] = head_factory().fit(x[tr], y[tr]).predict_proba(x[va])
    return p


def _binary(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    from pipeline.metrics import best_threshold_fbeta

    out = np.zeros(y.shape, dtype=bool)
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        _, t = best_threshold_fbeta(y[known, j], p[known, j])
        out[:, j] = p[:, j] >= t
    return out


def run(data: Path, embedding: Path | None, near: int, seeds: int, out: Path | None) -> dict:
    from pipeline.artifacts import write_json_atomic
    from pipeline.data.contract import read_labels
    from pipeline.data.duplicates import copy_groups, validate_images
    from pipeline.data.folds import make_folds
    from pipeline.metrics import fbeta_score, paired_bootstrap
    from pipeline.runtime.heads import KNNHead, LogisticHead

    t0 = time.perf_counter()
    table = read_labels(data)
    paths = table.paths()
    prints = validate_images(paths, data / "labels.csv")
    exact, groups = copy_groups(paths, prints, near)
    hashing_s = time.perf_counter() - t0

    def multi(g):
        sizes = np.bincount(g)
        return int((sizes > 1).sum()), int(sizes[sizes > 1].sum())

    x, features = _features(table, embedding)
    y = table.y
    heads = {"logistic": lambda: LogisticHead(C=0.1), "knn": lambda: KNNHead(k=25)}
    result: dict = {
        "data": str(data),
        "images": len(y),
        "labels": len(table.labels),
        "near_duplicates": near,
        "exact_groups": multi(exact)[0],
        "exact_rows": multi(exact)[1],
        "groups": multi(groups)[0],
        "rows_in_groups": multi(groups)[1],
        "hashing_seconds": round(hashing_s, 2),
        "features": features,
        "heads": {},
    }
    for name, factory in heads.items():
        rows = []
        for s in range(seeds if name == "knn" else 1):
            seed = 42 + s
            plain = make_folds(y, 5, seed)
            grouped = make_folds(y, 5, seed, groups)
            bp = _binary(y, _oof(factory, x, y, plain))
            bg = _binary(y, _oof(factory, x, y, grouped))
            f_plain, f_grouped = fbeta_score(y, bp), fbeta_score(y, bg)
            boot = paired_bootstrap(y, bp, bg, n_boot=1000, seed=0)
            rows.append(
                {
                    "seed": seed,
                    "oof_f2_plain": round(f_plain, 4),
                    "oof_f2_grouped": round(f_grouped, 4),
                    "plain_minus_grouped": round(f_plain - f_grouped, 4),
                    "interval95": [round(boot["low"], 4), round(boot["high"], 4)],
                }
            )
            log.info("%s %s seed %d: %s", data.name, name, seed, rows[-1])
        d = np.array([r["plain_minus_grouped"] for r in rows])
        result["heads"][name] = {
            "runs": rows,
            "mean_plain_minus_grouped": round(float(d.mean()), 4),
            "sd_over_seeds": round(float(d.std(ddof=1)), 4) if len(d) > 1 else None,
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        write_json_atomic(out, result)
    h = result["heads"]
    print(
        f"{data.name}: {result['exact_groups']} exact groups ({result['exact_rows']} rows), "
        f"{result['groups']} groups with near copies ({result['rows_in_groups']} rows); "
        f"OOF F2 plain - grouped: logistic {h['logistic']['mean_plain_minus_grouped']:+.4f}, "
        f"knn {h['knn']['mean_plain_minus_grouped']:+.4f} (mean of {seeds} fold seeds)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    from stages.common import setup_logging

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="labels.csv + images/")
    ap.add_argument("--embedding", type=Path, default=None, help="frozen embedding .npz")
    ap.add_argument("--near", type=int, default=4, help="pHash bits of a near copy (-1: exact)")
    ap.add_argument("--seeds", type=int, default=5, help="fold seeds for the kNN head")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    setup_logging()
    run(args.data, args.embedding, args.near, args.seeds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
