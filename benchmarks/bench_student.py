"""`make bench-student`: the distilled student against the ensemble, accuracy and speed.

    python -m benchmarks.bench_student --config C --build build/<name> \
        --out build/bench/student_<name>.json

Every held-out test image goes through the run's export (``make export``) three ways: the
ensemble (its labels are the submission's), the best single model (by OOF F2, as the report
names it) and the distilled student (``[student]``). Each is scored on the held-out truth
(macro F2 and F1 at its own thresholds: the student's reproduce the ensemble's test labels,
``pipeline.train.student.teacher_thresholds``), and the student's
F2 difference to each of the two with its paired bootstrap 95% interval over the images
(``pipeline.metrics.paired_bootstrap``, 1,000 resamples). Speed: the warm per-image
latency of one image in this process (p50 of ``requests``) for the ensemble and the
student, and the number of networks each runs. Prints one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def measure(config: Path, build: Path, requests: int = 30, n_boot: int = 1000) -> dict:
    from benchmarks.bench_predict import p50
    from pipeline.artifacts import load_metrics
    from pipeline.config.schema import STUDENT, load_config
    from pipeline.data.contract import image_paths, read_test_ids, read_test_truth
    from pipeline.metrics import fbeta_score, paired_bootstrap
    from pipeline.runtime.exported import ENSEMBLE, column_id, decode, load

    cfg = load_config(config)
    if not cfg.data.test_truth:
        raise ValueError(f"{config}: the student is scored on held-out truth (data.test_truth)")
    exported = load(build / "export")
    if STUDENT not in exported.model_names:
        raise ValueError(
            f"{build / 'export'} has no student: enable [student] in {config} and run `make export`"
        )
    best = load_metrics(build / "report" / "metrics.json")["best_single"]
    ids, test_dir = read_test_ids(cfg.data.test_dir, cfg.data.id_column, False)
    paths = list(image_paths(ids, test_dir))
    truth = read_test_truth(
        cfg.data.test_truth, exported.labels, cfg.data.id_column, [str(i) for i in ids]
    )
    y = truth.to_numpy(dtype=np.float64)
    images = [decode(p) for p in paths]
    preds = {}
    for name in (ENSEMBLE, best, STUDENT):
        rows = []
        for start in range(0, len(images), 16):
            rows += exported.predict(images[start : start + 16], name)
        preds[name] = np.stack([r.predicted for r in rows])
    beta = cfg.thresholds.beta
    out = {
        "config": str(config),
        "n_images": len(ids),
        "best_single": best,
        "student_detail": rows[0].detail,
        "models": {
            name: {
                "test_f2": fbeta_score(y, p, beta=beta, average="macro"),
                "test_f1": fbeta_score(y, p, beta=1.0, average="macro"),
            }
            for name, p in preds.items()
        },
    }
    for other in (ENSEMBLE, best):
        boot = paired_bootstrap(y, preds[STUDENT], preds[other], beta, n_boot, 0)
        key = "vs_vote" if other == ENSEMBLE else "vs_best_single"
        out[key] = {"gain": boot["gain"], "ci": [boot["low"], boot["high"]]}
    one = images[:1]
    for name in (ENSEMBLE, STUDENT):
        exported.predict(one, name)  # open the networks
        out["models"][name]["p50_s"] = round(
            p50(lambda n=name: exported.predict(one, n), requests), 5
        )
        keys = exported.base_columns(name)
        nets = {exported.manifest["columns"][column_id(key)]["net"] for key in keys}
        out["models"][name]["n_networks"] = len(nets)
    out["speedup"] = round(
        out["models"][ENSEMBLE]["p50_s"] / max(out["models"][STUDENT]["p50_s"], 1e-9), 1
    )
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline.artifacts import write_json_atomic

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    ap.add_argument("--build", type=Path, default=Path("build/demo"))
    ap.add_argument("--out", type=Path, default=Path("build/bench/student_demo.json"))
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args(argv)
    r = measure(args.config, args.build, args.requests)
    write_json_atomic(args.out, r)
    m, s = r["models"], r["models"]["student"]
    v, b = r["vs_vote"], r["vs_best_single"]
    print(
        f"student: held-out F2 {s['test_f2']:.4f} (vote {m['ensemble']['test_f2']:.4f}, "
        f"best single {r['best_single']} {m[r['best_single']]['test_f2']:.4f}); "
        f"student - vote {v['gain']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}], "
        f"student - best single {b['gain']:+.4f} [{b['ci'][0]:+.4f}, {b['ci'][1]:+.4f}]; "
        f"per image {s['p50_s'] * 1000:.1f} ms vs ensemble "
        f"{m['ensemble']['p50_s'] * 1000:.1f} ms ({r['speedup']}x) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
