"""Resolve a TOML config into per-stage section files and Make variables.

Run by the Makefile at parse time with the bare system Python (standard library only):
each section file is rewritten only when its content changes, so Make re-runs just the
stages whose settings changed. ``vars.mk`` also holds each stage's code, ``CODE_<STAGE>``:
the import closure of ``stages/<stage>.py`` inside the repository (``pipeline.code_deps``),
so editing any module a stage runs re-runs that stage. With ``--data-dir`` it also refreshes
the data manifest (``pipeline.data.manifest``): the digest files Make's rules name instead
of the user's images change exactly when the data's contents do. The digest files' own rule
runs it again when they are missing, and with ``--touch-data`` after the demo data or a
holdout split was written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.artifacts import write_text_atomic
from pipeline.code_deps import ROOT, code_closure
from pipeline.config.schema import (
    SAMPLE_SUBMISSION_NAME,
    BackboneConfig,
    config_hash,
    load_config,
    section_payloads,
    to_dict,
    weights_file,
)
from pipeline.data.manifest import update_manifest
from pipeline.members.registry import FROZEN, PSEUDO, Registry, make_variables


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically write ``text`` unless the file already holds exactly it (keeps mtime)."""
    if path.is_file() and path.read_text() == text:
        return False
    write_text_atomic(path, text)
    return True


# stages/ modules that are no Make target's command
NOT_STAGES = ("__init__", "common", "resolve_config")


def code_variables(root: Path = ROOT) -> list[str]:
    """``CODE_<STAGE> := <the files stages/<stage>.py runs>`` for every stage module."""
    lines = []
    for stage in sorted((root / "stages").glob("*.py")):
        if stage.stem not in NOT_STAGES:
            files = code_closure([stage.relative_to(root)], root)
            lines.append(f"CODE_{stage.stem.upper()} := {' '.join(files)}")
    return lines


def run(config: Path, out_dir: Path, data_dir: Path | None = None, touch: bool = False) -> None:
    cfg = load_config(config)
    if data_dir is not None:  # the data's digest files follow its contents (data_manifest)
        d = cfg.data
        update_manifest(data_dir, d.train_dir, d.test_dir, d.test_truth, touch)
    for name, payload in section_payloads(cfg).items():
        write_if_changed(out_dir / f"{name}.json", json.dumps(payload, indent=2, sort_keys=True))
    write_if_changed(
        out_dir / "resolved.json", json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n"
    )
    demo_train = str(Path(cfg.demo.out_dir) / "train")
    is_demo = Path(cfg.data.train_dir) == Path(demo_train)
    lines = [
        f"BACKBONES := {' '.join(b.name for b in cfg.train.backbones)}",
        f"N_FOLDS := {cfg.folds.n_folds}",
        f"CFG_HASH := {config_hash(cfg)}",
        f"TRAIN_DIR := {cfg.data.train_dir}",
        f"TEST_DIR := {cfg.data.test_dir}",
        f"TEST_TRUTH := {cfg.data.test_truth}",
        # the sample submission the submission follows, and the one that is the test list
        # when the test folder has no test.csv (Make depends on them where they exist)
        f"SAMPLE_SUBMISSION := {cfg.sample_submission_path()}",
        f"TEST_SAMPLE := {Path(cfg.data.test_dir) / SAMPLE_SUBMISSION_NAME}",
        f"DEMO_DIR := {cfg.demo.out_dir if is_demo else ''}",
        f"HOLDOUT_SOURCE := {cfg.data.holdout_source}",
        f"HOLDOUT_ARGS := --src {cfg.data.holdout_source} --out {Path(cfg.data.train_dir).parent} "
        f"--fraction {cfg.data.holdout_fraction} --seed {cfg.data.holdout_seed}",
        f"DEMO_ARGS := --out {cfg.demo.out_dir} --n-train {cfg.demo.n_train} "
        f"--n-test {cfg.demo.n_test} --size {cfg.demo.size} --seed {cfg.demo.seed}",
    ]
    tf = cfg.twoflow
    lines.append(f"TWOFLOW_BACKBONE := {cfg.twoflow_backbone if tf.enabled else ''}")
    # the decode cache holds every size a stage reads: the CNNs', the pixel thumbnails'
    # (Two-Flow; `make similar`'s raw-pixel baseline, 16 px) and each frozen embedder's
    sizes = {cfg.data.image_size, 16} | {f.image_size for f in cfg.frozen}
    if tf.enabled:
        sizes.add(tf.pixel_size)
    lines.append(f"IMAGE_CACHE_SIZES := {' '.join(str(s) for s in sorted(sizes))}")
    lines += [f"WEIGHTS_{b.name} := {weights_file(b)}" for b in cfg.train.backbones]
    registry = Registry(cfg)
    lines += make_variables(registry)
    lines.append(f"FROZEN := {' '.join(f.name for f in cfg.frozen)}")
    lines += [
        f"FROZEN_EMB_{m.name} := {m.frozen.name}" for m in registry if m.kind in (FROZEN, PSEUDO)
    ]
    lines += [
        f"WEIGHTS_FROZEN_{f.name} := {weights_file(BackboneConfig(f.backbone, weights=f.weights))}"
        for f in cfg.frozen
    ]
    student = cfg.backbone(cfg.student_backbone)
    lines.append(f"STUDENT_ON := {'1' if cfg.student.enabled else ''}")
    lines.append(f"WEIGHTS_STUDENT := {weights_file(student)}")
    lines += [f"EXTERNAL_PATH_{e.name} := {e.path}" for e in cfg.external]
    seg = cfg.segmenter
    lines.append(f"SEGMENTER_MAPS := {seg.maps_dir}")
    lines.append(
        "WEIGHTS_SEGMENTER := "
        + (weights_file(BackboneConfig(seg.backbone, weights=seg.weights)) if seg.maps_dir else "")
    )
    # a mask model built by another config (build/<name>/segmenter.npz) is made by it
    mm = Path(cfg.augment.mask_model) if cfg.augment.mask_model else None
    lines.append(f"AUGMENT_ON := {'1' if cfg.augment.enabled else ''}")
    lines.append(f"MASK_MODEL := {mm or ''}")
    other = mm is not None and mm.name == "segmenter.npz" and mm.parent.name != cfg.name
    lines.append(
        f"MASK_MODEL_CONFIG := {config.parent / (mm.parent.name + '.toml') if other else ''}"
    )
    lines += code_variables()
    write_if_changed(out_dir / "vars.mk", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, help="refresh the data manifest there")
    ap.add_argument(
        "--touch-data", action="store_true", help="rewrite every digest file (data just written)"
    )
    args = ap.parse_args(argv)
    try:
        run(args.config, args.out_dir, args.data_dir, args.touch_data)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
