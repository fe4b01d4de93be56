"""The member registry: one config -> members, kinds, fold files, model files, Make lines."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pipeline.config.schema import config_from_dict
from pipeline.members.registry import (
    CNN,
    EXTERNAL,
    FROZEN,
    PSEUDO,
    TWOFLOW,
    Registry,
    make_variables,
)
from tests.conftest import ROOT


def _cfg(**extra):
    raw = tomllib.loads((ROOT / "configs" / "demo.toml").read_text())
    raw["train"]["backbones"] = [
        {"name": "small_cnn"},
        {"name": "b2", "arch": "small_cnn"},
    ]
    raw["frozen"] = [{"name": "mnv2", "backbone": "mobilenet_v2", "heads": ["logistic", "knn"]}]
    raw["external"] = [{"name": "mate", "path": "mate.csv"}]
    raw["twoflow"] = {"enabled": True}
    raw.pop("pseudo", None)
    raw.pop("student", None)
    raw.update(extra)
    return config_from_dict(raw)


def test_every_member_with_its_kind_in_column_order():
    reg = Registry(_cfg(pseudo={"enabled": True, "members": ["mnv2_knn"]}))
    assert [(m.name, m.kind) for m in reg] == [
        ("small_cnn", CNN),
        ("b2", CNN),
        ("twoflow", TWOFLOW),
        ("mnv2_logistic", FROZEN),
        ("mnv2_knn", FROZEN),
        ("mate", EXTERNAL),
        ("mnv2_knn_pl", PSEUDO),
    ]
    assert reg["mnv2_knn_pl"].frozen.name == "mnv2" and reg["mnv2_knn_pl"].head == "knn"
    assert reg.names(FROZEN, PSEUDO) == ["mnv2_logistic", "mnv2_knn", "mnv2_knn_pl"]
    assert [m.name for m in reg if not m.scorable] == ["mate"]
    with pytest.raises(KeyError, match="'nope' is not a member.*small_cnn"):
        reg["nope"]


def test_fold_and_model_files():
    reg = Registry(_cfg())
    b = Path("build/x")
    assert reg["b2"].fold_file(b, 3) == b / "preds" / "b2.fold3.npz"
    assert reg["twoflow"].fold_file(b, 0) == b / "preds" / "twoflow.fold0.npz"
    assert reg["mnv2_knn"].fold_file(b, 1) == b / "members" / "mnv2_knn.fold1.npz"
    assert reg["mate"].fold_file(b, 2) == b / "external" / "mate.fold2.npz"
    assert reg["b2"].model_path(b, 3) == b / "cnn" / "b2.fold3"
    assert reg["twoflow"].model_path(b, 4) == b / "twoflow" / "fold4.joblib"
    assert reg["mnv2_knn"].model_path(b, 1) == b / "frozen" / "mnv2_knn.fold1.head.npz"
    with pytest.raises(ValueError, match="external"):
        reg["mate"].model_path(b, 0)
    assert reg.fold_files(b, [0, 1], CNN)[1:3] == [
        b / "preds" / "small_cnn.fold1.npz",
        b / "preds" / "b2.fold0.npz",
    ]


def test_make_lines_name_members_and_folders():
    lines = make_variables(Registry(_cfg(twoflow={"enabled": False})))
    assert "TWOFLOW_MEMBERS := " in lines
    assert "FROZEN_MEMBERS := mnv2_logistic mnv2_knn" in lines
    assert "EXTERNAL := mate" in lines and "PSEUDO_MEMBERS := " in lines
    assert {"CNN_DIR := preds", "FROZEN_DIR := members", "HEADS_DIR := frozen"} <= set(lines)
    assert not any(line.startswith("BACKBONES") for line in lines)  # the training's own line
