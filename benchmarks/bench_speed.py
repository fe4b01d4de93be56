"""Benchmark: how long the demo's whole chain takes, and how often it decodes an image.

    python -m benchmarks.bench_speed --config configs/demo.toml --out build/bench/speed.json

``make clean`` of the config's build (data, folds and converted weights kept: the demo data
is brought up to date before the clock starts), then a timed ``make all``. Writes
``make_all_s`` (wall time), ``train_cnn_s`` (first fold job's start to the last one's end),
``stage_s`` (per stage: summed seconds of its runs and their span), ``decodes_per_image``
(file decodes of a training image over the whole run / training images, counted by
``pipeline.runtime.images.decode_image`` through ``FASHION_COUNT_DECODES``) and the held-out scores
of the run (so a faster chain is seen to score the same). Then ``make export``
(off the clock, its wall time as ``export_s``) and, if ``benchmarks/bench_predict.py`` is
there, its ``measure(config, build)`` keys (predict_cold_s, serve_p50_s, serve_p95_s) are
merged. Prints one line.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from pipeline.artifacts import load_metrics, write_json_atomic
from pipeline.data.contract import read_labels
from pipeline.runtime.images import COUNT_DECODES_ENV
from stages.common import STAGE_TIMES_ENV


def _make(args: list[str], env: dict, log) -> None:
    cmd = ["make", *args]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {done.returncode}); see {log.name}")


def stage_times(path: Path) -> dict[str, dict[str, float]]:
    """Per stage: ``runs``, summed ``seconds`` and ``span_s`` (first start to last end)."""
    runs = defaultdict(list)
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            runs[r["stage"]].append((r["start"], r["end"]))
    return {
        stage: {
            "runs": len(t),
            "seconds": round(sum(e - s for s, e in t), 1),
            "span_s": round(max(e for _, e in t) - min(s for s, _ in t), 1),
        }
        for stage, t in sorted(runs.items())
    }


def decode_counts(path: Path, train_dir: Path, test_dir: Path, augment_dir: Path) -> dict:
    """Decodes per image of the training set, the test set and the augmented copies."""
    lines = path.read_text().splitlines() if path.is_file() else []
    out = {}
    for name, folder in (("train", train_dir), ("test", test_dir), ("augment", augment_dir)):
        folder = os.path.abspath(folder) + os.sep
        files = os.listdir(folder) if os.path.isdir(folder) else []
        n = sum(1 for line in lines if line.startswith(folder))
        out[name] = {"images": len(files), "decodes": n}
    return out


def measure(config: Path, venv: str, work: Path) -> dict:
    """Clean build, timed ``make all``; the numbers of :mod:`benchmarks.bench_speed`."""
    from pipeline.config.schema import load_config

    cfg = load_config(config)
    build = Path("build") / config.stem
    work.mkdir(parents=True, exist_ok=True)
    decodes, stages = work / "decodes.txt", work / "stages.jsonl"
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    make_vars = [f"CONFIG={config}", f"VENV={venv}"]
    with open(work / "make.log", "w") as log:
        _make(["clean", *make_vars], env, log)
        if cfg.demo.out_dir and Path(cfg.data.train_dir) == Path(cfg.demo.out_dir) / "train":
            _make(["demo-data", *make_vars], env, log)  # "data kept": not part of the clock
        decodes.unlink(missing_ok=True)
        stages.unlink(missing_ok=True)
        env.update({COUNT_DECODES_ENV: str(decodes.resolve()), STAGE_TIMES_ENV: str(stages)})
        t0 = time.perf_counter()
        _make(["all", *make_vars], env, log)
        wall = time.perf_counter() - t0
    per_stage = stage_times(stages)
    counts = decode_counts(
        decodes,
        Path(cfg.data.train_dir) / "images",
        Path(cfg.data.test_dir) / "images",
        build / "augment" / "images",
    )
    n_train = len(read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False).ids)
    metrics = load_metrics(build / "report" / "metrics.json")
    models = metrics["models"]
    return {
        "config": str(config),
        "cores": os.cpu_count(),
        "make_all_s": round(wall, 1),
        "train_cnn_s": per_stage.get("train_cnn", {}).get("span_s"),
        "decodes_per_image": round(counts["train"]["decodes"] / n_train, 3),
        "decodes": counts,
        "stage_s": per_stage,
        "vote_test_f2": models["vote"]["test_fbeta_macro"],
        "stack_test_f2": models["stack"]["test_fbeta_macro"],
        "log": str(work / "make.log"),
    }


def export_seconds(config: Path, venv: str, work: Path) -> float:
    """``make export`` after the timed ``make all`` (what ``make predict`` reads); its wall time."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    with open(work / "make.log", "a") as log:
        t0 = time.perf_counter()
        _make(["export", f"CONFIG={config}", f"VENV={venv}"], env, log)
        return round(time.perf_counter() - t0, 1)


def predict_timings(config: Path, build: Path) -> dict:
    """``benchmarks.bench_predict.measure(config, build)`` when that benchmark exists."""
    if importlib.util.find_spec("benchmarks.bench_predict") is None:
        return {}
    return dict(importlib.import_module("benchmarks.bench_predict").measure(config, build))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    ap.add_argument("--out", type=Path, default=Path("build/bench/speed.json"))
    ap.add_argument("--venv", default=os.environ.get("VENV", ".venv"))
    args = ap.parse_args(argv)
    work = args.out.with_suffix("")  # build/bench/speed/: make log, decode + stage records
    try:
        result = measure(args.config, args.venv, work)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, result)  # the clock's numbers survive a failing export
        result["export_s"] = export_seconds(args.config, args.venv, work)
        result.update(predict_timings(args.config, Path("build") / args.config.stem))
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, result)
    extra = "".join(
        f", {k} {result[k]:.2f}s" for k in ("predict_cold_s", "serve_p50_s") if k in result
    )
    print(
        f"speed[{args.config.stem}]: make all {result['make_all_s']:.0f}s on {result['cores']} "
        f"cores, train-cnn {result['train_cnn_s']:.0f}s, {result['decodes_per_image']:.2f} "
        f"decodes per training image, vote F2 {result['vote_test_f2']:.4f}{extra} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
