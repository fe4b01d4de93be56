"""The demo's label columns and colour definitions, shared by the generator,
:func:`pipeline.demo.colours.classify_colour` and the colour-change augmentation's
defaults (:mod:`pipeline.config.augment` derives its colour map, skin box and achromatic
thresholds from here). Standard library only: :mod:`pipeline.config.schema` runs on a bare Python.
"""

from __future__ import annotations

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
:func:`pipeline.demo.colours.classify_colour`). These are the *classification* ranges; the
generator draws hues from a narrower core of each range (:data:`DRAW_RANGES`) so noise and
anti-aliasing never cross a boundary."""

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
DRAW_RANGES: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "red": ((174, 5), (190, 255), (150, 240)),
    "blue": ((102, 122), (150, 255), (120, 230)),
    "green": ((48, 78), (140, 255), (110, 220)),
    "yellow": ((25, 33), (170, 255), (200, 255)),
    "black": ((0, 179), (0, 90), (15, 50)),
    "white": ((0, 179), (0, 25), (215, 250)),
    "orange": ((13, 19), (200, 255), (210, 255)),
    "purple": ((136, 155), (120, 230), (110, 210)),
}

# Skin box (YCrCb): the augmentation's default skin range; skin tones are drawn well inside it and
# backgrounds / garment colours are kept outside it (backgrounds with a margin).
SKIN_CR = (135, 175)
SKIN_CB = (85, 125)
