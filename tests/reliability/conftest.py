"""Fixtures of the reliability tests: a small good data set the cases copy and break."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_config_text, write_dataset


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """20 train + 5 test images of 16 px and a config for them (``c.toml``): read only."""
    root = tmp_path_factory.mktemp("good")
    write_dataset(root, n_train=20, n_test=5, size=16)
    (root / "c.toml").write_text(tiny_config_text(root))
    return root
