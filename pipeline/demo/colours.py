"""Colours of the demo drawings: naming a garment colour from pixels
(:func:`classify_colour`) and drawing colours that keep the labels honest (garment colours
inside their range's core and never skin-like, skin tones inside the skin box, neutral
clothing that names no colour)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.demo.palette import (
    BLACK_MAX_V,
    CHROMA_MIN_S,
    CHROMA_MIN_V,
    COLOURS,
    DRAW_RANGES,
    OTHER_COLOURS,
    SKIN_CB,
    SKIN_CR,
    WHITE_MAX_S,
    WHITE_MIN_V,
)


def _in_hue_range(h: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return (h >= lo) & (h <= hi) if lo <= hi else (h >= lo) | (h <= hi)


def classify_colour(hsv_pixels: np.ndarray) -> str:
    """Name the main colour of garment pixels given in OpenCV HSV (H 0..179).

    Each pixel votes for ``black`` (dark), ``white`` (light and grey), or the colour whose
    hue range holds its hue (if saturated enough); greys vote for nothing, so pattern
    shades and anti-aliased edges rarely change the winner. Returns a key of
    :data:`COLOURS` or :data:`OTHER_COLOURS`, or ``"other"`` when no pixel votes.

    Args:
        hsv_pixels: array whose last axis is (H, S, V), e.g. ``hsv[mask > 0]`` (n, 3) or
            a whole HSV crop (h, w, 3).
    """
    hsv = np.asarray(hsv_pixels).reshape(-1, 3).astype(np.int32)
    if len(hsv) == 0:
        raise ValueError("classify_colour: no pixels given (is the garment mask empty?)")
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    votes = {
        "black": int(np.count_nonzero(v < BLACK_MAX_V)),
        "white": int(np.count_nonzero((s < WHITE_MAX_S) & (v >= WHITE_MIN_V))),
    }
    chroma = (s >= CHROMA_MIN_S) & (v >= CHROMA_MIN_V)
    for name, rng in (*COLOURS.items(), *OTHER_COLOURS.items()):
        if rng is not None:
            votes[name] = int(np.count_nonzero(chroma & _in_hue_range(h, *rng)))
    best = max(votes, key=votes.__getitem__)
    return best if votes[best] > 0 else "other"


def hsv2bgr(h: float, s: float, v: float) -> tuple[int, int, int]:
    px = np.array([[[round(h) % 180, min(max(s, 0), 255), min(max(v, 0), 255)]]], np.uint8)
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _bgr2(code: int, bgr: Sequence[int]) -> np.ndarray:
    return cv2.cvtColor(np.array([[bgr]], np.uint8), code)[0, 0].astype(np.int32)


def skin_like(bgr: Sequence[int], margin: int = 0) -> bool:
    _, cr, cb = _bgr2(cv2.COLOR_BGR2YCrCb, bgr)
    return (SKIN_CR[0] - margin <= cr <= SKIN_CR[1] + margin) and (
        SKIN_CB[0] - margin <= cb <= SKIN_CB[1] + margin
    )


def lab_dist(a: Sequence[int], b: Sequence[int]) -> float:
    return float(np.linalg.norm(_bgr2(cv2.COLOR_BGR2Lab, a) - _bgr2(cv2.COLOR_BGR2Lab, b)))


def _uniform_hue(rng: np.random.Generator, lo: int, hi: int) -> int:
    span = (hi - lo) % 180
    return int((lo + rng.integers(0, span + 1)) % 180)


def draw_colour(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    """HSV of a main garment colour: jittered inside the colour's core, never skin-like."""
    (hlo, hhi), (slo, shi), (vlo, vhi) = DRAW_RANGES[colour]
    for _ in range(50):
        hsv = (
            _uniform_hue(rng, hlo, hhi),
            int(rng.integers(slo, shi + 1)),
            int(rng.integers(vlo, vhi + 1)),
        )
        if not skin_like(hsv2bgr(*hsv), margin=8):
            return hsv
    return (_uniform_hue(rng, hlo, hhi), shi, vhi)  # most saturated: far from skin


def contrast_bgr(rng: np.random.Generator, hsv: tuple[int, int, int]) -> tuple[int, int, int]:
    """A contrasting shade for stripes/dots: same hue darker (lighter for black), falling
    back to a neutral grey where the shade would look like skin (dark reds do)."""
    h, s, v = hsv
    if v < 100:  # black garment: light grey pattern
        return hsv2bgr(h, min(s, 20), rng.integers(120, 170))
    if s < 60:  # white garment: mid grey pattern
        return hsv2bgr(h, s, rng.integers(120, 165))
    shade = hsv2bgr(h, s, v * rng.uniform(0.5, 0.62))
    if not skin_like(shade, margin=3):
        return shade
    grey = int(rng.integers(80, 105)) if v > 150 else int(rng.integers(160, 180))
    return (grey, grey, grey)


def detail_bgr(hsv: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shade for seams, collars and buttons: a little darker (lighter for black)."""
    h, s, v = hsv
    if v < 100:
        return hsv2bgr(h, s, v + 45)
    shade = hsv2bgr(h, s, v * 0.78)
    return shade if not skin_like(shade, margin=3) else hsv2bgr(h, s, v)


def skin_tone(rng: np.random.Generator) -> tuple[int, int, int]:
    """BGR skin tone from light to dark, inside the YCrCb skin box with a margin."""
    for _ in range(50):
        t = rng.uniform(0.0, 1.0)
        y = 210 - 135 * t + rng.normal(0, 6)
        cr = 143 + 16 * t + rng.normal(0, 3)
        cb = 113 - 11 * t + rng.normal(0, 3)
        ycc = np.array([[[np.clip(y, 0, 255), cr, cb]]], np.uint8)
        bgr = tuple(int(c) for c in cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)[0, 0])
        _, cr2, cb2 = _bgr2(cv2.COLOR_BGR2YCrCb, bgr)
        if SKIN_CR[0] + 4 <= cr2 <= SKIN_CR[1] - 4 and SKIN_CB[0] + 4 <= cb2 <= SKIN_CB[1] - 4:
            return bgr
    return (120, 150, 200)


def neutral(rng: np.random.Generator, vrange: tuple[int, int], max_s: int = 30) -> tuple:
    """Muted clothing colour (trousers, tops under a coat or over a skirt): never a
    labelled colour, never skin-like."""
    for _ in range(50):
        bgr = hsv2bgr(rng.integers(0, 180), rng.integers(0, max_s + 1), rng.integers(*vrange))
        if not skin_like(bgr, margin=3):
            return bgr
    g = int(sum(vrange) // 2)
    return (g, g, g)
