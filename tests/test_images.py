"""Decoding (pipeline/runtime/images.py): formats converted to uint8 RGB, EXIF orientation honoured."""

import cv2
import numpy as np
import pytest

from pipeline.runtime.images import load_image


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


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    """The issue's 30000 x 30000 PNG (882 KB; 2.7 GB as RGB pixels) is refused before any
    decode: in well under a second, by a process whose peak memory stays small."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.reliability.test_bad_input import png_bomb

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb())
    assert len(path.read_bytes()) < 1_000_000
    code = (
        "import resource, time\n"
        "from pipeline.runtime.images import decode_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.perf_counter()\n"
        "try:\n"
        f"    decode_image({str(path)!r})\n"
        "except ValueError as exc:\n"
        "    print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
        " - before, exc, sep='|')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    seconds, grew_kb, message = r.stdout.strip().split("|")
    assert float(seconds) < 1.0
    assert int(grew_kb) < 100_000  # KB: nothing near the 900 MB a decode would allocate
    assert message.endswith(
        "bomb.png: too many pixels (900 megapixels; the limit is 134 "
        "megapixels): downscale the image or remove its row"
    )


def test_check_pixels_reads_sizes_from_headers_and_applies_the_limit():
    from pipeline.runtime.images import MAX_PIXELS, check_pixels
    from tests.reliability.test_bad_input import png_bomb

    ok, png = cv2.imencode(".png", np.zeros((30, 20, 3), np.uint8))
    assert check_pixels(png.tobytes()) == (20, 30, 1)
    assert check_pixels(png_bomb(11000, 12000)) == (11000, 12000, 1)  # 132 MP: allowed
    assert 11000 * 12000 <= MAX_PIXELS < 12000 * 12000
    with pytest.raises(ValueError, match=r"^up.png: too many pixels \(20 x 30 = 0 megapixels"):
        check_pixels(png.tobytes(), limit=500, name="up.png", fix="upload a smaller image")
    assert check_pixels(b"not an image") is None  # the decoder will say what is wrong
