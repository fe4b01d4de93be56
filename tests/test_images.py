"""Decoding (pipeline/images.py): formats converted to uint8 RGB, EXIF orientation honoured."""

import cv2
import numpy as np
import pytest

from pipeline.images import load_image


def test_load_image_converts_formats(tmp_path):
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((10, 12), 200, np.uint8))
    rgba = tmp_path / "a.png"
    cv2.imwrite(str(rgba), np.full((10, 10, 4), 100, np.uint8))
    deep = tmp_path / "d.png"
    cv2.imwrite(str(deep), np.full((10, 10, 3), 65535, np.uint16))
    assert load_image(gray, 16).shape == (16, 16, 3)
    assert load_image(rgba).shape == (10, 10, 3)
    assert load_image(deep).max() == 255
    bgr = tmp_path / "c.png"
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 2] = 255  # red in BGR
    cv2.imwrite(str(bgr), img)
    assert load_image(bgr)[0, 0].tolist() == [255, 0, 0]  # RGB out
    broken = tmp_path / "t.png"
    broken.write_bytes(b"")
    with pytest.raises(ValueError, match="t.png: cannot decode"):
        load_image(broken)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured_like_a_photo_viewer(tmp_path, orientation):
    """Every stage decodes through load_image, which turns a photo upright by its EXIF tag
    exactly as Pillow's exif_transpose (and photo viewers) do."""
    from PIL import Image, ImageOps

    pixels = np.zeros((6, 10, 3), np.uint8)
    pixels[:2, :3] = (250, 10, 10)  # a red corner top-left, a green stripe right
    pixels[:, -2:] = (10, 250, 10)
    path = tmp_path / "o.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=100, exif=exif)
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = load_image(path)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want).max() <= 8  # JPEG decoders differ by a few levels
    assert got.shape[:2] == ((6, 10) if orientation <= 4 else (10, 6))
