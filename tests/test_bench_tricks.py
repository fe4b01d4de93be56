"""`make bench-tricks`: each trick's config is the base config with exactly that switch on."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest

from benchmarks.bench_tricks import GUARD_INCUMBENT, REPEAT_SEED, TRICKS, trick_config
from pipeline.config.schema import config_from_dict
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["demo", "clothing_attributes", "clothing_co_parsing"])
def test_each_trick_switches_on_one_thing(name):
    text = (ROOT / "configs" / f"{name}.toml").read_text()
    base = config_from_dict(tomllib.loads(text))
    for trick in TRICKS:
        cfg = config_from_dict(tomllib.loads(trick_config(text, trick)))
        changed = {
            k
            for k in ("train", "frozen", "pseudo", "denoise", "stack", "data", "twoflow")
            if getattr(cfg, k) != getattr(base, k)
        }
        want = {
            "pseudo": "pseudo",
            "denoise": "denoise",
            "rate": "stack",
            "repeat": "train",
            "guard": "stack",
        }
        assert changed == {want[trick]}, trick
    rate = config_from_dict(tomllib.loads(trick_config(text, "rate")))
    assert rate.stack.rules == (*base.stack.rules, "rate")
    guard = config_from_dict(tomllib.loads(trick_config(text, "guard")))
    assert guard.stack == replace(base.stack, incumbent=GUARD_INCUMBENT)
    repeat = config_from_dict(tomllib.loads(trick_config(text, "repeat")))
    first, extra = repeat.train.backbones[0], repeat.train.backbones[-1]
    assert extra.architecture == first.architecture and extra.seed == REPEAT_SEED
    assert (extra.epochs, extra.phases, extra.weights) == (
        first.epochs,
        first.phases,
        first.weights,
    )
    with pytest.raises(ValueError, match="unknown trick"):
        trick_config(text, "mixup")
