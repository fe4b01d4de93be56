"""What one (backbone, fold) training job is: its rows, its config sections, its phases and
seeds, and the fingerprint that says whether a work dir belongs to it.

A :class:`FoldJob` holds the config sections training reads (the backbone's and the shared
``[train]`` section) instead of copies of their fields, so a new setting reaches training
and the fingerprint without a second list to keep in step. Values derived from them (the
fold's seed, each epoch's augmentation seed, the typed phases) are computed here only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import code_deps
from pipeline.config.schema import BackboneConfig, Config, TrainConfig, to_dict
from pipeline.data.contract import file_digests

# The command that runs fold jobs (`make train-cnn`): its import closure is the code a
# job's result depends on (read as files here, never imported: the library does not
# import the CLI layer).
TRAIN_STAGE = "stages/train_cnn.py"


def label_prevalence(y: np.ndarray) -> np.ndarray:
    """(L,) each label's share of positives among its known cells (0 with none known)."""
    return np.nansum(y, axis=0) / np.maximum((~np.isnan(y)).sum(axis=0), 1)


def epoch_indices(
    y: np.ndarray,
    seed: int,
    epoch: int,
    keep_fraction: float = 0.8,
    rare_threshold: float = 0.05,
    rare_upsample: int = 2,
    prevalence: np.ndarray | None = None,
) -> np.ndarray:
    """Which training rows one epoch sees, in order; deterministic per (seed, epoch).

    Rows positive for a rare label (prevalence below ``rare_threshold``) are repeated
    ``rare_upsample`` times and always kept; the other rows are randomly down-sampled to
    ``keep_fraction`` (the seed's 80%), a fresh draw each epoch. ``prevalence`` (per
    label) defaults to ``y``'s; pass the original images' when ``y`` holds augmented
    copies, so a label made common by copies still counts as rare.
    """
    rng = np.random.default_rng([seed, epoch, 17])
    if prevalence is None:
        prevalence = label_prevalence(y)
    rare = np.asarray(prevalence) < rare_threshold
    is_rare_row = (np.nan_to_num(y[:, rare], nan=0.0) > 0).any(axis=1) if rare.any() else None
    if is_rare_row is None:
        is_rare_row = np.zeros(len(y), dtype=bool)
    common = np.flatnonzero(~is_rare_row)
    keep = common[rng.random(len(common)) < keep_fraction]
    rare_rows = np.repeat(np.flatnonzero(is_rare_row), rare_upsample)
    order = np.concatenate([keep, rare_rows])
    rng.shuffle(order)
    return order


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one trainable scope and one learning-rate range.

    ``scope``: ``head`` (backbone frozen), ``top`` (the top ``unfreeze_top`` fraction of the
    backbone's layers trainable) or ``all``.
    """

    scope: str
    epochs: int
    lr_min: float
    lr_max: float


def parse_phases(specs, lr_min: float, lr_max: float) -> tuple[Phase, ...]:
    """``["head:1", "top:2:1e-4:1e-3", "all:3"]`` -> phases (lr range defaults to the backbone's)."""
    out = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 4) or parts[0] not in ("head", "top", "all"):
            raise ValueError(
                f"phase {spec!r}: write scope:epochs or scope:epochs:lr_min:lr_max, "
                "scope one of head, top, all"
            )
        try:
            epochs = int(parts[1])
            lo, hi = (float(parts[2]), float(parts[3])) if len(parts) == 4 else (lr_min, lr_max)
        except ValueError as exc:
            raise ValueError(f"phase {spec!r}: epochs must be an integer, rates numbers") from exc
        if epochs < 1 or not 0 < lo <= hi:
            raise ValueError(f"phase {spec!r}: needs epochs >= 1 and 0 < lr_min <= lr_max")
        out.append(Phase(parts[0], epochs, lo, hi))
    return tuple(out)


@dataclass(frozen=True)
class FoldJob:
    """Everything one (backbone, fold) training job needs; paths are absolute or cwd-relative.

    ``backbone`` and ``train`` are the config's own sections (``train.backbones`` is not
    read: ``backbone`` is this job's); ``image_size`` is ``data.image_size``.
    ``prevalence``: the original (non-augmented) training rows' label prevalence.
    """

    backbone: BackboneConfig
    train: TrainConfig
    fold: int
    image_size: int
    labels: tuple[str, ...]
    train_paths: list[Path]
    train_y: np.ndarray
    val_ids: np.ndarray
    val_paths: list[Path]
    test_ids: np.ndarray
    test_paths: list[Path]
    prevalence: np.ndarray | None = None
    #: the backbone's phases, parsed once (bad specs fail when the job is built)
    phases: tuple[Phase, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        b = self.backbone
        object.__setattr__(self, "phases", parse_phases(b.phases, b.lr_min, b.lr_max))

    @property
    def name(self) -> str:
        return self.backbone.name

    @property
    def epochs(self) -> int:
        return self.backbone.epochs

    @property
    def batch_size(self) -> int:
        return self.backbone.batch_size

    @property
    def seed(self) -> int:
        return self.train.fold_seed(self.fold, self.backbone.seed)

    def augment_seed(self, epoch: int) -> int:
        """The seed of epoch ``epoch``'s random crops, stretches and flips."""
        return self.seed * 100_003 + epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        t = self.train
        return epoch_indices(
            self.train_y,
            self.seed,
            epoch,
            t.keep_fraction,
            t.rare_threshold,
            t.rare_upsample,
            self.prevalence,
        )

    def phase_of(self, epoch: int) -> Phase:
        """The fine-tuning phase that 1-based ``epoch`` belongs to."""
        if not self.phases:
            b = self.backbone
            return Phase("all", b.epochs, b.lr_min, b.lr_max)
        end = 0
        for phase in self.phases:
            end += phase.epochs
            if epoch <= end:
                return phase
        return self.phases[-1]


def build_job(
    cfg: Config, backbone: str, fold: int, folds_csv: Path, augmented: Path | None = None
) -> FoldJob:
    """Collect the rows, paths and settings of one fold job from the data and folds file.

    ``augmented``: the augmentation's labels.csv; only copies whose source image is outside
    this fold join the training rows (never validation), so OOF stays leak-free.
    """
    from pipeline.data.contract import read_dataset
    from pipeline.data.folds import read_folds

    b = cfg.backbone(backbone)
    ds = read_dataset(cfg.data.train_dir, cfg.data.test_dir, cfg.data.id_column)
    table, test_ids = ds.train, ds.test_ids
    folds = read_folds(folds_csv, table.ids, cfg.folds.n_folds)
    if not 0 <= fold < cfg.folds.n_folds:
        raise ValueError(f"fold {fold} is outside 0..{cfg.folds.n_folds - 1}")
    paths = table.paths()
    tr = folds != fold
    va = folds == fold
    train_paths = [p for p, t in zip(paths, tr, strict=True) if t]
    train_y = table.y[tr]
    prevalence = label_prevalence(train_y)
    if augmented is not None:
        from pipeline.augment import augmented_rows_for_fold

        _, aug_y, aug_paths = augmented_rows_for_fold(augmented, fold, labels=table.labels)
        train_paths += list(aug_paths)
        train_y = np.concatenate([train_y, np.asarray(aug_y, dtype=np.float32)])
    return FoldJob(
        backbone=b,
        train=cfg.train,
        fold=fold,
        image_size=cfg.data.image_size,
        labels=table.labels,
        train_paths=train_paths,
        train_y=train_y,
        val_ids=table.ids[va],
        val_paths=[p for p, v in zip(paths, va, strict=True) if v],
        test_ids=test_ids,
        test_paths=ds.test_paths(),
        prevalence=prevalence,
    )


def job_settings(job: FoldJob) -> dict:
    """The settings a job's result depends on, as plain data: its backbone section, the
    shared ``[train]`` settings (not the other backbones: editing one leaves the others'
    checkpoints valid, as Make's ``backbone.<name>.json`` does), fold, image size, labels."""
    train = {k: v for k, v in to_dict(job.train).items() if k != "backbones"}
    return {
        "backbone": to_dict(job.backbone),
        "train": train,
        "fold": job.fold,
        "image_size": job.image_size,
        "labels": list(job.labels),
    }


#: The job's fields that are the test set: predicted every epoch, never trained on.
TEST_FIELDS = ("test_ids", "test_paths")


def _hash_fields(h, job: FoldJob, names) -> None:
    for name in names:
        value = getattr(job, name)
        if isinstance(value, np.ndarray):
            h.update(name.encode() + np.ascontiguousarray(value).tobytes())
        elif isinstance(value, list):  # the rows' image files: names and contents
            h.update(f"{name}={[Path(p).name for p in value]!r}".encode())
            for path in value:  # a missing file fails the job itself, not its fingerprint
                h.update((file_digests([path])[0] if Path(path).is_file() else "-").encode())


def job_fingerprint(job: FoldJob) -> str:
    """Hash of everything a job's training depends on: its settings, its training and
    validation rows (their images' names and contents: a picture replaced under the same
    name is another job) and the code (every file the training stage imports: Make's
    ``CODE_TRAIN_CNN``, the same closure). The test set is not in it
    (:func:`test_fingerprint`): a changed test image is predicted again from the saved
    epoch weights, not trained for.

    A work dir holding checkpoints of another fingerprint is stale (the config, the data or
    the training code changed since): resuming from it would mix old and new runs.
    """
    h = hashlib.sha256(json.dumps(job_settings(job), sort_keys=True).encode())
    _hash_fields(h, job, [f.name for f in dataclasses.fields(job) if f.name not in TEST_FIELDS])
    for rel in code_deps.code_closure([TRAIN_STAGE]):
        h.update(rel.encode() + (code_deps.ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def test_fingerprint(job: FoldJob) -> str:
    """Hash of the job's test set (ids, image names and contents) and of its training
    (:func:`job_fingerprint`): whether the saved per-epoch test predictions are current."""
    h = hashlib.sha256(job_fingerprint(job).encode())
    _hash_fields(h, job, TEST_FIELDS)
    return h.hexdigest()[:16]
