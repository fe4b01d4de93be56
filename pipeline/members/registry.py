"""The member registry: every base model a config runs, its kind, its fold files and how it
scores a new image. The one place that turns a config into member names and back.

A *member* is a base model whose per-fold OOF and test predictions (fold files, see
:mod:`pipeline.artifacts`) the second level reads. Kinds:

========== ========================= ============================================= ========
kind       names                     fold files                                    scores
========== ========================= ============================================= ========
cnn        ``<backbone>``            ``preds/<backbone>.fold<k>.npz``              its fold network
twoflow    ``twoflow``               ``preds/twoflow.fold<k>.npz``                 a CNN's embedding + forests
frozen     ``<entry>_<head>``        ``members/<member>.fold<k>.npz``              frozen embedding + head
pseudo     ``<entry>_<head>_pl``     ``pseudo/<member>.fold<k>.npz``               as its frozen member, own heads
external   ``<name>``                ``external/<name>.fold<k>.npz``               nothing: files from elsewhere
========== ========================= ============================================= ========

The Makefile's member variables (written by ``stages/resolve_config.py`` from
:func:`make_variables`), the predictor, the export and the stages read members from here.
Standard library only: the Makefile resolves it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config.schema import Config, FrozenConfig, pseudo_twins
from pipeline.train.fold_dir import fold_work_dir

CNN, TWOFLOW, FROZEN, PSEUDO, EXTERNAL = "cnn", "twoflow", "frozen", "pseudo", "external"


@dataclass(frozen=True)
class Kind:
    """What every member of a kind shares."""

    name: str
    folder: str  # its fold files: build/<config>/<folder>/<member>.fold<k>.npz
    make_names: str  # the Makefile variable listing its members' names
    scorable: bool  # can score a new image (predict, serve, export)


#: every kind, in the order the second level reads their columns (the stack's file order)
KINDS: dict[str, Kind] = {
    CNN: Kind(CNN, "preds", "BACKBONES", True),
    TWOFLOW: Kind(TWOFLOW, "preds", "TWOFLOW_MEMBERS", True),
    FROZEN: Kind(FROZEN, "members", "FROZEN_MEMBERS", True),
    EXTERNAL: Kind(EXTERNAL, "external", "EXTERNAL", False),
    PSEUDO: Kind(PSEUDO, "pseudo", "PSEUDO_MEMBERS", True),
}

#: the Two-Flow member's one name
TWOFLOW_NAME = "twoflow"
#: where the fitted models a member scores a new image with live, under the build folder:
#: frozen and pseudo heads ``heads/<member>.fold<k>.head.npz``, Two-Flow's forests
#: ``twoflow/fold<k>.joblib`` (a CNN's fold folder is :mod:`pipeline.train.fold_dir`'s)
HEADS_DIR, TWOFLOW_MODEL_DIR = "frozen", "twoflow"


@dataclass(frozen=True)
class Member:
    """One base model of a run."""

    name: str
    kind: str
    frozen: FrozenConfig | None = None  # frozen / pseudo: the [[frozen]] entry it embeds with
    head: str = ""  # frozen / pseudo: its head kind

    @property
    def scorable(self) -> bool:
        return KINDS[self.kind].scorable

    def fold_file(self, build: str | Path, fold: int) -> Path:
        """This member's fold-``fold`` predictions file under the build folder."""
        return Path(build) / KINDS[self.kind].folder / f"{self.name}.fold{int(fold)}.npz"

    def model_path(self, build: str | Path, fold: int) -> Path:
        """What scores a new image for fold ``fold``: a CNN's fold folder, Two-Flow's
        forests, a frozen member's head. An external member has none (ValueError)."""
        if self.kind == CNN:
            return fold_work_dir(build, self.name, fold)
        if self.kind == TWOFLOW:
            return Path(build) / TWOFLOW_MODEL_DIR / f"fold{int(fold)}.joblib"
        if self.kind in (FROZEN, PSEUDO):
            return Path(build) / HEADS_DIR / f"{self.name}.fold{int(fold)}.head.npz"
        raise ValueError(
            f"{self.name!r} is an [[external]] member: its predictions came as a file, no "
            "model here scores a new image"
        )


class Registry:
    """The members of one config, by name, in the second level's column order."""

    def __init__(self, cfg: Config) -> None:
        found = [Member(b.name, CNN) for b in cfg.train.backbones]
        if cfg.twoflow.enabled:
            found.append(Member(TWOFLOW_NAME, TWOFLOW))
        twins = set(pseudo_twins(cfg))
        frozen = cfg.frozen_members()
        found += [Member(m, FROZEN, f, h) for m, (f, h) in frozen.items() if m not in twins]
        found += [Member(e.name, EXTERNAL) for e in cfg.external]
        found += [Member(m, PSEUDO, f, h) for m, (f, h) in frozen.items() if m in twins]
        self.members: dict[str, Member] = {m.name: m for m in found}

    def __iter__(self):
        return iter(self.members.values())

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def __getitem__(self, name: str) -> Member:
        if name not in self.members:
            raise KeyError(
                f"{name!r} is not a member of this config (members: {', '.join(self.members)})"
            )
        return self.members[name]

    def kind(self, name: str) -> str:
        return self[name].kind

    def names(self, *kinds: str) -> list[str]:
        """Member names of the given kinds (all when none), in column order."""
        return [m.name for m in self if not kinds or m.kind in kinds]

    def fold_files(self, build: str | Path, folds, *kinds: str) -> list[Path]:
        """Every fold file of the given kinds' members: member-major, folds in order."""
        return [self[n].fold_file(build, k) for n in self.names(*kinds) for k in folds]


def make_variables(reg: Registry) -> list[str]:
    """The Makefile's member lines: per kind its members' names and its fold files' folder
    (``<KIND>_DIR``), for ``build/<config>/config/vars.mk``."""
    lines = []
    for kind in KINDS.values():
        if kind.make_names != "BACKBONES":  # the backbones' line is the training's own
            lines.append(f"{kind.make_names} := {' '.join(reg.names(kind.name))}")
        lines.append(f"{kind.name.upper()}_DIR := {kind.folder}")
    lines += [f"HEADS_DIR := {HEADS_DIR}", f"TWOFLOW_MODEL_DIR := {TWOFLOW_MODEL_DIR}"]
    return lines
