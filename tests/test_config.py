import json

import pytest

from pipeline.config.schema import config_from_dict, config_hash, load_config, section_payloads
from stages.resolve_config import run as resolve

ROOT_CFG = "configs/demo.toml"


def test_demo_config_loads():
    cfg = load_config(ROOT_CFG)
    assert cfg.thresholds.beta == 2.0
    assert len(cfg.train.backbones) >= 2
    assert cfg.backbone(cfg.train.backbones[0].name).name == cfg.train.backbones[0].name


def _raw():
    return {"data": {"train_dir": "a", "test_dir": "b"}, "train": {"backbones": [{"name": "x"}]}}


@pytest.mark.parametrize(
    "patch,match",
    [
        (lambda r: r["data"].update(trian_dir="x"), r"unknown key data\.'trian_dir'"),
        (lambda r: r.update(stak={}), "unknown key 'stak'"),
        (lambda r: r["train"]["backbones"][0].update(epochs="5"), "epochs must be an integer"),
        (lambda r: r["train"]["backbones"][0].update(epochs=0), "outside"),
        (lambda r: r["train"].update(loss="hinge"), "choose one of"),
        (lambda r: r.update(thresholds={"beta": -1.0}), "thresholds.beta"),
        (lambda r: r["train"].update(backbones=[]), "at least one backbone"),
        (lambda r: r["train"].update(backbones=[{"name": "a"}, {"name": "a"}]), "unique"),
        (lambda r: r.update(stack={"eta": []}), "must not be empty"),
        (lambda r: r["data"].pop("train_dir"), "missing required key 'data.train_dir'"),
        (lambda r: r.update(data=[1]), "must be a table"),
        (
            lambda r: r["train"].update(backbones=[{"name": "inception_v3"}]),
            r"backbone 'inception_v3' needs data.image_size >= 75, got data.image_size = 64",
        ),
        (
            lambda r: r.update(frozen=[{"name": "f", "backbone": "xception", "image_size": 64}]),
            r"frozen 'f' backbone 'xception' needs image_size >= 71, got 64",
        ),
        (lambda r: r.update(folds={"near_duplicates": 99}), r"folds.near_duplicates = 99"),
        (
            lambda r: r.update(frozen=[{"name": "cnn.mnv2", "backbone": "mobilenet_v2"}]),
            r"frozen\[0\]\.name = 'cnn\.mnv2'; use letters, digits, _ and - only \(no dots",
        ),
        (
            lambda r: r.update(frozen=[{"name": "a/b", "backbone": "mobilenet_v2"}]),
            r"frozen\[0\]\.name = 'a/b'; use letters, digits",
        ),
        (
            lambda r: r.update(
                frozen=[{"name": "f", "backbone": "mobilenet_v2", "heads": ["svm"]}]
            ),
            r"frozen\[0\]\.heads = \['svm'\]: \['svm'\] are not head kinds; choose from "
            r"\['logistic', 'knn'\]",
        ),
        (lambda r: r.update(stack={"max_depth": []}), "stack.max_depth must not be empty"),
        (lambda r: r.update(stack={"eta": [0.1, 2.0]}), r"stack.eta = \[0.1, 2.0\] is outside"),
        (lambda r: r.update(segmenter={"backbone": "vgg16"}), "segmenter.backbone = 'vgg16'"),
        (
            lambda r: r.update(augment={"skin_cr": [200, 100]}),
            r"augment.skin_cr = \[200, 100\]; write \[lo, hi\] with 0 <= lo <= hi <= 255",
        ),
        (
            lambda r: r.update(augment={"grabcut_iters": 0}),
            "augment.grabcut_iters = 0 must be >= 1",
        ),
        (lambda r: r.update(augment={"variants": 1.5}), "augment.variants must be an integer"),
    ],
)
def test_bad_config_names_the_key(patch, match):
    raw = _raw()
    patch(raw)
    with pytest.raises(ValueError, match=match):
        config_from_dict(raw)


def test_bad_toml_names_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[data\n")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        load_config(p)


def test_sections_rewritten_only_when_changed(tmp_path):
    cfg_path = tmp_path / "c.toml"
    text = open(ROOT_CFG).read()
    cfg_path.write_text(text)
    out = tmp_path / "cfg"
    resolve(cfg_path, out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    cfg_path.write_text(text.replace("top_n = 6", "top_n = 5"))
    resolve(cfg_path, out)
    changed = {p.name for p in out.iterdir() if p.stat().st_mtime_ns != mtimes[p.name]}
    assert changed == {"stack.json", "resolved.json", "vars.mk"}
    assert json.loads((out / "stack.json").read_text())["stack"]["top_n"] == 5


def test_converted_weights_are_make_prerequisites(tmp_path):
    """vars.mk names the converted ImageNet file of every pretrained member (fine-tuned,
    frozen, the segmenter's), so a clean clone's `make all` converts it first."""
    from pipeline.config.schema import LOCAL_IMAGENET

    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(open(ROOT_CFG).read())
    resolve(cfg_path, tmp_path / "cfg")
    lines = (tmp_path / "cfg" / "vars.mk").read_text().splitlines()
    assert f"WEIGHTS_FROZEN_mnv2_128 := {LOCAL_IMAGENET['mobilenet_v2_pt']}" in lines
    resolve("configs/clothing_co_parsing.toml", tmp_path / "ccp")
    lines = (tmp_path / "ccp" / "vars.mk").read_text().splitlines()
    assert f"WEIGHTS_mobilenet_v2_pt := {LOCAL_IMAGENET['mobilenet_v2_pt']}" in lines
    assert f"WEIGHTS_SEGMENTER := {LOCAL_IMAGENET['mobilenet_v2_pt']}" in lines


def test_hash_stable_and_sensitive():
    cfg = load_config(ROOT_CFG)
    assert config_hash(cfg) == config_hash(load_config(ROOT_CFG))
    raw = _raw()
    a = config_hash(config_from_dict(raw))
    raw["stack"] = {"top_n": 3}
    assert a != config_hash(config_from_dict(raw))
    assert "backbone.x" in section_payloads(config_from_dict(raw))


def test_fold_seed_is_derived_once():
    cfg = config_from_dict(_raw())
    assert cfg.train.seed == 7 and cfg.train.fold_seed(0) == 7000 and cfg.train.fold_seed(3) == 7003
