"""`make bench-predict`: how fast a finished run labels one image.

- ``predict_cold_s``: ``make predict IMAGE=<one test image>`` in a fresh process (Make's
  parse + the stage: imports, opening the export's networks, one ensemble prediction), the
  median of ``repeats`` runs; ``predict_stage_s`` is ``python -m stages.predict`` without
  Make; ``import_runtime_s`` is ``python -c "import numpy, cv2, onnxruntime"`` (the
  runtime's imports) and ``import_tf_s`` ``python -c "import keras"`` (what the Keras
  predictor paid before the export, and no longer part of a prediction).
- ``serve_start_s``: ``python -m stages.serve`` until the page answers (the export loaded
  and warmed up); ``serve_p50_s`` / ``serve_p95_s``: the page's warm per-image latency of
  the ensemble over ``requests`` one-image uploads (client side, loopback);
  ``serve_batch_per_image_s``: one request of 8 uploads, divided by 8.
- ``inproc_*``: the same ensemble prediction of one image in this process, warm, p50 of
  ``requests``: the export (``inproc_export_p50_s``) against the build's Keras predictor
  with every fold model of a size fused in one traced graph (``inproc_keras_p50_s``), so
  the ratio is measured in one run on one machine.

The run must be finished and exported (``make all export``): the benchmark refuses to start
a build.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmarks.bench_predict")


def timed_command(cmd: list[str], timeout: float = 600) -> float:
    """Wall seconds of ``cmd`` run in the repository root; a failure raises with its stderr."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return dt


def _make_vars(config: Path, build: Path) -> list[str]:
    venv = Path(sys.executable).parents[1]
    return [f"CONFIG={config}", f"BUILD={build}", f"VENV={venv}"]


def _test_images(config: Path, n: int) -> list[Path]:
    from pipeline.config.schema import load_config
    from pipeline.data.contract import image_paths, read_test_ids

    cfg = load_config(config)
    ids, test_dir = read_test_ids(cfg.data.test_dir, cfg.data.id_column, False)
    return list(image_paths(ids[:n], test_dir))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_serve(config: Path, build: Path, requests: int = 50) -> dict:
    """Start the page, time its start, then ``requests`` one-image ensemble requests."""
    from pipeline.serve import post_images

    images = [(p.name, p.read_bytes()) for p in _test_images(config, 8)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "stages.serve", "--config", str(config), "--build", str(build)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the page exited ({proc.returncode}): {proc.stderr.read()}")
            try:
                with urllib.request.urlopen(url + "/", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
            if time.perf_counter() - t0 > 900:
                raise RuntimeError("the page did not answer in 900 s")
        start_s = time.perf_counter() - t0
        lat = []
        for i in range(requests):
            t = time.perf_counter()
            post_images(url, [images[i % len(images)]], timeout=120)
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        post_images(url, images, timeout=300)
        batch_s = (time.perf_counter() - t) / len(images)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {
        "serve_start_s": round(start_s, 2),
        "serve_p50_s": round(float(np.percentile(lat, 50)), 4),
        "serve_p95_s": round(float(np.percentile(lat, 95)), 4),
        "serve_requests": requests,
        "serve_batch_per_image_s": round(batch_s, 4),
    }


def p50(fn, n: int) -> float:
    """The median seconds of ``n`` calls of ``fn``."""
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return round(float(np.percentile(lat, 50)), 4)


def measure_in_process(config: Path, build: Path, image: Path, requests: int) -> dict:
    """Warm one-image ensemble latency in this process: the export against the build's
    Keras predictor (fused graph), and the largest difference of their probabilities."""
    from pipeline.config.schema import load_config
    from pipeline.predict import Predictor
    from pipeline.runtime.exported import decode, load

    img = decode(image)
    exported = load(build / "export")
    exported.warm_up(img)
    keras_pred = Predictor(load_config(config), build, compiled=True)
    keras_pred.warm_up(img)
    diff = np.abs(
        exported.predict([img])[0].probabilities - keras_pred.predict([img])[0].probabilities
    ).max()
    export_s = p50(lambda: exported.predict([img]), requests)
    keras_s = p50(lambda: keras_pred.predict([img]), requests)
    return {
        "inproc_export_p50_s": export_s,
        "inproc_keras_p50_s": keras_s,
        "inproc_speedup": round(keras_s / export_s, 2),
        "inproc_max_abs_diff": float(diff),
        "n_networks": len(exported.manifest["nets"]),
    }


def measure(config: Path, build: Path, repeats: int = 3, requests: int = 50) -> dict:
    """``predict_cold_s``, ``serve_p50_s``, ``serve_p95_s`` (and their parts) of a run."""
    config, build = Path(config), Path(build)
    make_vars = _make_vars(config, build)
    for target, how in (("report/index.html", "all"), ("export/manifest.json", "export")):
        up_to_date = subprocess.run(
            ["make", "-q", f"{build}/{target}", *make_vars], cwd=ROOT, capture_output=True
        )
        if up_to_date.returncode != 0:
            raise RuntimeError(
                f"{build}/{target} is missing or out of date; `make {how} CONFIG={config}` "
                "first (the benchmark does not build one)"
            )
    image = _test_images(config, 1)[0]
    predict = ["make", "--no-print-directory", "predict", *make_vars, f"IMAGE={image}"]
    stage = [sys.executable, "-m", "stages.predict", "--export", str(build / "export")]
    cold = [timed_command(predict) for _ in range(repeats)]
    stage_s = [timed_command([*stage, "--image", str(image)]) for _ in range(repeats)]
    tf_s = [timed_command([sys.executable, "-c", "import keras"]) for _ in range(repeats)]
    runtime_s = [
        timed_command([sys.executable, "-c", "import numpy, cv2, onnxruntime"])
        for _ in range(repeats)
    ]
    out = {
        "config": str(config),
        "build": str(build),
        "image": str(image),
        "predict_cold_s": round(statistics.median(cold), 2),
        "predict_cold_runs_s": [round(t, 2) for t in cold],
        "predict_stage_s": round(statistics.median(stage_s), 2),
        "import_tf_s": round(statistics.median(tf_s), 2),
        "import_runtime_s": round(statistics.median(runtime_s), 2),
        **measure_in_process(config, build, image, requests),
        **measure_serve(config, build, requests),
        "cpus": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline.artifacts import write_json_atomic

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    ap.add_argument("--build", type=Path, default=Path("build/demo"))
    ap.add_argument("--out", type=Path, default=Path("build/bench/predict.json"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = measure(args.config, args.build, args.repeats, args.requests)
    write_json_atomic(args.out, r)
    print(
        f"predict: make predict {r['predict_cold_s']:.2f} s cold (stage alone "
        f"{r['predict_stage_s']:.2f} s, runtime imports {r['import_runtime_s']:.2f} s); "
        f"in process export {r['inproc_export_p50_s'] * 1000:.0f} ms vs Keras "
        f"{r['inproc_keras_p50_s'] * 1000:.0f} ms ({r['inproc_speedup']:.1f}x); page start {r['serve_start_s']:.1f} s, per image "
        f"p50 {r['serve_p50_s'] * 1000:.0f} ms, p95 {r['serve_p95_s'] * 1000:.0f} ms, "
        f"batch of 8 {r['serve_batch_per_image_s'] * 1000:.0f} ms/image -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
