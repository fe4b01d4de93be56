"""Exact and near copies (pipeline/data/duplicates.py): pHash + colour thumbnail, groups."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from pipeline.data.duplicates import copy_groups, duplicate_groups, near_pairs, validate_images


@pytest.fixture
def photos(tmp_path):
    """A smooth 'photo', its byte copy, a JPEG re-encode, a recoloured copy, another photo."""
    rng = np.random.default_rng(0)

    def photo():
        small = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
        return cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC)

    img = photo()
    paths = [tmp_path / n for n in ("a.png", "a_copy.png", "a.jpg", "a_red.png", "b.png")]
    cv2.imwrite(str(paths[0]), img)
    shutil.copy(paths[0], paths[1])
    cv2.imwrite(str(paths[2]), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(str(paths[3]), img[..., ::-1])  # channels swapped: same shapes, other colours
    cv2.imwrite(str(paths[4]), photo())
    return paths


def test_near_copies_are_found_and_recoloured_ones_are_not(photos):
    prints = validate_images(photos)
    assert len(prints) == 5 and prints.thumb.shape == (5, 48)
    # byte copy at 0 bits, the JPEG re-encode at 2
    assert near_pairs(prints, max_distance=4) == [(0, 1, 0), (0, 2, 2), (1, 2, 2)]
    # the recoloured copy is 6 bits away (pHash is colour-blind) but its thumbnail differs:
    # not a copy even at 8 bits; the other photo is 40 bits away
    assert bin(int(prints.phash[0]) ^ int(prints.phash[3])).count("1") == 6
    assert near_pairs(prints, max_distance=8) == [(0, 1, 0), (0, 2, 2), (1, 2, 2)]
    assert len(near_pairs(prints, max_distance=64)) == 3
    exact, groups = copy_groups(photos, prints, max_distance=4)
    assert exact.tolist() == [0, 0, 2, 3, 4] and groups.tolist() == [0, 0, 0, 3, 4]
    assert copy_groups(photos, prints, max_distance=-1)[1].tolist() == [0, 0, 2, 3, 4]


def test_groups_join_transitively():
    assert duplicate_groups(6, [(2, 5, 1), (0, 2, 0)]).tolist() == [0, 1, 0, 3, 4, 0]


def test_a_truncated_image_names_its_row(photos, tmp_path):
    data = photos[0].read_bytes()
    photos[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"labels.csv row 3: .*a_copy.png"):
        validate_images(photos, tmp_path / "labels.csv")
