"""The decode cache: byte-identical to decoding, never stale, one decode per file."""

import os

import cv2
import numpy as np
import pytest

from pipeline.data.image_cache import ImageCache, array_path, build_image_cache
from pipeline.models.inference import downsample_pixels
from pipeline.runtime.images import COUNT_DECODES_ENV, load_image


def _images(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "images"
    d.mkdir()
    shapes = {
        "wide.bmp": (20, 30),
        "small.png": (8, 8),
        "exact.png": (16, 16),
        "tall.jpg": (40, 12),
    }
    paths = []
    for name, (h, w) in shapes.items():
        cv2.imwrite(str(d / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(d / name)
    return paths


def test_rows_are_load_image_byte_for_byte(tmp_path):
    paths = _images(tmp_path)
    index = tmp_path / "cache" / "images.index.json"
    build_image_cache(paths, [16, 8], index)
    assert array_path(index, 16).is_file() and array_path(index, 8).is_file()
    cache = ImageCache(index)
    assert cache.stale == ()
    for p in paths:
        for size in (16, 8, 12):  # 12 is not cached: decoded, still the same array
            got = cache.get(p, size)
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, load_image(p, size))
    # the pixel features (full decode -> area resize) come out identical through the cache
    np.testing.assert_array_equal(downsample_pixels(paths, 16, cache), downsample_pixels(paths, 16))
    np.testing.assert_array_equal(downsample_pixels(paths, 8, cache), downsample_pixels(paths, 8))


def test_changed_image_is_never_served_stale_and_rebuild_picks_it_up(tmp_path):
    paths = _images(tmp_path)
    index = tmp_path / "images.index.json"
    build_image_cache(paths, [16], index)
    old = load_image(paths[0], 16)
    # same byte size (BMP: uncompressed), same mtime, other pixels: only the hash tells
    st = os.stat(paths[0])
    cv2.imwrite(str(paths[0]), 255 - cv2.imread(str(paths[0])))
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(paths[0]).st_size == st.st_size
    assert os.stat(paths[0]).st_mtime_ns == st.st_mtime_ns
    new = load_image(paths[0], 16)
    assert not np.array_equal(new, old)
    cache = ImageCache(index)
    assert [os.path.basename(p) for p in cache.stale] == [paths[0].name]
    assert paths[0] not in cache and paths[1] in cache
    np.testing.assert_array_equal(cache.get(paths[0], 16), new)
    # an mtime change alone also makes the row stale (and is what Make rebuilds on)
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert paths[1] not in ImageCache(index)
    build_image_cache(paths, [16], index)
    rebuilt = ImageCache(index)
    assert rebuilt.stale == ()
    np.testing.assert_array_equal(np.load(array_path(index, 16))[0], new)


def test_one_decode_per_file_for_all_sizes(tmp_path, monkeypatch):
    paths = _images(tmp_path)
    counter = tmp_path / "decodes.txt"
    monkeypatch.setenv(COUNT_DECODES_ENV, str(counter))
    build_image_cache(paths, [16, 8, 32], tmp_path / "images.index.json")
    lines = counter.read_text().splitlines()
    assert sorted(lines) == sorted(os.path.abspath(p) for p in paths)
    cache = ImageCache(tmp_path / "images.index.json")
    for p in paths:
        cache.get(p, 8)
    assert len(counter.read_text().splitlines()) == len(paths)  # reads decode nothing


def test_bad_inputs_are_clear_errors(tmp_path):
    paths = _images(tmp_path)
    with pytest.raises(ValueError, match="listed twice"):
        build_image_cache([paths[0], paths[0]], [8], tmp_path / "i.index.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageCache(tmp_path / "missing.index.json")
    bad = tmp_path / "images" / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        build_image_cache([*paths, bad], [8], tmp_path / "i.index.json")
    assert not (tmp_path / "i.index.json").exists()
    assert not list(tmp_path.glob(".i.*"))  # no temp files left behind


def test_training_feed_is_the_same_through_the_cache(tmp_path):
    from pipeline.train.fold import make_feed

    paths = _images(tmp_path)
    index = tmp_path / "images.index.json"
    build_image_cache(paths, [16], index)
    y = np.zeros((len(paths), 2), np.float32)
    order = np.array([2, 0, 3, 1])
    plain = make_feed(paths, y, 16, 2, order=order, augment_seed=5)
    cached = make_feed(paths, y, 16, 2, order=order, augment_seed=5, cache=ImageCache(index))
    for b in range(len(plain)):
        np.testing.assert_array_equal(plain[b][0], cached[b][0])
