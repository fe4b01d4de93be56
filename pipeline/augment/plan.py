"""The label-aware plan: which images, how many copies, which target colour, the rewritten
label row; copies inherit their source's fold."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config.augment import (
    AugmentConfig,
    ColourSpec,
)
from pipeline.data.contract import (
    LabelTable,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugJob:
    """One recoloured copy to make.

    Attributes:
        new_id: file name of the copy (``aug_<source stem>_<v>.png``).
        source: image id of the original; ``source_index`` its row in the label table.
        fold: the source's fold (the copy trains only models that do not validate on it).
        source_colour: the source's colour label, or None (``recolour_unlabelled``).
        target_colour: colour label the copy gets.
        target_hue: OpenCV hue the garment is shifted to (chromatic targets).
        y: the copy's label row (NaN = unknown), colour labels rewritten.
        reason: the rare label this copy is for.
    """

    new_id: str
    source: str
    source_index: int
    fold: int
    source_colour: str | None
    target_colour: str
    target_hue: float
    y: tuple[float, ...]
    reason: str


def rare_labels(table: LabelTable, cfg: AugmentConfig) -> tuple[str, ...]:
    """Labels to augment: ``cfg.rare_labels`` if given, else prevalence < threshold.

    Prevalence counts known cells only; a label with no positive is not rare (nothing to
    copy), it is absent.
    """
    if cfg.rare_labels:
        missing = [r for r in cfg.rare_labels if r not in table.labels]
        if missing:
            raise ValueError(
                f"augment.rare_labels: {missing[0]!r} is not a column of "
                f"{table.image_dir.parent / 'labels.csv'} ({', '.join(table.labels)})"
            )
        return tuple(cfg.rare_labels)
    known = ~np.isnan(table.y)
    pos = np.nansum(table.y, axis=0)
    prev = pos / np.maximum(known.sum(axis=0), 1)
    return tuple(
        lab
        for lab, p, n in zip(table.labels, prev, pos, strict=True)
        if n > 0 and p < cfg.rare_threshold
    )


def _target_hue(rng: np.random.Generator, spec: ColourSpec) -> float:
    """A hue from the central half of the target's range: clear of its borders, so noise
    and the HSV round trip never push the garment into a neighbouring colour."""
    if not spec.chromatic:
        return float("nan")
    span = spec.span()
    return float(round((spec.lo + span / 4 + rng.uniform(0, span / 2)) % 180, 2))


def _source_colours(table: LabelTable, cfg: AugmentConfig) -> tuple[list[str | None], list[str]]:
    """Per row: its mapped colour label (or None) and, if it cannot be recoloured, why."""
    idx = {lab: j for j, lab in enumerate(table.labels)}
    mapped = [c for c in cfg.colours if c in idx]
    dependent = [c for c in cfg.colour_dependent if c in idx]
    colours: list[str | None] = []
    why: list[str] = []
    for row in table.y:
        pos = [c for c in mapped if row[idx[c]] == 1]
        unknown = [c for c in mapped if np.isnan(row[idx[c]])]
        if any(row[idx[c]] == 1 for c in dependent):
            colours.append(None)
            why.append("unmapped_colour_label")
        elif len(pos) > 1:
            colours.append(None)
            why.append("several_colours")
        elif len(pos) == 1:
            c = pos[0]
            colours.append(c)
            achro = not cfg.colours[c].chromatic
            why.append("achromatic" if achro and cfg.grey_policy == "skip" else "")
        elif unknown:
            colours.append(None)
            why.append("colour_unknown")
        else:
            colours.append(None)
            why.append("" if cfg.recolour_unlabelled else "no_colour_label")
    return colours, why


def plan_with_skips(
    table: LabelTable, folds: np.ndarray, cfg: AugmentConfig
) -> tuple[list[AugJob], Counter, tuple[str, ...]]:
    """:func:`plan_augmentation`'s jobs, with the count of sources skipped per reason and
    the rare labels (what the run's ``summary.json`` reports)."""
    folds = np.asarray(folds)
    if len(folds) != len(table.ids):
        raise ValueError(f"folds has {len(folds)} rows but the label table {len(table.ids)}")
    missing = [c for c in cfg.colours if c not in table.labels]
    if missing and cfg.enabled and cfg.mode == "labels":  # off/rotate need no colour map
        raise ValueError(
            f"augment.colour_map: label {missing[0]!r} is not a column of the labels "
            f"({', '.join(table.labels)}); remove it from the map"
        )
    skipped: Counter = Counter()
    rare = rare_labels(table, cfg)
    if not cfg.enabled or cfg.variants == 0 or not rare:
        return [], skipped, rare
    if cfg.mode == "rotate":
        return _plan_rotate(table, folds, cfg, rare), skipped, rare
    idx = {lab: j for j, lab in enumerate(table.labels)}
    colours, why = _source_colours(table, cfg)
    targets = cfg.targets()
    # (source row, target colour or None = choose, rare label) in a stable order
    wanted: list[tuple[int, str | None, str]] = []
    by_source: dict[int, str] = {}
    for lab in rare:
        if lab in targets:
            continue  # rare colours: recolour other images into them (below)
        if lab in cfg.colours:
            log.warning(
                "rare colour label %r is not a target colour, so it cannot be augmented "
                "(recolouring its images away from it adds no %r example); add it to "
                "augment.target_colours",
                lab,
                lab,
            )
            continue
        for i in np.flatnonzero(table.y[:, idx[lab]] == 1):
            if why[i]:
                skipped[why[i]] += 1
            elif i not in by_source:
                by_source[int(i)] = lab
    for i, lab in sorted(by_source.items()):
        wanted += [(i, None, lab)] * cfg.variants
    for lab in rare:
        if lab not in targets:
            continue
        n_pos = int(np.sum(table.y[:, idx[lab]] == 1))
        pool = [i for i in range(len(table.ids)) if not why[i] and colours[i] not in (lab, None)]
        if cfg.recolour_unlabelled:
            pool += [i for i in range(len(table.ids)) if not why[i] and colours[i] is None]
            pool.sort()
        rng = np.random.default_rng([cfg.seed, 1, idx[lab]])
        n = min(cfg.variants * n_pos, len(pool))
        if n < cfg.variants * n_pos:
            log.warning(
                "rare colour %r: only %d eligible sources for %d copies",
                lab,
                n,
                cfg.variants * n_pos,
            )
        wanted += [(int(i), lab, lab) for i in sorted(rng.choice(pool, size=n, replace=False))]
    jobs: list[AugJob] = []
    count: Counter = Counter()
    chosen: Counter = Counter()
    for i, target, reason in sorted(wanted, key=lambda t: (t[0], t[2])):
        v = count[i]
        count[i] += 1
        rng = np.random.default_rng([cfg.seed, 2, i, v])
        src = colours[i]
        if target is None:
            options = [t for t in targets if t != src]
            if not options:
                skipped["no_target_colour"] += 1
                continue
            # distinct targets across a source's copies while they last
            order = np.random.default_rng([cfg.seed, 3, i]).permutation(len(options))
            target = options[int(order[chosen[i] % len(options)])]
            chosen[i] += 1
        y = table.y[i].copy()
        if src is not None:
            y[idx[src]] = 0.0
        y[idx[target]] = 1.0
        hue = _target_hue(rng, cfg.colours[target])
        jobs.append(_job(table, folds, i, v, src, target, hue, y, reason))
    _check_stems(jobs)
    return jobs, skipped, rare


def _job(table, folds, i: int, v: int, src, target: str, hue: float, y, reason: str) -> AugJob:
    """Copy ``v`` of source row ``i`` (its id is built from the source's file stem)."""
    return AugJob(
        new_id=f"aug_{Path(str(table.ids[i])).stem}_{v}.png",
        source=str(table.ids[i]),
        source_index=i,
        fold=int(folds[i]),
        source_colour=src,
        target_colour=target,
        target_hue=hue,
        y=tuple(float(x) for x in y),
        reason=reason,
    )


def rotation_offsets(variants: int) -> list[float]:
    """Hue offsets (OpenCV units) of a source's ``rotate`` copies: evenly spread over the
    wheel and clear of 0, so every copy is a visibly different colour."""
    return [round(180.0 * (v + 1) / (variants + 1), 2) for v in range(variants)]


def _plan_rotate(
    table: LabelTable, folds: np.ndarray, cfg: AugmentConfig, rare: tuple[str, ...]
) -> list[AugJob]:
    """``mode = "rotate"``: ``variants`` hue-rotated copies of every rare-label positive."""
    idx = {lab: j for j, lab in enumerate(table.labels)}
    reason: dict[int, str] = {}
    for lab in rare:
        for i in np.flatnonzero(table.y[:, idx[lab]] == 1):
            reason.setdefault(int(i), lab)
    jobs = [
        _job(table, folds, i, v, None, "", offset, table.y[i], lab)
        for i, lab in sorted(reason.items())
        for v, offset in enumerate(rotation_offsets(cfg.variants))
    ]
    _check_stems(jobs)
    return jobs


def _check_stems(jobs: list[AugJob]) -> None:
    """Copy ids are built from stems: 'a.png' and 'a.jpg' would collide."""
    stems: dict[str, str] = {}
    for job in jobs:
        other = stems.setdefault(Path(job.source).stem, job.source)
        if other != job.source:
            raise ValueError(
                f"images {other!r} and {job.source!r} share the file stem "
                f"{Path(other).stem!r}, so their augmented copies would collide; rename one"
            )


def plan_augmentation(table: LabelTable, folds: np.ndarray, cfg: AugmentConfig) -> list[AugJob]:
    """Decide every copy from the labels alone (images are read later, by the runner).

    Rules:
        * rare labels: ``cfg.rare_labels`` or prevalence < ``cfg.rare_threshold``;
        * a rare non-colour label (e.g. a garment type or pattern): each positive image
          gets ``variants`` copies, recoloured to distinct target colours different from
          its own (drawn with ``cfg.seed``);
        * a rare colour label that is a target (e.g. yellow): ``variants`` x its positive
          count copies of other-coloured images, recoloured *into* it (copying the yellow
          images into other colours would not add one yellow example);
        * a source needs exactly one positive mapped colour label (its garment colour);
          skipped: several colours (which garment is which?), unknown colour cells, a
          positive ``colour_dependent`` label (recolouring would falsify it), no colour
          label (unless ``recolour_unlabelled``), achromatic with ``grey_policy = "skip"``;
        * the copy's labels are the source's with the old colour set to 0 and the target
          to 1; its fold is the source's.

    Skip counts are logged; :func:`run_augmentation` reports them in its summary.
    """
    jobs, skipped, rare = plan_with_skips(table, folds, cfg)
    log.info(
        "augmentation plan: rare labels %s -> %d copies of %d sources; skipped %s",
        list(rare),
        len(jobs),
        len({j.source for j in jobs}),
        dict(skipped) or "none",
    )
    return jobs
