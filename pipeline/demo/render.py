"""Drawing one demo image: background, person, garment with its pattern, at
``supersample`` times the output size, then area-downsampled with masks kept in step
(:func:`render`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.demo.colours import (
    contrast_bgr,
    detail_bgr,
    hsv2bgr,
    lab_dist,
    neutral,
    skin_like,
    skin_tone,
)
from pipeline.demo.geometry import Body, Piece, garment_pieces, sample_body, segment, upper
from pipeline.demo.outfit import Outfit


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
            cols = [hsv2bgr(rng.integers(0, 180), rng.integers(0, 50), rng.integers(165, 250))]
        else:
            cols = [
                hsv2bgr(rng.integers(0, 180), rng.integers(0, 120), rng.integers(60, 240))
                for _ in range(2)
            ]
        probe = cols + [tuple(int(x * 0.85) for x in cols[0])]  # product shadow
        if kind == "gradient":
            c0, c1 = np.array(cols[0]), np.array(cols[1])
            probe += [tuple(int(x) for x in c0 + (c1 - c0) * t) for t in (0.25, 0.5, 0.75)]
        if any(skin_like(c, margin=4) for c in probe):
            continue
        if any(
            lab_dist(c, a) < 38
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


def _draw_garment(cv: _Canvas, pieces: list[Piece], o: Outfit, rng: np.random.Generator) -> None:
    """Composite the garment: cloth minus holes in the main colour, the pattern inside it,
    then details; the garment mask gets every garment pixel, the skin mask loses them."""
    layer = np.zeros_like(cv.garment)
    for p in pieces:
        if p.role != "detail":
            cv2.fillPoly(layer, [cv.px(p.pts)], 255 if p.role == "main" else 0)
    cv2.copyTo(_solid(cv.img, hsv2bgr(o.hue, o.sat, o.val)), layer, cv.img)
    if o.pattern != "plain":
        # drawn on the output pixel grid, so downsampling never blends the pattern with the
        # garment colour (red blended with grey passes through skin tones)
        small = _pattern_mask(rng, o.pattern, cv.side // cv.supersample, cv.scale)
        full = cv2.resize(
            small.astype(np.uint8), (cv.side, cv.side), interpolation=cv2.INTER_NEAREST
        )
        contrast = _solid(cv.img, contrast_bgr(rng, (o.hue, o.sat, o.val)))
        cv2.copyTo(contrast, cv2.bitwise_and(layer, full * 255), cv.img)
    cv2.bitwise_or(cv.garment, layer, dst=cv.garment)
    cv2.bitwise_and(cv.skin, cv2.bitwise_not(layer), dst=cv.skin)
    detail = detail_bgr((o.hue, o.sat, o.val))
    for p in pieces:
        if p.role == "detail":
            cv.poly(p.pts, detail, "garment")


def _draw_person(cv: _Canvas, o: Outfit, b: Body, skin, rng: np.random.Generator) -> None:
    """Everything of the person below the garment layer: hair, skin, trousers, shoes."""
    cx = b.cx
    hair = hsv2bgr(
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
    cv.poly(upper(b, b.hy, b.hw), skin, "skin")
    for side in (-1, 1):
        j, d = b.joint(side), b.arm_dir(side)
        wrist = j + d * b.arm_len
        cv.poly(segment(j - d * 0.02, wrist, b.arm_w, b.arm_w * 0.72), skin, "skin")
        cv.ellipse(wrist + d * 0.018, 0.022, 0.026, skin, "skin")
    # legs: bare under dresses and skirts, trousers otherwise
    if o.garment in ("dress", "skirt"):
        for side in (-1, 1):
            cv.poly(
                segment(
                    np.array([cx + side * 0.05, b.hy - 0.02]),
                    np.array([cx + side * b.leg_dx, b.ankle_y]),
                    0.045,
                    0.026,
                ),
                skin,
                "skin",
            )
    else:
        trousers = neutral(rng, (40, 130), max_s=60)
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
    shoes = neutral(rng, (15, 90))
    for side in (-1, 1):
        cv.ellipse((cx + side * (b.leg_dx + 0.01), b.ankle_y + 0.01), 0.04, 0.022, shoes)
    # under-layers that are clothing but not the labelled garment
    if o.garment == "skirt":
        top = neutral(rng, (90, 175))
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
        cv.poly(upper(b, b.wy, b.ww), neutral(rng, (90, 200)))
    # neck, head, face, fringe
    cv.poly(segment(head, np.array([cx, b.sy + 0.01]), 0.024, 0.026), skin, "skin")
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


def _bbox(pieces: list[Piece]) -> tuple[float, float, float, float]:
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
    body = sample_body(rng, product)
    skin = skin_tone(rng)
    pieces = garment_pieces(outfit, body, product, rng)
    main = hsv2bgr(outfit.hue, outfit.sat, outfit.val)
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
