"""Shapes of the demo drawings in canonical canvas units (0..1, y down): a mildly
randomised body (:class:`Body`) and each garment type as polygons (:func:`garment_pieces`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pipeline.demo.outfit import Outfit
from pipeline.demo.palette import GARMENTS


@dataclass(frozen=True)
class Body:
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


def sample_body(rng: np.random.Generator, product: bool) -> Body:
    rx = rng.uniform(0.052, 0.062)
    return Body(
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


def segment(p0: np.ndarray, p1: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """Quadrilateral around the segment p0 -> p1 with half widths w0, w1."""
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    return np.array([p0 + n * w0, p1 + n * w1, p1 - n * w1, p0 - n * w0])


class Piece(NamedTuple):
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
    return segment(np.asarray(p0, float), np.asarray(p1, float), width / 2, width / 2)


def _sleeves(b: Body, sleeve: str, extra: float, torso_extra: float = 0.0) -> list[Piece]:
    """Sleeves joined to the torso outline at the shoulder and armpit points of
    :func:`upper`, ending around the arm: short (upper arm, flared) or long (to the
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
        out.append(Piece("main", np.array([shoulder, end + n_out * w1, end - n_out * w1, armpit])))
        if sleeve == "long":
            out.append(Piece("detail", segment(end - d * 0.025, end, w1, w1)))  # cuff
    return out


def upper(b: Body, hem_y: float, hem_w: float, extra: float = 0.0) -> np.ndarray:
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


def garment_pieces(o: Outfit, b: Body, product: bool, rng: np.random.Generator) -> list[Piece]:
    """The garment as polygons: the outline differs per type (t-shirt: short boxy top with
    a round neck; shirt: longer, collar, placket and buttons; dress: fitted top flaring to
    the knee; coat: long, wide, open front with lapels on a person, buttons; skirt: lower
    body only, waistband and pleats)."""
    cx, sy = b.cx, b.sy

    def main(pts) -> Piece:
        return Piece("main", np.asarray(pts, float))

    def hole(pts) -> Piece:
        return Piece("hole", np.asarray(pts, float))

    def detail(pts) -> Piece:
        return Piece("detail", np.asarray(pts, float))

    pieces: list[Piece] = []
    if o.garment == "tshirt":
        pieces.append(main(upper(b, b.hy + 0.02, b.hw + 0.005)))
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
        pieces.append(main(upper(b, b.hy + 0.045, b.hw + 0.008)))
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
            pts = upper(b, b.wy, b.ww)
            pieces.append(
                main(np.vstack([pts[:4], [(cx - hem_w, hem_y), (cx + hem_w, hem_y)], pts[6:]]))
            )
            pieces += _sleeves(b, o.sleeve, 0.01)
            pieces.append(hole(_ellipse_pts(cx, sy - 0.005, 0.045, 0.045)))
        pieces.append(detail(_line((cx - b.ww, b.wy), (cx + b.ww, b.wy), 0.01)))  # waist seam
    elif o.garment == "coat":
        hem_y = rng.uniform(0.8, 0.87)
        pieces.append(main(upper(b, hem_y, b.hw + 0.035, extra=0.012)))
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
