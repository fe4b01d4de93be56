"""Procedural demo data set: small drawn outfits with imbalanced multi-label attributes.

The demo data stands in for a real clothing-attribute set so that every stage of the
pipeline (folds, colour-change augmentation, CNNs, stacking, thresholds, submission) can
run end to end in minutes, deterministically. Each image shows one garment (t-shirt, shirt,
dress, coat or skirt) either worn by a drawn person (skin-coloured face, neck, arms, hands,
legs; hair; trousers or bare legs) on a varied background, or alone as a product shot on a
plain light background. Garments have one main colour (HSV with jitter), optional stripes
or dots, and long or short sleeves.

Besides the images the generator writes what it knows: a garment mask and a skin mask per
image (so colour-change augmentation can be tested against ground truth) and ``meta.csv``
with the colour name and the exact hue used. :func:`classify_colour` names a garment colour
from HSV pixels with the same definitions the generator draws from, so a recoloured image
can be checked against its rewritten labels.

Output layout (a contract other modules rely on)::

    DIR/train/labels.csv        image,<LABELS...> (0/1)
    DIR/train/images/tr_00000.png
    DIR/test/test.csv           image
    DIR/test/images/te_00000.png
    DIR/test_truth.csv          image,<LABELS...> (for scoring only)
    DIR/masks/<image>           uint8 0/255, pixels of the labelled garment (train and test)
    DIR/skin_masks/<image>      uint8 0/255, skin pixels (empty for product shots)
    DIR/meta.csv                image,split,garment,colour,hue,pattern,sleeve,person

Every image is drawn from its own random stream seeded by ``(seed, split, index)``, so an
image does not depend on how many others are generated, and parallel generation gives the
same bytes as serial generation.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.artifacts import atomic_dir

log = logging.getLogger(__name__)

GARMENTS: tuple[str, ...] = ("tshirt", "shirt", "dress", "coat", "skirt")
COLOUR_LABELS: tuple[str, ...] = ("red", "blue", "green", "yellow", "black", "white")
PATTERNS: tuple[str, ...] = ("striped", "dotted")

LABELS: tuple[str, ...] = ("person", *GARMENTS, "long_sleeve", *COLOUR_LABELS, *PATTERNS)
"""Label columns of ``labels.csv`` / ``test_truth.csv``, in order."""

COLOURS: dict[str, tuple[int, int] | None] = {
    "red": (170, 8),  # wraps around 179 -> 0
    "blue": (95, 128),
    "green": (40, 85),
    "yellow": (22, 36),
    "black": None,
    "white": None,
}
"""Labelled colours -> inclusive OpenCV hue range (0..179; ``lo > hi`` wraps), or ``None``
for the achromatic colours, which are defined by value/saturation instead (see
:func:`classify_colour`). These are the *classification* ranges; the generator draws hues
from a narrower core of each range so noise and anti-aliasing never cross a boundary."""

OTHER_COLOURS: dict[str, tuple[int, int]] = {"orange": (11, 21), "purple": (132, 160)}
"""Garment colours that exist in the images but have no label column, so the colour
columns are not one-hot complete (a row may have no colour label)."""

# Achromatic / chromatic thresholds shared by the generator and classify_colour.
BLACK_MAX_V = 65  # v < 65 -> black
WHITE_MAX_S = 45  # s < 45 and v >= 185 -> white
WHITE_MIN_V = 185
CHROMA_MIN_S = 70  # s >= 70 and v >= 65 -> named by hue
CHROMA_MIN_V = 65

# Generator draw ranges per colour: hue (lo, hi) inclusive with wrap, saturation, value.
_DRAW: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "red": ((174, 5), (190, 255), (150, 240)),
    "blue": ((102, 122), (150, 255), (120, 230)),
    "green": ((48, 78), (140, 255), (110, 220)),
    "yellow": ((25, 33), (170, 255), (200, 255)),
    "black": ((0, 179), (0, 90), (15, 50)),
    "white": ((0, 179), (0, 25), (215, 250)),
    "orange": ((13, 19), (200, 255), (210, 255)),
    "purple": ((136, 155), (120, 230), (110, 210)),
}

# Attribute distribution: skewed garments, two rare labels (yellow, dotted), person > 40%.
P_PERSON = 0.65
P_GARMENT = {"tshirt": 0.42, "shirt": 0.24, "dress": 0.14, "coat": 0.12, "skirt": 0.08}
P_COLOUR = {
    "blue": 0.25,
    "black": 0.20,
    "white": 0.15,
    "red": 0.14,
    "green": 0.10,
    "yellow": 0.014,
    "orange": 0.07,
    "purple": 0.076,
}
P_PATTERN = {"plain": 0.836, "striped": 0.15, "dotted": 0.014}
P_LONG_SLEEVE = {"tshirt": 0.15, "shirt": 0.65, "dress": 0.25, "coat": 1.0, "skirt": 0.0}
P_SLEEVELESS_DRESS = 0.4  # of the dresses that are not long-sleeved

# Skin box (YCrCb) used by the augmentation stage; skin tones are drawn well inside it and
# backgrounds / garment colours are kept outside it (backgrounds with a margin).
SKIN_CR = (135, 175)
SKIN_CB = (85, 125)

_SPLITS = {"train": (1, "tr"), "test": (2, "te")}  # split -> (stream id, file prefix)


@dataclass(frozen=True)
class Outfit:
    """The sampled ground truth of one image."""

    person: bool
    garment: str
    colour: str
    hue: int
    sat: int
    val: int
    pattern: str  # "plain", "striped" or "dotted"
    sleeve: str  # "long", "short" or "none"

    def labels(self) -> dict[str, int]:
        """0/1 value of every column of :data:`LABELS`."""
        row = dict.fromkeys(LABELS, 0)
        row["person"] = int(self.person)
        row[self.garment] = 1
        row["long_sleeve"] = int(self.sleeve == "long")
        if self.colour in COLOURS:
            row[self.colour] = 1
        if self.pattern in PATTERNS:
            row[self.pattern] = 1
        return row


# ----------------------------------------------------------------------------- colours


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


def _hsv2bgr(h: float, s: float, v: float) -> tuple[int, int, int]:
    px = np.array([[[round(h) % 180, min(max(s, 0), 255), min(max(v, 0), 255)]]], np.uint8)
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _bgr2(code: int, bgr: Sequence[int]) -> np.ndarray:
    return cv2.cvtColor(np.array([[bgr]], np.uint8), code)[0, 0].astype(np.int32)


def _skin_like(bgr: Sequence[int], margin: int = 0) -> bool:
    _, cr, cb = _bgr2(cv2.COLOR_BGR2YCrCb, bgr)
    return (SKIN_CR[0] - margin <= cr <= SKIN_CR[1] + margin) and (
        SKIN_CB[0] - margin <= cb <= SKIN_CB[1] + margin
    )


def _lab_dist(a: Sequence[int], b: Sequence[int]) -> float:
    return float(np.linalg.norm(_bgr2(cv2.COLOR_BGR2Lab, a) - _bgr2(cv2.COLOR_BGR2Lab, b)))


def _uniform_hue(rng: np.random.Generator, lo: int, hi: int) -> int:
    span = (hi - lo) % 180
    return int((lo + rng.integers(0, span + 1)) % 180)


def _draw_colour(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    """HSV of a main garment colour: jittered inside the colour's core, never skin-like."""
    (hlo, hhi), (slo, shi), (vlo, vhi) = _DRAW[colour]
    for _ in range(50):
        hsv = (
            _uniform_hue(rng, hlo, hhi),
            int(rng.integers(slo, shi + 1)),
            int(rng.integers(vlo, vhi + 1)),
        )
        if not _skin_like(_hsv2bgr(*hsv), margin=8):
            return hsv
    return (_uniform_hue(rng, hlo, hhi), shi, vhi)  # most saturated: far from skin


def _contrast_bgr(rng: np.random.Generator, hsv: tuple[int, int, int]) -> tuple[int, int, int]:
    """A contrasting shade for stripes/dots: same hue darker (lighter for black), falling
    back to a neutral grey where the shade would look like skin (dark reds do)."""
    h, s, v = hsv
    if v < 100:  # black garment: light grey pattern
        return _hsv2bgr(h, min(s, 20), rng.integers(120, 170))
    if s < 60:  # white garment: mid grey pattern
        return _hsv2bgr(h, s, rng.integers(120, 165))
    shade = _hsv2bgr(h, s, v * rng.uniform(0.5, 0.62))
    if not _skin_like(shade, margin=3):
        return shade
    grey = int(rng.integers(80, 105)) if v > 150 else int(rng.integers(160, 180))
    return (grey, grey, grey)


def _detail_bgr(hsv: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shade for seams, collars and buttons: a little darker (lighter for black)."""
    h, s, v = hsv
    if v < 100:
        return _hsv2bgr(h, s, v + 45)
    shade = _hsv2bgr(h, s, v * 0.78)
    return shade if not _skin_like(shade, margin=3) else _hsv2bgr(h, s, v)


def _skin_tone(rng: np.random.Generator) -> tuple[int, int, int]:
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


def _neutral(rng: np.random.Generator, vrange: tuple[int, int], max_s: int = 30) -> tuple:
    """Muted clothing colour (trousers, tops under a coat or over a skirt): never a
    labelled colour, never skin-like."""
    for _ in range(50):
        bgr = _hsv2bgr(rng.integers(0, 180), rng.integers(0, max_s + 1), rng.integers(*vrange))
        if not _skin_like(bgr, margin=3):
            return bgr
    g = int(sum(vrange) // 2)
    return (g, g, g)


def _sample_outfit(rng: np.random.Generator) -> Outfit:
    person = bool(rng.random() < P_PERSON)
    garment = str(rng.choice(list(P_GARMENT), p=list(P_GARMENT.values())))
    colour = str(rng.choice(list(P_COLOUR), p=list(P_COLOUR.values())))
    pattern = str(rng.choice(list(P_PATTERN), p=list(P_PATTERN.values())))
    if garment == "skirt":
        sleeve = "none"
    elif rng.random() < P_LONG_SLEEVE[garment]:
        sleeve = "long"
    elif garment == "dress" and rng.random() < P_SLEEVELESS_DRESS:
        sleeve = "none"
    else:
        sleeve = "short"
    h, s, v = _draw_colour(rng, colour)
    return Outfit(person, garment, colour, h, s, v, pattern, sleeve)


# ---------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Body:
    """Canonical body geometry in canvas units (0..1, y down), mildly randomised."""

    cx: float
    head_y: float
    head_rx: float
    head_ry: float
    sy: float  # shoulder line
    sw: float  # shoulder half width
    wy: float  # waist line
    ww: float
    hy: float  # hip line
    hw: float
    arm_angle: float  # radians outward from vertical
    arm_len: float
    arm_w: float  # arm half width at the shoulder
    ankle_y: float
    leg_dx: float  # leg centre offset from cx at the ankle

    def joint(self, side: int) -> np.ndarray:
        return np.array([self.cx + side * (self.sw - 0.028), self.sy + 0.028])

    def arm_dir(self, side: int) -> np.ndarray:
        return np.array([side * math.sin(self.arm_angle), math.cos(self.arm_angle)])


def _sample_body(rng: np.random.Generator, product: bool) -> _Body:
    rx = rng.uniform(0.052, 0.062)
    return _Body(
        cx=0.5,
        head_y=0.125,
        head_rx=rx,
        head_ry=rx * rng.uniform(1.2, 1.32),
        sy=0.255,
        sw=rng.uniform(0.115, 0.135),
        wy=rng.uniform(0.48, 0.5),
        ww=rng.uniform(0.08, 0.095),
        hy=0.575,
        hw=rng.uniform(0.1, 0.112),
        arm_angle=math.radians(rng.uniform(35, 50) if product else rng.uniform(8, 22)),
        arm_len=rng.uniform(0.29, 0.32),
        arm_w=0.027,
        ankle_y=rng.uniform(0.93, 0.96),
        leg_dx=rng.uniform(0.045, 0.07),
    )


def _segment(p0: np.ndarray, p1: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """Quadrilateral around the segment p0 -> p1 with half widths w0, w1."""
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    return np.array([p0 + n * w0, p1 + n * w1, p1 - n * w1, p0 - n * w0])


class _Piece(NamedTuple):
    """One polygon of a garment, in canonical canvas units.

    ``role`` is ``"main"`` (cloth: gets the garment colour and pattern), ``"hole"`` (cut
    out of the cloth drawn so far: necklines, an open coat front) or ``"detail"`` (seams,
    collars, cuffs, buttons: drawn last in a darker shade, still part of the garment mask).
    """

    role: str
    pts: np.ndarray


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, a0=0.0, a1=360.0, n=24):
    """Polygon along an ellipse arc (angles in degrees, clockwise on screen from +x)."""
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(p0, p1, width: float) -> np.ndarray:
    return _segment(np.asarray(p0, float), np.asarray(p1, float), width / 2, width / 2)


def _sleeves(b: _Body, sleeve: str, extra: float, torso_extra: float = 0.0) -> list[_Piece]:
    """Sleeves joined to the torso outline at the shoulder and armpit points of
    :func:`_upper`, ending around the arm: short (upper arm, flared) or long (to the
    wrist, with a cuff)."""
    if sleeve == "none":
        return []
    frac = 0.95 if sleeve == "long" else 0.4
    sw = b.sw + torso_extra
    out = []
    for side in (-1, 1):
        j, d = b.joint(side), b.arm_dir(side)
        n_out = np.array([side * d[1], -abs(d[0])])  # normal pointing up and outward
        end = j + d * b.arm_len * frac
        w1 = b.arm_w + extra if sleeve == "long" else b.arm_w + extra + 0.008
        shoulder = np.array([b.cx + side * sw, b.sy + 0.008])
        armpit = np.array([b.cx + side * (sw - 0.008), b.sy + 0.1])
        out.append(_Piece("main", np.array([shoulder, end + n_out * w1, end - n_out * w1, armpit])))
        if sleeve == "long":
            out.append(_Piece("detail", _segment(end - d * 0.025, end, w1, w1)))  # cuff
    return out


def _upper(b: _Body, hem_y: float, hem_w: float, extra: float = 0.0) -> np.ndarray:
    """Torso outline from shoulders to a hem, as one polygon (neck left open by a hole)."""
    cx, sw = b.cx, b.sw + extra
    half = [
        (0.045, b.sy - 0.012),
        (sw, b.sy + 0.008),
        (sw - 0.008, b.sy + 0.1),
        (b.ww + extra, b.wy),
        (hem_w, hem_y),
    ]
    return np.array([(cx - x, y) for x, y in half] + [(cx + x, y) for x, y in half[::-1]])


def _garment_pieces(o: Outfit, b: _Body, product: bool, rng: np.random.Generator) -> list[_Piece]:
    """The garment as polygons: the outline differs per type (t-shirt: short boxy top with
    a round neck; shirt: longer, collar, placket and buttons; dress: fitted top flaring to
    the knee; coat: long, wide, open front with lapels on a person, buttons; skirt: lower
    body only, waistband and pleats)."""
    cx, sy = b.cx, b.sy

    def main(pts) -> _Piece:
        return _Piece("main", np.asarray(pts, float))

    def hole(pts) -> _Piece:
        return _Piece("hole", np.asarray(pts, float))

    def detail(pts) -> _Piece:
        return _Piece("detail", np.asarray(pts, float))

    pieces: list[_Piece] = []
    if o.garment == "tshirt":
        pieces.append(main(_upper(b, b.hy + 0.02, b.hw + 0.005)))
        pieces += _sleeves(b, o.sleeve, 0.012)
        pieces.append(hole(_ellipse_pts(cx, sy - 0.012, 0.04, 0.032)))
        rib = np.vstack(
            [
                _ellipse_pts(cx, sy - 0.012, 0.048, 0.04, 0, 180, 12),
                _ellipse_pts(cx, sy - 0.012, 0.04, 0.032, 180, 0, 12),
            ]
        )
        pieces.append(detail(rib))
    elif o.garment == "shirt":
        pieces.append(main(_upper(b, b.hy + 0.045, b.hw + 0.008)))
        pieces += _sleeves(b, o.sleeve, 0.01)
        pieces.append(hole([(cx - 0.04, sy - 0.015), (cx, sy + 0.045), (cx + 0.04, sy - 0.015)]))
        for side in (-1, 1):  # collar points
            pieces.append(
                detail(
                    [
                        (cx + side * 0.046, sy - 0.02),
                        (cx + side * 0.004, sy + 0.05),
                        (cx + side * 0.06, sy + 0.035),
                    ]
                )
            )
        pieces.append(detail(_line((cx, sy + 0.05), (cx, b.hy + 0.045), 0.006)))  # placket
        for k in range(4):
            pieces.append(
                detail(_ellipse_pts(cx + 0.012, sy + 0.09 + k * 0.065, 0.008, 0.008, n=12))
            )
    elif o.garment == "dress":
        hem_y, hem_w = rng.uniform(0.78, 0.85), rng.uniform(0.16, 0.2)
        if o.sleeve == "none":  # strap dress
            top = sy + 0.045
            half = [(b.sw - 0.025, top), (b.ww, b.wy), (hem_w, hem_y)]
            pieces.append(
                main([(cx - x, y) for x, y in half] + [(cx + x, y) for x, y in half[::-1]])
            )
            for side in (-1, 1):
                pieces.append(main(_line((cx + side * 0.07, top), (cx + side * 0.075, sy), 0.014)))
            pieces.append(hole(_ellipse_pts(cx, top, 0.045, 0.03)))
        else:
            pts = _upper(b, b.wy, b.ww)
            pieces.append(
                main(np.vstack([pts[:4], [(cx - hem_w, hem_y), (cx + hem_w, hem_y)], pts[6:]]))
            )
            pieces += _sleeves(b, o.sleeve, 0.01)
            pieces.append(hole(_ellipse_pts(cx, sy - 0.005, 0.045, 0.045)))
        pieces.append(detail(_line((cx - b.ww, b.wy), (cx + b.ww, b.wy), 0.01)))  # waist seam
    elif o.garment == "coat":
        hem_y = rng.uniform(0.8, 0.87)
        pieces.append(main(_upper(b, hem_y, b.hw + 0.035, extra=0.012)))
        pieces += _sleeves(b, "long", 0.02, torso_extra=0.012)
        open_y = b.wy - 0.02
        if product:  # laid flat, buttoned up
            pieces.append(hole(_ellipse_pts(cx, sy - 0.01, 0.04, 0.03)))
            pieces.append(detail(_line((cx, sy + 0.02), (cx, hem_y), 0.006)))
        else:  # worn open at the top: the top underneath shows
            v = np.array([(cx - 0.045, sy - 0.02), (cx, open_y), (cx + 0.045, sy - 0.02)])
            pieces.append(hole(v))
            for side in (-1, 1):  # lapels
                pieces.append(detail(_line(v[1], v[1 + side], 0.012)))
            pieces.append(detail(_line((cx, open_y), (cx, hem_y), 0.006)))
        for k in range(3):
            pieces.append(
                detail(_ellipse_pts(cx + 0.018, open_y + 0.04 + k * 0.07, 0.01, 0.01, n=12))
            )
        for side in (-1, 1):  # pockets
            pieces.append(detail(_line((cx + side * 0.04, b.hy), (cx + side * 0.09, b.hy), 0.008)))
    elif o.garment == "skirt":
        hem_y, hem_w = rng.uniform(0.74, 0.8), rng.uniform(0.15, 0.19)
        w = b.ww + 0.005
        pieces.append(
            main([(cx - w, b.wy), (cx - hem_w, hem_y), (cx + hem_w, hem_y), (cx + w, b.wy)])
        )
        pieces.append(detail(_line((cx - w, b.wy + 0.012), (cx + w, b.wy + 0.012), 0.024)))  # band
        for k in (-1, 1):  # pleats
            pieces.append(
                detail(_line((cx + k * 0.035, b.wy + 0.03), (cx + k * hem_w * 0.55, hem_y), 0.005))
            )
    else:
        raise ValueError(f"unknown garment {o.garment!r}; expected one of {GARMENTS}")
    return pieces


# --------------------------------------------------------------------------- rendering


class _Canvas:
    """High-resolution drawing surface with a garment and a skin mask kept in step."""

    def __init__(self, side: int, supersample: int, background: np.ndarray) -> None:
        self.side, self.supersample = side, supersample
        self.img = background
        self.garment = np.zeros((side, side), np.uint8)
        self.skin = np.zeros((side, side), np.uint8)
        self.scale, self.off = 1.0, np.zeros(2)

    def set_transform(self, scale: float, dx: float, dy: float) -> None:
        self.scale, self.off = scale, np.array([dx, dy])

    def px(self, pts) -> np.ndarray:
        p = (np.asarray(pts, float) - 0.5) * self.scale + 0.5 + self.off
        return np.round(p * self.side).astype(np.int32)

    def length(self, x: float) -> int:
        return max(1, round(x * self.scale * self.side))

    def _masks(self, kind: str, draw) -> None:
        draw(self.skin, 255 if kind == "skin" else 0)
        draw(self.garment, 255 if kind == "garment" else 0)

    def poly(self, pts, colour, kind: str = "other") -> None:
        p = [self.px(pts)]
        cv2.fillPoly(self.img, p, colour)
        self._masks(kind, lambda m, c: cv2.fillPoly(m, p, c))

    def ellipse(self, c, rx, ry, colour, kind: str = "other", a0: int = 0, a1: int = 360) -> None:
        args = (tuple(self.px(c)), (self.length(rx), self.length(ry)), 0, a0, a1)
        cv2.ellipse(self.img, *args, colour, -1)
        self._masks(kind, lambda m, col: cv2.ellipse(m, *args, col, -1))


def _background(rng: np.random.Generator, size: int, avoid: Sequence, product: bool) -> np.ndarray:
    """Background at the output size (smooth, upsampled later): a plain light backdrop for
    product shots; solid, gradient, wall+floor or mottled texture behind a person. Never
    skin-like and never close to the garment or skin colours in ``avoid``."""
    kinds = ("solid", "gradient", "floor", "texture")
    kind = "solid" if product else kinds[rng.integers(len(kinds))]
    for _ in range(60):
        if product:
            cols = [_hsv2bgr(rng.integers(0, 180), rng.integers(0, 50), rng.integers(165, 250))]
        else:
            cols = [
                _hsv2bgr(rng.integers(0, 180), rng.integers(0, 120), rng.integers(60, 240))
                for _ in range(2)
            ]
        probe = cols + [tuple(int(x * 0.85) for x in cols[0])]  # product shadow
        if kind == "gradient":
            c0, c1 = np.array(cols[0]), np.array(cols[1])
            probe += [tuple(int(x) for x in c0 + (c1 - c0) * t) for t in (0.25, 0.5, 0.75)]
        if any(_skin_like(c, margin=4) for c in probe):
            continue
        if any(
            _lab_dist(c, a) < 38
            for c in cols[: 1 if kind in ("solid", "texture") else 2]
            for a in avoid
        ):
            continue
        break
    else:  # practically never: a slate grey-blue, chroma far from skin
        cols = [(175, 150, 130), (150, 125, 105)]
    c0, c1 = np.array(cols[0], np.float32), np.array(cols[-1], np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    if kind == "solid":
        img = np.broadcast_to(c0, (size, size, 3)).copy()
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        img = c0 + (c1 - c0) * t[..., None]
    elif kind == "floor":
        horizon = rng.uniform(0.62, 0.8)
        img = np.where((yy < horizon)[..., None], c0, c1)
    else:
        blobs = rng.normal(0, 1, (5, 5)).astype(np.float32)
        field = cv2.resize(blobs, (size, size), interpolation=cv2.INTER_CUBIC)
        img = c0 + field[..., None] * rng.uniform(6, 12)
    return np.clip(img, 0, 255).astype(np.uint8)


def _pattern_mask(rng: np.random.Generator, pattern: str, side: int, scale: float) -> np.ndarray:
    """Stripes or dots on a ``side x side`` grid (canvas units scaled like the garment)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    if pattern == "striped":
        period = rng.uniform(0.055, 0.075) * scale
        a = rng.choice([0.0, math.pi / 2, math.pi / 4, -math.pi / 4], p=[0.55, 0.25, 0.1, 0.1])
        t = (xx * math.sin(a) + yy * math.cos(a)) / period + rng.uniform(0, 1)
        return (t - np.floor(t)) < 0.42
    period = rng.uniform(0.07, 0.09) * scale
    u, v = xx / period + rng.uniform(0, 1), yy / period + rng.uniform(0, 1)
    row = np.round(v)  # nearest lattice row; odd rows shifted by half a period
    u = u + 0.5 * (row % 2)
    du, dv = u - np.round(u), v - row
    return du * du + dv * dv < 0.25**2


def _solid(like: np.ndarray, colour: Sequence[int]) -> np.ndarray:
    """Image shaped like ``like`` filled with ``colour`` (cv2 fill: ~30x faster than NumPy
    broadcasting a 3-tuple)."""
    out = np.empty_like(like)
    cv2.rectangle(out, (0, 0), (like.shape[1], like.shape[0]), tuple(int(c) for c in colour), -1)
    return out


def _draw_garment(cv: _Canvas, pieces: list[_Piece], o: Outfit, rng: np.random.Generator) -> None:
    """Composite the garment: cloth minus holes in the main colour, the pattern inside it,
    then details; the garment mask gets every garment pixel, the skin mask loses them."""
    layer = np.zeros_like(cv.garment)
    for p in pieces:
        if p.role != "detail":
            cv2.fillPoly(layer, [cv.px(p.pts)], 255 if p.role == "main" else 0)
    cv2.copyTo(_solid(cv.img, _hsv2bgr(o.hue, o.sat, o.val)), layer, cv.img)
    if o.pattern != "plain":
        # drawn on the output pixel grid, so downsampling never blends the pattern with the
        # garment colour (red blended with grey passes through skin tones)
        small = _pattern_mask(rng, o.pattern, cv.side // cv.supersample, cv.scale)
        full = cv2.resize(
            small.astype(np.uint8), (cv.side, cv.side), interpolation=cv2.INTER_NEAREST
        )
        contrast = _solid(cv.img, _contrast_bgr(rng, (o.hue, o.sat, o.val)))
        cv2.copyTo(contrast, cv2.bitwise_and(layer, full * 255), cv.img)
    cv2.bitwise_or(cv.garment, layer, dst=cv.garment)
    cv2.bitwise_and(cv.skin, cv2.bitwise_not(layer), dst=cv.skin)
    detail = _detail_bgr((o.hue, o.sat, o.val))
    for p in pieces:
        if p.role == "detail":
            cv.poly(p.pts, detail, "garment")


def _draw_person(cv: _Canvas, o: Outfit, b: _Body, skin, rng: np.random.Generator) -> None:
    """Everything of the person below the garment layer: hair, skin, trousers, shoes."""
    cx = b.cx
    hair = _hsv2bgr(
        *[
            (0, 0, rng.integers(15, 40)),
            (rng.integers(8, 16), rng.integers(90, 160), rng.integers(35, 80)),
            (rng.integers(18, 24), rng.integers(90, 150), rng.integers(140, 190)),
        ][rng.choice(3, p=[0.45, 0.4, 0.15])]
    )
    style = rng.choice(["short", "long", "none"], p=[0.5, 0.42, 0.08])
    head = np.array([cx, b.head_y])
    if style == "long":
        hl = b.sy + rng.uniform(0.02, 0.08)
        cv.poly(
            [
                (cx - b.head_rx * 1.15, b.head_y),
                (cx + b.head_rx * 1.15, b.head_y),
                (cx + b.head_rx * 1.3, hl),
                (cx - b.head_rx * 1.3, hl),
            ],
            hair,
        )
    if style != "none":
        cv.ellipse(head - (0, 0.008), b.head_rx * 1.12, b.head_ry * 1.05, hair)
    # torso skin (shows at necklines, over a skirt's top straps) and arms, hands
    cv.poly(_upper(b, b.hy, b.hw), skin, "skin")
    for side in (-1, 1):
        j, d = b.joint(side), b.arm_dir(side)
        wrist = j + d * b.arm_len
        cv.poly(_segment(j - d * 0.02, wrist, b.arm_w, b.arm_w * 0.72), skin, "skin")
        cv.ellipse(wrist + d * 0.018, 0.022, 0.026, skin, "skin")
    # legs: bare under dresses and skirts, trousers otherwise
    if o.garment in ("dress", "skirt"):
        for side in (-1, 1):
            cv.poly(
                _segment(
                    np.array([cx + side * 0.05, b.hy - 0.02]),
                    np.array([cx + side * b.leg_dx, b.ankle_y]),
                    0.045,
                    0.026,
                ),
                skin,
                "skin",
            )
    else:
        trousers = _neutral(rng, (40, 130), max_s=60)
        cv.poly(
            [
                (cx - b.ww - 0.006, b.wy),
                (cx + b.ww + 0.006, b.wy),
                (cx + b.hw, b.hy),
                (cx + b.leg_dx + 0.038, b.ankle_y),
                (cx + b.leg_dx - 0.034, b.ankle_y),
                (cx, b.hy + 0.06),
                (cx - b.leg_dx + 0.034, b.ankle_y),
                (cx - b.leg_dx - 0.038, b.ankle_y),
                (cx - b.hw, b.hy),
            ],
            trousers,
        )
    shoes = _neutral(rng, (15, 90))
    for side in (-1, 1):
        cv.ellipse((cx + side * (b.leg_dx + 0.01), b.ankle_y + 0.01), 0.04, 0.022, shoes)
    # under-layers that are clothing but not the labelled garment
    if o.garment == "skirt":
        top = _neutral(rng, (90, 175))
        tank = np.array(
            [
                (cx - b.sw + 0.035, b.sy + 0.02),
                (cx - b.ww, b.wy + 0.02),
                (cx + b.ww, b.wy + 0.02),
                (cx + b.sw - 0.035, b.sy + 0.02),
            ]
        )
        cv.poly(tank, top)
    elif o.garment == "coat":
        cv.poly(_upper(b, b.wy, b.ww), _neutral(rng, (90, 200)))
    # neck, head, face, fringe
    cv.poly(_segment(head, np.array([cx, b.sy + 0.01]), 0.024, 0.026), skin, "skin")
    cv.ellipse(head, b.head_rx, b.head_ry, skin, "skin")
    eye_y = b.head_y + b.head_ry * 0.05
    for side in (-1, 1):
        cv.ellipse((cx + side * b.head_rx * 0.42, eye_y), 0.007, 0.007, (40, 30, 30))
    lips = tuple(int(c * 0.82) for c in skin)
    cv.ellipse((cx, b.head_y + b.head_ry * 0.55), b.head_rx * 0.3, 0.006, lips, "skin")
    if style != "none":
        cv.ellipse(
            head - (0, b.head_ry * 0.3), b.head_rx * 1.05, b.head_ry * 0.76, hair, a0=180, a1=360
        )


def _bbox(pieces: list[_Piece]) -> tuple[float, float, float, float]:
    p = np.vstack([p.pts for p in pieces if p.role == "main"])
    return p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()


def _downsample_mask(mask: np.ndarray, f: int) -> np.ndarray:
    """Majority vote over each f x f block (INTER_AREA mean of 0/255 above 128, i.e. more
    than half covered), so disjoint high-resolution masks stay disjoint and line up with
    the INTER_AREA image."""
    n = mask.shape[0] // f
    area = cv2.resize(mask, (n, n), interpolation=cv2.INTER_AREA)
    return np.where(area > 128, 255, 0).astype(np.uint8)


def render(
    outfit: Outfit, size: int, rng: np.random.Generator, supersample: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one outfit. Returns (BGR image, garment mask, skin mask), all ``size x size``."""
    side = size * supersample
    product = not outfit.person
    body = _sample_body(rng, product)
    skin = _skin_tone(rng)
    pieces = _garment_pieces(outfit, body, product, rng)
    main = _hsv2bgr(outfit.hue, outfit.sat, outfit.val)
    bg = _background(rng, size, [main] if product else [main, skin], product)
    cv = _Canvas(side, supersample, cv2.resize(bg, (side, side), interpolation=cv2.INTER_LINEAR))
    if product:
        x0, y0, x1, y1 = _bbox(pieces)
        scale = rng.uniform(0.68, 0.82) / max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        dx = (0.5 - cx) * scale + rng.uniform(-0.04, 0.04)
        dy = (0.5 - cy) * scale + rng.uniform(-0.04, 0.04)
        # product shadow: the garment silhouette, offset and darker
        cv.set_transform(scale, dx + 0.015, dy + 0.02)
        shadow = tuple(int(c * 0.85) for c in bg[0, 0])
        for p in pieces:
            if p.role == "main":
                cv.poly(p.pts, shadow)
        cv.set_transform(scale, dx, dy)
    else:
        # zoomed in on the upper body at larger scales (feet cropped), head kept in frame
        scale = rng.uniform(0.95, 1.35)
        head_top = (body.head_y - body.head_ry * 1.1 - 0.5) * scale + 0.5
        cv.set_transform(scale, rng.uniform(-0.06, 0.06), rng.uniform(0.02, 0.06) - head_top)
        _draw_person(cv, outfit, body, skin, rng)
    _draw_garment(cv, pieces, outfit, rng)
    img = cv2.resize(cv.img, (size, size), interpolation=cv2.INTER_AREA)
    noise = rng.normal(0, rng.uniform(0.5, 3.0), img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, _downsample_mask(cv.garment, supersample), _downsample_mask(cv.skin, supersample)


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    return np.random.default_rng([seed, _SPLITS[split][0], index])


def outfits(seed: int, split: str, n: int) -> list[Outfit]:
    """Ground truth of the first ``n`` images of ``split`` without drawing them (the outfit
    is the first thing drawn from each image's stream), e.g. to check prevalences fast."""
    return [_sample_outfit(_image_rng(seed, split, i)) for i in range(n)]


def make_image(
    seed: int, split: str, index: int, size: int
) -> tuple[Outfit, np.ndarray, np.ndarray, np.ndarray]:
    """Sample and draw image ``index`` of ``split``; depends only on its arguments.

    Returns:
        (outfit, BGR image, garment mask, skin mask).
    """
    rng = _image_rng(seed, split, index)
    outfit = _sample_outfit(rng)
    supersample = 4 if size <= 128 else 2
    return (outfit, *render(outfit, size, rng, supersample))


def image_name(split: str, index: int) -> str:
    return f"{_SPLITS[split][1]}_{index:05d}.png"


# ------------------------------------------------------------------------------ writing


def _write_one(job: tuple[Path, int, str, int, int]) -> dict:
    root, seed, split, index, size = job
    outfit, img, gmask, smask = make_image(seed, split, index, size)
    name = image_name(split, index)
    for path, arr in (
        (root / split / "images" / name, img),
        (root / "masks" / name, gmask),
        (root / "skin_masks" / name, smask),
    ):
        if not cv2.imwrite(str(path), arr):
            raise OSError(f"could not write {path}")
    meta = {
        "image": name,
        "split": split,
        "garment": outfit.garment,
        "colour": outfit.colour,
        "hue": outfit.hue,
        "pattern": outfit.pattern,
        "sleeve": outfit.sleeve,
        "person": int(outfit.person),
    }
    return {"meta": meta, "labels": {"image": name, **outfit.labels()}}


def _run_jobs(jobs: list, workers: int, progress: bool) -> Iterator[dict]:
    bar = dict(total=len(jobs), desc="demo images", unit="img", disable=not progress)
    if workers <= 1:
        yield from tqdm(map(_write_one, jobs), **bar)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunk = max(1, len(jobs) // (workers * 8))
        yield from tqdm(pool.map(_write_one, jobs, chunksize=chunk), **bar)


def generate(
    out_dir: str | os.PathLike,
    n_train: int = 3000,
    n_test: int = 600,
    size: int = 64,
    seed: int = 0,
    *,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Write the demo data set to ``out_dir`` (layout in the module docstring).

    The set is built in ``<out_dir>.tmp-<pid>`` beside the target and renamed into place
    only when complete (an old ``out_dir`` is moved aside and deleted afterwards), so an
    interrupted run leaves any previous data set untouched and never a half one.

    Returns:
        Summary: ``n_train``, ``n_test``, ``size``, ``seed``, ``labels`` and
        ``prevalence`` (label -> fraction of positive train rows).
    """
    if int(size) != size or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train}, {n_test}")
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        for sub in ("train/images", "test/images", "masks", "skin_masks"):
            (tmp / sub).mkdir(parents=True)
        jobs = [(tmp, seed, "train", i, size) for i in range(n_train)]
        jobs += [(tmp, seed, "test", i, size) for i in range(n_test)]
        rows = list(_run_jobs(jobs, workers, progress))
        train = pd.DataFrame([r["labels"] for r in rows[:n_train]], columns=["image", *LABELS])
        truth = pd.DataFrame([r["labels"] for r in rows[n_train:]], columns=["image", *LABELS])
        train.to_csv(tmp / "train" / "labels.csv", index=False)
        truth[["image"]].to_csv(tmp / "test" / "test.csv", index=False)
        truth.to_csv(tmp / "test_truth.csv", index=False)
        pd.DataFrame([r["meta"] for r in rows]).to_csv(tmp / "meta.csv", index=False)
    prevalence = {k: round(float(train[k].mean()), 4) for k in LABELS}
    return {
        "out_dir": str(out),
        "n_train": n_train,
        "n_test": n_test,
        "size": size,
        "seed": seed,
        "labels": list(LABELS),
        "prevalence": prevalence,
    }
