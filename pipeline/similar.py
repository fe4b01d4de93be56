"""Similar-garment search: exact cosine top-k over CNN embeddings, and its evaluation.

DESIGN "Beyond the seeds" (seed 000). Why exact search and no ANN library: a data set of
this tool's size (thousands to a few hundred thousand images, D of a few hundred) is one
BLAS matrix product per query batch, milliseconds per query, with no recall loss and no
index tuning. Embeddings are L2-normalised once, so cosine similarity is a dot product.

Evaluation (``precision_at_k``): a neighbour is relevant when the Jaccard overlap of its
positive-label set with the query's is at least 0.5, the retrieval criterion of the
Clothing Attribute Dataset work this follows. The raw-pixel baseline (L2-normalised
downsampled pixels) says how much of that the CNN features add over colour layout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.artifacts import save_npz_atomic
from pipeline.models.inference import downsample_pixels, embed

log = logging.getLogger(__name__)

KINDS = ("model", "pixels")


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero (similarity 0)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (n, D) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings hold NaN/inf; re-embed the images")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


def top_k_cosine(
    queries: np.ndarray,
    database: np.ndarray,
    k: int,
    batch: int = 1024,
    normalised: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k: per query, the ``k`` most similar database rows, best first.

    Queries go through in batches of ``batch`` so memory stays ``batch x n_db`` floats; each
    batch is one matrix product, then ``argpartition`` (linear) picks the k best and only
    those k are sorted. Ties are broken by the smaller database index, so results do not
    depend on the batch size.

    Args:
        queries: (n_q, D) embeddings.
        database: (n_db, D) embeddings.
        k: neighbours per query; capped at ``n_db``.
        batch: queries per matrix product.
        normalised: both inputs are already L2-normalised (skip the copy).

    Returns:
        ``indices`` (n_q, k) int64 database rows and ``scores`` (n_q, k) float32 cosines.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    q = np.asarray(queries, dtype=np.float32) if normalised else l2_normalise(queries)
    db = np.asarray(database, dtype=np.float32) if normalised else l2_normalise(database)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise ValueError(f"queries {q.shape} and database {db.shape} must be (n, D) with one D")
    if len(db) == 0:
        raise ValueError("the database is empty")
    k = min(k, len(db))
    indices = np.empty((len(q), k), dtype=np.int64)
    scores = np.empty((len(q), k), dtype=np.float32)
    starts = range(0, len(q), batch)
    for s in tqdm(starts, desc="top-k", unit="batch", leave=False, disable=len(starts) < 8):
        sim = q[s : s + batch] @ db.T
        if k < len(db):
            part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            # argpartition breaks ties at the k-th place arbitrarily; widen by those ties so
            # the smaller-index rule below sees every tied candidate.
            kth = np.take_along_axis(sim, part, axis=1).min(axis=1, keepdims=True)
            if (np.count_nonzero(sim >= kth, axis=1) > k).any():
                part = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        else:
            part = np.broadcast_to(np.arange(len(db)), sim.shape)
        part_scores = np.take_along_axis(sim, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=-1)
        indices[s : s + batch] = np.take_along_axis(part, order, axis=1)
        scores[s : s + batch] = np.take_along_axis(part_scores, order, axis=1)
    return indices, np.clip(scores, -1.0, 1.0)


def precision_at_k(
    query_y: np.ndarray,
    db_y: np.ndarray,
    neighbours: np.ndarray,
    k: int,
    jaccard: float = 0.5,
) -> float:
    """Mean over queries of the fraction of the first ``k`` neighbours that are relevant.

    A neighbour is relevant when the Jaccard index of the two images' positive-label sets,
    over the labels known (not NaN) in both, is at least ``jaccard``. Two images with no
    positive among those labels count as identical (Jaccard 1): both are "none of these".
    Queries with no known label say nothing and are skipped.

    Args:
        query_y: (n_q, L) labels of the queries, 1/0/NaN.
        db_y: (n_db, L) labels of the database.
        neighbours: (n_q, >= k) database rows, best first (from :func:`top_k_cosine`).
        k: neighbours scored per query.
        jaccard: the relevance threshold.
    """
    query_y = np.asarray(query_y, dtype=np.float64)
    db_y = np.asarray(db_y, dtype=np.float64)
    neighbours = np.asarray(neighbours)
    if query_y.ndim != 2 or db_y.ndim != 2 or query_y.shape[1] != db_y.shape[1]:
        raise ValueError(f"query_y {query_y.shape} and db_y {db_y.shape} must be (n, L), one L")
    if neighbours.ndim != 2 or len(neighbours) != len(query_y):
        raise ValueError(
            f"neighbours must be (n_queries={len(query_y)}, k), got {neighbours.shape}"
        )
    if not 1 <= k <= neighbours.shape[1]:
        raise ValueError(f"k={k} but only {neighbours.shape[1]} neighbours per query were given")
    q = query_y[:, None, :]
    d = db_y[neighbours[:, :k]]
    known = ~np.isnan(q) & ~np.isnan(d)
    qp = (q == 1.0) & known
    dp = (d == 1.0) & known
    inter = np.count_nonzero(qp & dp, axis=2)
    union = np.count_nonzero(qp | dp, axis=2)
    jac = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    relevant = jac >= jaccard
    scored = (~np.isnan(query_y)).any(axis=1)
    if not scored.any():
        raise ValueError("no query has a known label: precision@k is undefined")
    return float(relevant[scored].mean())


@dataclass(frozen=True, eq=False)
class SimilarityIndex:
    """Database of L2-normalised embeddings with what is needed to embed a new query.

    Attributes:
        ids: (n,) image ids.
        paths: (n,) image files (so a page can show the neighbours).
        embeddings: (n, D) float32, unit rows.
        labels: the L label names.
        y: (n, L) float32 labels (NaN = unknown), for showing and scoring neighbours.
        kind: ``"model"`` (CNN ``pool`` embeddings) or ``"pixels"`` (the baseline).
        model_path: the checkpoint the embeddings came from (``""`` for pixels).
        image_size: the model's input size.
        pixel_size: thumbnail side of the pixel baseline.
        tta_flip: whether embeddings average the mirrored image.
    """

    ids: np.ndarray
    paths: np.ndarray
    embeddings: np.ndarray
    labels: tuple[str, ...]
    y: np.ndarray
    kind: str = "model"
    model_path: str = ""
    image_size: int = 64
    pixel_size: int = 16
    tta_flip: bool = True

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.embeddings.ndim != 2 or len(self.embeddings) != n or len(self.paths) != n:
            raise ValueError(
                f"index parts disagree: {n} ids, {len(self.paths)} paths, "
                f"embeddings {self.embeddings.shape}"
            )
        if self.y.shape != (n, len(self.labels)):
            raise ValueError(f"y has shape {self.y.shape}, expected {(n, len(self.labels))}")

    def embed(
        self, paths: Sequence[str | Path], batch: int = 64, model=None, cache=None
    ) -> np.ndarray:
        """L2-normalised embeddings of new images, made the way the index's were (images
        read from ``cache``, a ``pipeline.data.image_cache.ImageCache``, when given)."""
        if self.kind == "pixels":
            return l2_normalise(downsample_pixels(list(paths), self.pixel_size, cache))
        return l2_normalise(
            embed(
                self.model_path,
                list(paths),
                self.image_size,
                batch,
                self.tta_flip,
                model=model,
                cache=cache,
            )
        )

    def search(self, query_embeddings: np.ndarray, k: int, batch: int = 1024):
        """Top-k database rows for already embedded queries: (indices, scores)."""
        return top_k_cosine(l2_normalise(query_embeddings), self.embeddings, k, batch, True)

    def save(self, path: str | Path) -> None:
        """Write the index as a plain ``.npz`` (no pickles), atomically."""
        save_npz_atomic(
            path,
            ids=np.asarray(self.ids).astype(str),
            paths=np.asarray(self.paths).astype(str),
            embeddings=np.asarray(self.embeddings, dtype=np.float32),
            labels=np.array(self.labels, dtype=str),
            y=np.asarray(self.y, dtype=np.float32),
            kind=np.array(self.kind),
            model_path=np.array(self.model_path),
            image_size=np.array(self.image_size),
            pixel_size=np.array(self.pixel_size),
            tta_flip=np.array(self.tta_flip),
        )

    @classmethod
    def load(cls, path: str | Path) -> SimilarityIndex:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; run `make similar` first")
        try:
            with np.load(path, allow_pickle=False) as npz:
                return cls(
                    ids=npz["ids"],
                    paths=npz["paths"],
                    embeddings=npz["embeddings"],
                    labels=tuple(npz["labels"].tolist()),
                    y=npz["y"],
                    kind=str(npz["kind"]),
                    model_path=str(npz["model_path"]),
                    image_size=int(npz["image_size"]),
                    pixel_size=int(npz["pixel_size"]),
                    tta_flip=bool(npz["tta_flip"]),
                )
        except KeyError as exc:
            raise ValueError(f"{path} is not a similarity index ({exc}); rebuild it") from exc


def build_index(
    ids: Sequence[str],
    paths: Sequence[str | Path],
    y: np.ndarray,
    labels: Sequence[str],
    embeddings: np.ndarray | None,
    image_size: int,
    model_path: str | Path = "",
    tta_flip: bool = True,
    pixel_size: int = 16,
    cache=None,
) -> SimilarityIndex:
    """Index the database images by their ``embeddings`` (one row per image: a CNN fold's
    ``pool`` embeddings, from the embedding file of `make embed-cnn`, made by
    ``model_path`` at ``image_size`` px), or by raw pixels when ``embeddings`` is None
    (read from ``cache``, the decode cache, when given)."""
    if len(ids) != len(paths):
        raise ValueError(f"{len(ids)} ids but {len(paths)} paths")
    if embeddings is None:
        emb = downsample_pixels(list(paths), pixel_size, cache)
    elif not model_path:
        raise ValueError("a model index needs model_path, the checkpoint that embeds queries")
    else:
        emb = np.asarray(embeddings)
        if len(emb) != len(ids):
            raise ValueError(f"{len(emb)} embedding rows but {len(ids)} images")
    kind = "pixels" if embeddings is None else "model"
    log.info(
        "similarity index: %d images, %d dims (%s)", len(ids), emb.shape[1], model_path or kind
    )
    return SimilarityIndex(
        ids=np.asarray(ids).astype(str),
        paths=np.array([str(p) for p in paths]),
        embeddings=l2_normalise(emb),
        labels=tuple(labels),
        y=np.asarray(y, dtype=np.float32),
        kind=kind,
        model_path="" if embeddings is None else str(model_path),
        image_size=image_size,
        pixel_size=pixel_size,
        tta_flip=tta_flip,
    )


def evaluate_index(
    index: SimilarityIndex,
    query_paths: Sequence[str | Path],
    query_y: np.ndarray,
    query_embeddings: np.ndarray | None = None,
    k: int = 10,
    jaccard: float = 0.5,
    pixel_size: int = 16,
    cache=None,
) -> dict:
    """precision@k of ``index`` vs the raw-pixel baseline over the same database and queries.

    A model index takes the queries' ``query_embeddings`` (made by the index's checkpoint:
    the embedding file's test rows); a pixel index embeds ``query_paths`` itself. Images
    are read from ``cache``, the decode cache, when given.
    """
    query_y = np.asarray(query_y, dtype=np.float32)
    if len(query_paths) != len(query_y):
        raise ValueError(f"{len(query_paths)} query images but {len(query_y)} label rows")
    if query_y.shape[1] != len(index.labels):
        raise ValueError(
            f"query labels have {query_y.shape[1]} columns, the index {len(index.labels)}"
        )
    if index.kind == "pixels":
        q = index.embed(query_paths, cache=cache)
    elif query_embeddings is None or len(query_embeddings) != len(query_y):
        raise ValueError(
            f"a model index needs the {len(query_y)} queries' embeddings by {index.model_path}"
        )
    else:
        q = l2_normalise(query_embeddings)
    nn_model, _ = index.search(q, k)
    p_model = precision_at_k(query_y, index.y, nn_model, k, jaccard)
    db_px = l2_normalise(downsample_pixels(list(index.paths), pixel_size, cache))
    q_px = l2_normalise(downsample_pixels(list(query_paths), pixel_size, cache))
    nn_px, _ = top_k_cosine(q_px, db_px, k, normalised=True)
    p_px = precision_at_k(query_y, index.y, nn_px, k, jaccard)
    log.info("precision@%d: %s %.4f, raw pixels %.4f", k, index.kind, p_model, p_px)
    return {
        "k": k,
        "jaccard": jaccard,
        "n_queries": len(query_y),
        "n_database": len(index.ids),
        "index_kind": index.kind,
        "model_path": index.model_path,
        "model_precision_at_k": p_model,
        "pixels_precision_at_k": p_px,
        "pixel_size": pixel_size,
    }


def index_training_set(cfg, embedding=None, pixel_size: int = 16, cache=None) -> SimilarityIndex:
    """The training set indexed by its rows of ``embedding`` (a CNN fold's embedding file,
    `make embed-cnn`; its checkpoint embeds later queries), or by raw pixels when None."""
    from pipeline.artifacts import load_embeddings
    from pipeline.data.contract import read_labels

    table = read_labels(cfg.data.train_dir, cfg.data.id_column)
    emb = None if embedding is None else load_embeddings(embedding, table.ids)
    return build_index(
        table.ids,
        table.paths(),
        table.y,
        table.labels,
        None if emb is None else emb["train"],
        cfg.data.image_size if emb is None else emb["image_size"],
        model_path="" if emb is None else emb["source"],
        tta_flip=cfg.train.tta_flip,
        pixel_size=pixel_size,
        cache=cache,
    )


def evaluate_on_test_set(
    cfg,
    index_path,
    k: int,
    embedding=None,
    pixel_size: int = 16,
    cache=None,
    folds=None,
    held_out_fold: int = 0,
) -> dict:
    """:func:`evaluate_index` with the test images (``data.test_truth`` labels) as queries;
    a model index takes their rows of ``embedding``, the file it was built from.

    A competition has no test labels (``data.test_truth`` empty): then the queries are the
    training rows of fold ``held_out_fold`` (``folds``, the folds CSV), which the embedding's
    checkpoint never trained on, against the other folds' rows as the database, so the
    score is still out of sample (:func:`evaluate_held_out_fold`).
    """
    from pipeline.artifacts import load_embeddings
    from pipeline.data.contract import image_paths, read_test_ids, read_test_truth

    index = SimilarityIndex.load(index_path)
    if not cfg.data.test_truth:
        if folds is None:
            raise ValueError(
                "the config has no data.test_truth: pass the folds CSV (--folds) to score "
                "the index on a held-out training fold instead"
            )
        return evaluate_held_out_fold(index, index_path, folds, held_out_fold, k, pixel_size, cache)
    test_ids, test_dir = read_test_ids(cfg.data.test_dir, cfg.data.id_column)
    queries = None
    if embedding is not None:
        emb = load_embeddings(embedding, test_ids=test_ids)
        if emb["source"] != index.model_path:
            raise ValueError(
                f"{embedding} comes from {emb['source'] or 'no checkpoint'}, the index "
                f"{index_path} from {index.model_path or 'raw pixels'}; re-run `make similar`"
            )
        queries = emb["test"]
    truth = read_test_truth(cfg.data.test_truth, index.labels, cfg.data.id_column, test_ids)
    paths = image_paths(test_ids, test_dir)
    result = evaluate_index(
        index, paths, truth.to_numpy(), queries, k, pixel_size=pixel_size, cache=cache
    )
    result["index"] = str(index_path)
    result["queries"] = "test images (data.test_truth)"
    return result


def evaluate_held_out_fold(
    index: SimilarityIndex,
    index_path,
    folds,
    fold: int,
    k: int,
    pixel_size: int = 16,
    cache=None,
) -> dict:
    """precision@k with fold ``fold``'s training rows as queries and the other folds' rows
    as the database: the scores a data set without test labels can give. The index must
    come from that fold's checkpoint (its rows were held out of that model's training)."""
    import dataclasses

    from pipeline.data.folds import read_folds

    fold_of = read_folds(folds, index.ids)
    query = fold_of == fold
    if not query.any() or query.all():
        raise ValueError(f"{folds}: fold {fold} holds {int(query.sum())} rows; need some, not all")
    db = dataclasses.replace(
        index,
        ids=index.ids[~query],
        paths=index.paths[~query],
        embeddings=index.embeddings[~query],
        y=index.y[~query],
    )
    q_emb = index.embeddings[query] if index.kind == "model" else None
    result = evaluate_index(
        db, list(index.paths[query]), index.y[query], q_emb, k, pixel_size=pixel_size, cache=cache
    )
    result["index"] = str(index_path)
    result["queries"] = f"held-out training fold {fold} (no test labels)"
    return result
