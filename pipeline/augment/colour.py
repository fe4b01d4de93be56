"""Colour inference (saturation-weighted circular mean of hue, achromatic votes) and
recolouring of masked pixels: hue shift, colourising achromatic garments, or turning them
black / white / grey, blended through a feathered alpha."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.config.augment import (
    AugmentConfig,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HueStats:
    """Colour of a masked garment.

    Attributes:
        hue: saturation-weighted circular mean hue, OpenCV units (0..180); NaN if no
            chromatic pixel.
        strength: mean resultant length of the weighted hue vectors (1 = one hue).
        kind: ``"chromatic"``, ``"black"``, ``"white"`` or ``"grey"`` (majority vote).
        chroma_fraction: fraction of masked pixels that are chromatic.
        n: number of masked pixels.
    """

    hue: float
    strength: float
    kind: str
    chroma_fraction: float
    n: int

    @property
    def achromatic(self) -> bool:
        return self.kind != "chromatic"


def dominant_hue(
    img_rgb: np.ndarray, mask: np.ndarray, cfg: AugmentConfig | None = None
) -> HueStats:
    """Dominant hue of the masked pixels, and whether the garment is achromatic.

    Hue is an angle (OpenCV 0..179 = 0..358 degrees), so it is averaged as unit vectors
    weighted by saturation: red pixels at 178 and 2 average to 0, not 90, and washed-out
    pixels (whose hue is noise) count little. Each pixel votes black (dark), white (light,
    unsaturated), chromatic or grey; the garment is achromatic unless chromatic wins.
    """
    cfg = cfg or AugmentConfig()
    mask = np.asarray(mask, bool)
    n = int(mask.sum())
    if n == 0:
        return HueStats(float("nan"), 0.0, "grey", 0.0, 0)
    hsv = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2HSV)[mask].astype(np.float64)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    black = v < cfg.black_max_value
    white = ~black & (s < cfg.white_max_saturation) & (v >= cfg.white_min_value)
    chroma = ~black & ~white & (s >= cfg.min_saturation) & (v >= cfg.min_value)
    grey = ~(black | white | chroma)
    votes = {
        "chromatic": int(chroma.sum()),
        "black": int(black.sum()),
        "white": int(white.sum()),
        "grey": int(grey.sum()),
    }
    kind = max(votes, key=votes.__getitem__)
    hue, strength = float("nan"), 0.0
    if chroma.any():
        ang = h[chroma] * (2 * np.pi / 180)
        wgt = s[chroma]
        c, si = float((wgt * np.cos(ang)).sum()), float((wgt * np.sin(ang)).sum())
        hue = (math.degrees(math.atan2(si, c)) / 2) % 180
        strength = math.hypot(c, si) / float(wgt.sum())
    return HueStats(hue, strength, kind, votes["chromatic"] / n, n)


def colour_name(stats: HueStats, cfg: AugmentConfig | None = None) -> str | None:
    """The colour-map label a garment's :class:`HueStats` reads as, or None (unmapped)."""
    cfg = cfg or AugmentConfig()
    for label, spec in cfg.colours.items():
        if stats.achromatic and spec.kind == stats.kind:
            return label
        if not stats.achromatic and spec.chromatic and spec.contains(stats.hue):
            return label
    return None


def _alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """Soft alpha that is exactly 0 outside the mask and 1 well inside it."""
    m = mask.astype(np.float32)
    if feather <= 0:
        return m
    blurred = cv2.GaussianBlur(m, (0, 0), feather)
    return m * np.clip(2.0 * blurred, 0.0, 1.0)


def _blend(
    img_rgb: np.ndarray, new_hsv: np.ndarray, mask: np.ndarray, feather: float
) -> np.ndarray:
    new = cv2.cvtColor(new_hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    a = _alpha(mask, feather)[..., None]
    out = np.rint(img_rgb.astype(np.float32) * (1 - a) + new * a).astype(np.uint8)
    return np.where(mask[..., None], out, img_rgb)  # outside the mask: the original bytes


def _lift_value(v: np.ndarray, mask: np.ndarray, floor: float | None) -> np.ndarray:
    """Gamma-lift value so the garment's median value is at least ``floor``.

    ``v' = 255 (v / 255) ** g`` keeps the order of values (shading, stripes) and never
    clips to white, unlike a gain. Why: some colour names imply lightness -- a dark blue
    shifted to a yellow hue reads as olive, not yellow.
    """
    if floor is None or not mask.any():
        return v
    med = float(np.median(v[mask]))
    if med >= floor or med <= 0:
        return v
    g = math.log(floor / 255.0) / math.log(min(med, 254.0) / 255.0)
    lifted = 255.0 * (v.astype(np.float32) / 255.0) ** g
    return np.clip(np.rint(lifted), 0, 255).astype(np.uint8)


def recolour(
    img_rgb: np.ndarray,
    mask: np.ndarray,
    target_hue: float,
    *,
    source_hue: float | None = None,
    saturation_scale: float = 1.0,
    min_value: float | None = None,
    feather: float = 0.7,
    cfg: AugmentConfig | None = None,
) -> np.ndarray:
    """Shift the hue of masked pixels so the garment's dominant hue becomes ``target_hue``.

    Every masked pixel's hue moves by the same angle, so hue variation, saturation and
    value -- shading, texture, stripes and dots -- are kept. Pixels outside ``mask`` are
    returned byte-identical; the mask edge is feathered inward (``feather``, pixels).

    Args:
        img_rgb: uint8 RGB image.
        mask: bool garment mask (skin already removed).
        target_hue: OpenCV hue (0..180) the dominant hue should land on.
        source_hue: the garment's dominant hue; computed with :func:`dominant_hue` if None.
        saturation_scale: multiply saturation of masked pixels (1 = hue only).
        min_value: lift value so the garment's median value is at least this (for light
            colours such as yellow; None = keep value).
        feather: Gaussian sigma of the soft edge; 0 for a hard edge.
        cfg: colour thresholds (only used to compute ``source_hue``).
    """
    mask = np.asarray(mask, bool)
    if source_hue is None:
        source_hue = dominant_hue(img_rgb, mask, cfg).hue
        if math.isnan(source_hue):
            raise ValueError("recolour: the masked garment has no chromatic pixel; use colourise")
    shift = round(target_hue - source_hue) % 180
    hsv = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2HSV)
    h = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
    s = hsv[..., 1]
    if saturation_scale != 1.0:
        s = np.clip(np.rint(s.astype(np.float32) * saturation_scale), 0, 255).astype(np.uint8)
    v = _lift_value(hsv[..., 2], mask, min_value)
    return _blend(img_rgb, cv2.merge([h, s, v]), mask, feather)


def colourise(
    img_rgb: np.ndarray,
    mask: np.ndarray,
    target_hue: float,
    *,
    saturation: int = 200,
    value_range: Sequence[int] = (110, 235),
    min_value: float | None = None,
    feather: float = 0.7,
) -> np.ndarray:
    """Give an achromatic (black/white/grey) garment a colour: the "value" grey policy.

    A hue shift does nothing to unsaturated pixels, so hue and saturation are set and the
    garment's value range (2nd..98th percentile) is stretched linearly onto
    ``value_range``: a black garment becomes a mid-bright colour, and light stripes stay
    lighter than the cloth (order of values, hence the pattern, is kept). ``min_value``
    lifts the result as in :func:`recolour`.
    """
    mask = np.asarray(mask, bool)
    hsv = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2HSV)
    v = hsv[..., 2].astype(np.float32)
    lo, hi = np.percentile(v[mask], [2, 98]) if mask.any() else (0.0, 255.0)
    t = np.clip((v - lo) / max(hi - lo, 20.0), 0, 1)
    if hi - lo < 20:  # flat garment: keep it at the middle of the range
        t = np.full_like(t, 0.5) + (v - (lo + hi) / 2) / 255.0
    v2 = value_range[0] + t * (value_range[1] - value_range[0])
    new = cv2.merge(
        [
            np.full_like(hsv[..., 0], round(target_hue) % 180),
            np.full_like(hsv[..., 1], int(saturation)),
            _lift_value(np.clip(np.rint(v2), 0, 255).astype(np.uint8), mask, min_value),
        ]
    )
    return _blend(img_rgb, new, mask, feather)


def to_achromatic(
    img_rgb: np.ndarray, mask: np.ndarray, kind: str, *, feather: float = 0.7
) -> np.ndarray:
    """Turn a garment black, white or grey (an achromatic target colour).

    Saturation is cut and value compressed into the kind's band (black 15..55, white
    200..250, grey 100..170) keeping the order of values, so a pattern stays visible.
    """
    bands = {"black": (15, 55), "white": (200, 250), "grey": (100, 170)}
    if kind not in bands:
        raise ValueError(f"to_achromatic: kind must be one of {list(bands)}, got {kind!r}")
    mask = np.asarray(mask, bool)
    hsv = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2HSV)
    v = hsv[..., 2].astype(np.float32)
    lo, hi = np.percentile(v[mask], [2, 98]) if mask.any() else (0.0, 255.0)
    t = np.clip((v - lo) / max(hi - lo, 1.0), 0, 1)
    b0, b1 = bands[kind]
    v2 = np.clip(np.rint(b0 + t * (b1 - b0)), 0, 255).astype(np.uint8)
    s2 = (hsv[..., 1].astype(np.float32) * 0.1).astype(np.uint8)
    return _blend(img_rgb, cv2.merge([hsv[..., 0], s2, v2]), mask, feather)
