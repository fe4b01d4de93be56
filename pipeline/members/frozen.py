"""Frozen-feature members: a pretrained backbone embeds every image once, heads per fold.

DESIGN "Members and the second level": fine-tuning on CPU costs tens of minutes per
backbone at 96 px; embedding every image once with a frozen ImageNet backbone at its native
resolution (224 px or more, flip TTA) costs seconds to a minute, sees 5x more pixels, and
gives members whose errors differ from the fine-tuned ones' — the diversity a second level
needs. Per CNN fold k, a head is fitted on the rows of the other folds only and predicts
fold k's rows and the test set, written in the CNN prediction-file format (one "epoch"), so
selection and every combiner take it like any backbone, with no OOF leakage.

Heads (every kind in :mod:`pipeline.runtime.heads`, state as plain arrays for the
predictor and the export): ``logistic`` (standardised embeddings, one L2
``LogisticRegression`` per label, balanced classes) and ``knn`` (cosine nearest neighbours;
per label the similarity-weighted share of positives among the ``k`` nearest known rows,
shrunk towards the label's prevalence).

A member's fold fit (and its ``[denoise]`` / ``[pseudo]`` refits) is
:func:`pipeline.members.frozen_fit.run_frozen_fold`. The embedding file
(``build/<config>/embed/<name>.npz``) has one writer and one reader,
:func:`pipeline.artifacts.save_embeddings` / :func:`pipeline.artifacts.load_embeddings`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.artifacts import save_embeddings
from pipeline.models.inference import embed_paths, embedding_model
from pipeline.runtime.heads import HEAD_KINDS, HEADS

log = logging.getLogger(__name__)


def frozen_backbone(backbone: str, weights: str, image_size: int):
    """The pretrained backbone (with its preprocessing) up to global average pooling.

    Seeded, so ``weights="none"`` (random features, for tests) builds the same network in
    `make embed` and in the predictor.
    """
    import keras

    from pipeline.models.backbones import build_model

    keras.utils.set_random_seed(0)
    model = build_model(backbone, 1, image_size, weights, head_layers=0, seed=0)
    return embedding_model(model)


def run_embed(cfg, name: str, out_path, cache=None) -> None:
    """Embed every training and test image with frozen member ``name``; write the file.
    Images come from ``cache`` (``pipeline.data.image_cache.ImageCache``) when given."""
    from pipeline.data.contract import read_dataset

    f = frozen_config(cfg, name)
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    table, test_ids = ds.train, ds.test_ids
    model = frozen_backbone(f.backbone, f.weights, f.image_size)
    paths = table.paths() + ds.test_paths()
    log.info(
        "%s: embedding %d images with frozen %s at %d px%s",
        name,
        len(paths),
        f.backbone,
        f.image_size,
        " (flip TTA)" if f.tta_flip else "",
    )
    emb = embed_paths(model, paths, f.image_size, f.batch_size, f.tta_flip, cache)
    n = len(table.ids)
    save_embeddings(out_path, table.ids, test_ids, emb[:n], emb[n:], f.backbone, f.image_size)
    log.info("%s: %s embeddings -> %s", name, emb.shape, out_path)


def frozen_config(cfg, name: str):
    for f in cfg.frozen:
        if f.name == name:
            return f
    raise ValueError(f"{name!r} is not a [[frozen]] entry of the config")


def parse_member(cfg, member: str):
    """A frozen member's name (``<name>_<head>``, or a pseudo twin's) -> its
    :class:`~pipeline.members.registry.Member` (``.frozen`` entry, ``.head``, ``.kind``)."""
    from pipeline.members.registry import FROZEN, PSEUDO, Registry

    reg = Registry(cfg)
    frozen = reg.names(FROZEN, PSEUDO)
    if member not in frozen:
        raise ValueError(f"{member!r} is not a frozen member of the config ({frozen})")
    return reg[member]


def make_head(f, head: str):
    """The head estimator named ``head`` (:data:`pipeline.runtime.heads.HEADS`) with the
    ``[[frozen]]`` entry ``f``'s settings."""
    if head not in HEADS:
        raise ValueError(f"unknown frozen head {head!r}; choose one of {list(HEADS)}")
    return HEADS[head].from_config(f)


def save_head(path, head) -> None:
    from pipeline.artifacts import save_npz_atomic

    save_npz_atomic(path, kind=np.asarray(type(head).__name__), **head.get_state())


def load_head(path):
    """A head written by :func:`save_head`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `make frozen`")
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["kind"])
        state = {k: z[k] for k in z.files if k != "kind"}
    cls = HEAD_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"{path}: unknown head kind {kind!r}; re-run `make frozen`")
    return cls().set_state(state)
