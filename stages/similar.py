"""`make similar`: build, query and evaluate the cosine similarity index over CNN embeddings.

    python -m stages.similar build --config C --embedding EMB.npz --out INDEX.npz
    python -m stages.similar query --index INDEX.npz --image PATH --k 10
    python -m stages.similar evaluate --index INDEX.npz --embedding EMB.npz --config C \
        --k 10 --out METRICS.json

``--embedding`` is a CNN fold's embedding file (`make embed-cnn`:
``build/<name>/embed/cnn.<backbone>.fold<k>.npz``); without it, ``build`` indexes raw
pixels. The database is the training set (the file's training rows); ``evaluate`` queries
with the test images (the file's test rows) and their ``data.test_truth`` labels and
compares precision@k with a raw-pixel baseline. ``query`` embeds a new image with the
checkpoint the file came from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config.schema import Config, load_config
from stages.common import CACHE_HELP, cli


def build(
    cfg: Config,
    embedding: Path | None,
    out: Path,
    pixel_size: int = 16,
    image_cache: Path | None = None,
) -> None:
    """Index every training image by its ``embedding`` file row (raw pixels when None)."""
    from pipeline.data.image_cache import open_cache
    from pipeline.similar import index_training_set

    index_training_set(cfg, embedding, pixel_size, open_cache(image_cache)).save(out)


def query(index_path: Path, image: Path, k: int) -> list[tuple[str, float]]:
    """The ``k`` most similar indexed images to ``image``, best first, printed ``id score``."""
    from pipeline.similar import SimilarityIndex

    if not image.is_file():
        raise FileNotFoundError(f"{image} does not exist; give an image file")
    index = SimilarityIndex.load(index_path)
    rows, scores = index.search(index.embed([image]), k)
    out = [(str(index.ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True)]
    for image_id, score in out:
        print(f"{image_id} {score:.4f}")
    return out


def evaluate(
    cfg: Config,
    index_path: Path,
    k: int,
    out: Path,
    embedding: Path | None = None,
    pixel_size: int = 16,
    image_cache: Path | None = None,
    folds: Path | None = None,
    held_out_fold: int = 0,
) -> dict:
    """precision@k (Jaccard >= 0.5) of the index vs raw pixels, test images as queries
    (a model index: their rows of ``embedding``, the file the index was built from);
    without test labels, fold ``held_out_fold``'s training rows of ``folds``."""
    from pipeline.artifacts import save_similarity_metrics
    from pipeline.data.image_cache import open_cache
    from pipeline.similar import evaluate_on_test_set

    cache = open_cache(image_cache)
    result = evaluate_on_test_set(
        cfg, index_path, k, embedding, pixel_size, cache, folds, held_out_fold
    )
    save_similarity_metrics(out, result)
    print(f"precision@{k} model  {result['model_precision_at_k']:.4f}")
    print(f"precision@{k} pixels {result['pixels_precision_at_k']:.4f}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    emb_help = "a CNN fold's embedding file (make embed-cnn)"
    b = sub.add_parser("build", help="index the training images")
    b.add_argument("--config", type=Path, required=True)
    b.add_argument("--embedding", type=Path, help=emb_help + "; omit for raw pixels")
    b.add_argument("--out", type=Path, required=True, help="index .npz")
    b.add_argument("--pixel-size", type=int, default=16)
    b.add_argument("--image-cache", type=Path, help=CACHE_HELP)
    q = sub.add_parser("query", help="print the k most similar training images: id score")
    q.add_argument("--index", type=Path, required=True)
    q.add_argument("--image", type=Path, required=True)
    q.add_argument("--k", type=int, default=10)
    e = sub.add_parser("evaluate", help="precision@k vs a raw-pixel baseline on the test set")
    e.add_argument("--index", type=Path, required=True)
    e.add_argument("--embedding", type=Path, help=emb_help + " the index was built from")
    e.add_argument("--config", type=Path, required=True)
    e.add_argument("--k", type=int, default=10)
    e.add_argument("--out", type=Path, required=True, help="metrics .json")
    e.add_argument("--pixel-size", type=int, default=16)
    e.add_argument("--image-cache", type=Path, help=CACHE_HELP)
    e.add_argument(
        "--folds", type=Path, help="the folds CSV: without data.test_truth, a fold is the queries"
    )
    e.add_argument(
        "--held-out-fold", type=int, default=0, help="the fold the index's checkpoint held out"
    )
    args = ap.parse_args(argv)
    if args.command == "build":
        return cli(
            lambda: build(
                load_config(args.config),
                args.embedding,
                args.out,
                args.pixel_size,
                args.image_cache,
            ),
        )
    if args.command == "query":
        return cli(tensorflow=True, body=lambda: query(args.index, args.image, args.k))
    return cli(
        lambda: evaluate(
            load_config(args.config),
            args.index,
            args.k,
            args.out,
            args.embedding,
            args.pixel_size,
            args.image_cache,
            args.folds,
            args.held_out_fold,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
