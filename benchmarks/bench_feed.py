"""Benchmark: our training feed (decode from files + augment, PyDataset workers) vs bare
``model.fit`` on in-memory arrays of the same decoded images, same model, same batches.

    python -m benchmarks.bench_feed --images data/demo/train --n 1024 --out build/bench/feed.json

Both sides first run one warm-up epoch (graph tracing), then ``--epochs`` timed epochs;
img/s = images seen / seconds. Goal: ratio ours/baseline >= 0.90, i.e. the feed keeps the
CPU busy with the model rather than with JPEG/PNG decoding.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_json_atomic


def run(images: Path, n: int, size: int, backbone: str, batch: int, epochs: int) -> dict:
    import keras

    from pipeline.data.contract import read_labels
    from pipeline.models.backbones import build_model
    from pipeline.models.losses import MaskedMultiLabelLoss
    from pipeline.runtime.images import load_image
    from pipeline.train.fold import make_feed

    table = read_labels(images)
    paths = table.paths()[:n]
    y = table.y[:n]
    n = len(paths)
    n = n - n % batch
    order = np.arange(n)

    def fresh_model():
        keras.utils.set_random_seed(0)
        m = build_model(backbone, y.shape[1], size, width=16)
        m.compile(keras.optimizers.Adam(1e-3), MaskedMultiLabelLoss())
        return m

    def timed(fit_once) -> float:
        fit_once()  # warm-up: tracing, thread pools
        t0 = time.perf_counter()
        for _ in range(epochs):
            fit_once()
        return n * epochs / (time.perf_counter() - t0)

    model = fresh_model()
    ours = timed(
        lambda: model.fit(
            make_feed(paths, y, size, batch, order=order, augment_seed=1), epochs=1, verbose=0
        )
    )
    x = np.stack([load_image(p, size) for p in paths[:n]]).astype(np.float32)
    yy = np.nan_to_num(y[:n], nan=-1.0).astype(np.float32)
    model = fresh_model()
    baseline = timed(lambda: model.fit(x, yy, batch_size=batch, epochs=1, verbose=0, shuffle=False))
    return {
        "ours": ours,
        "baseline": baseline,
        "ratio": ours / baseline,
        "images": n,
        "size": size,
        "backbone": backbone,
        "batch_size": batch,
        "epochs_timed": epochs,
        "cpu_count": os.cpu_count(),
        "backend": keras.backend.backend(),
        "note": "ours decodes PNGs and augments (crop/flip/stretch) every epoch; "
        "baseline fits pre-decoded arrays without augmentation",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=Path("data/demo/train"))
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--backbone", default="small_cnn")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("build/bench/feed.json"))
    args = ap.parse_args(argv)
    r = run(args.images, args.n, args.size, args.backbone, args.batch_size, args.epochs)
    write_json_atomic(args.out, r)
    print(
        f"bench-feed: ours {r['ours']:.0f} img/s, bare model.fit {r['baseline']:.0f} img/s, "
        f"ratio {r['ratio']:.2f} ({r['backbone']}, {r['size']}px, {r['backend']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
