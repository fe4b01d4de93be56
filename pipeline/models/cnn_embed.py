"""A fine-tuned CNN fold's embeddings as a file: embedded once, read by every member fit on them.

Two-Flow, the scikit-learn baseline and similarity search all use the pooled (``pool``
layer) embeddings of a fold's own final checkpoint. `make embed-cnn` writes them once per
(backbone, fold) to ``build/<config>/embed/cnn.<backbone>.fold<k>.npz``, in the embedding
file format of ``pipeline.artifacts`` (``source`` = the checkpoint), and the members read
that file: a checkpoint is embedded once, not once per consumer, and Make sees the input.

Out of fold: fold k's checkpoint was trained without fold k's rows, so a member fit on the
other folds' rows (``fit``) and scored on fold k's (``val``) and the test set stays out of
fold, like the CNN. The file holds every training row (in ``labels.csv`` order) and every
test row; the rows outside fold k, fold k's rows and the test images are embedded by three
separate predict passes (the batches the members used when each embedded for itself).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.artifacts import load_embeddings, save_embeddings
from pipeline.models.inference import embed, load_checkpoint
from pipeline.train.fold_dir import last_checkpoint

if TYPE_CHECKING:
    from pipeline.config.schema import Config
    from pipeline.data.image_cache import ImageCache

log = logging.getLogger(__name__)

PARTS = ("fit", "val", "test")


@dataclass(frozen=True)
class FoldRows:
    """The rows a member fit on CNN fold ``fold`` uses: it fits on the other folds' rows
    and scores fold ``fold``'s and the test set.

    Attributes:
        train_ids: (n,) every training id, ``labels.csv`` order (the embedding file's).
        in_fold: (n,) bool, the rows of fold ``fold`` (the validation rows).
    """

    fold: int
    labels: tuple[str, ...]
    train_ids: np.ndarray
    in_fold: np.ndarray
    fit_paths: list[Path]
    fit_y: np.ndarray
    val_ids: np.ndarray
    val_paths: list[Path]
    test_ids: np.ndarray
    test_paths: list[Path]

    def paths(self, part: str) -> list[Path]:
        """The image files of ``part`` (``fit``, ``val`` or ``test``), in row order."""
        return {"fit": self.fit_paths, "val": self.val_paths, "test": self.test_paths}[part]


def fold_rows(cfg: Config, fold: int, folds_csv: str | Path) -> FoldRows:
    """Split the data set by the folds file: fold ``fold``'s rows vs the others (no
    augmented copies: members fit on embeddings use the original images only)."""
    from pipeline.data.contract import read_dataset
    from pipeline.data.folds import read_folds

    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    table = ds.train
    folds = read_folds(folds_csv, table.ids, cfg.folds.n_folds)
    if not 0 <= fold < cfg.folds.n_folds:
        raise ValueError(f"fold {fold} is outside 0..{cfg.folds.n_folds - 1}")
    paths = table.paths()
    va = folds == fold
    return FoldRows(
        fold=fold,
        labels=table.labels,
        train_ids=np.asarray(table.ids).astype(str),
        in_fold=va,
        fit_paths=[p for p, v in zip(paths, va, strict=True) if not v],
        fit_y=table.y[~va],
        val_ids=table.ids[va],
        val_paths=[p for p, v in zip(paths, va, strict=True) if v],
        test_ids=ds.test_ids,
        test_paths=ds.test_paths(),
    )


def embed_fold(
    cfg: Config,
    backbone: str,
    fold: int,
    folds_csv: str | Path,
    cnn_work_dir: str | Path,
    out_path: str | Path,
    cache: ImageCache | None = None,
) -> Path:
    """Embed every training and test image with fold ``fold``'s final checkpoint (in
    ``cnn_work_dir``); write the embedding file. Images are read from ``cache`` (the decode
    cache) when given. Returns the checkpoint used."""
    batch_size = cfg.backbone(backbone).batch_size
    rows = fold_rows(cfg, fold, folds_csv)
    ckpt = last_checkpoint(cnn_work_dir)
    log.info("%s fold %d: embeddings from %s", backbone, fold, ckpt)
    model = load_checkpoint(ckpt)
    size, tta = cfg.data.image_size, cfg.train.tta_flip
    deep = {}
    for part in PARTS:
        paths = rows.paths(part)
        deep[part] = embed(ckpt, paths, size, batch_size, tta, model=model, cache=cache)
        log.info("fold %d: embedded %d %s images -> %s", fold, len(paths), part, deep[part].shape)
    train = np.empty((len(rows.train_ids), deep["fit"].shape[1]), dtype=np.float32)
    train[~rows.in_fold] = deep["fit"]
    train[rows.in_fold] = deep["val"]
    save_embeddings(
        out_path, rows.train_ids, rows.test_ids, train, deep["test"], backbone, size, str(ckpt)
    )
    return ckpt


def fold_features(
    cfg: Config, backbone: str, fold: int, folds_csv: str | Path, embedding: str | Path
) -> tuple[FoldRows, dict[str, np.ndarray], str]:
    """Fold ``fold``'s rows and their ``backbone`` embeddings from the file
    :func:`embed_fold` wrote, refusing a file of another backbone, size or data set.

    Returns:
        ``(rows, {"fit": (n_fit, D), "val": (n_val, D), "test": (n_test, D)}, checkpoint)``.
    """
    rows = fold_rows(cfg, fold, folds_csv)
    emb = load_embeddings(embedding, rows.train_ids, rows.test_ids)
    made_by = (str(emb["backbone"]), int(emb["image_size"]))
    if made_by != (backbone, cfg.data.image_size):
        raise ValueError(
            f"{embedding} holds {made_by[0]} embeddings at {made_by[1]} px, not {backbone}'s at "
            f"{cfg.data.image_size} px; re-run `make embed-cnn`"
        )
    deep = {"fit": emb["train"][~rows.in_fold], "val": emb["train"][rows.in_fold]}
    deep["test"] = emb["test"]
    return rows, deep, emb["source"]
