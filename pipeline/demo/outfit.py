"""What one demo image shows (:class:`Outfit`) and the skewed distribution it is drawn
from: imbalanced garments, two rare labels (yellow, dotted), person > 40%."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.demo.colours import draw_colour
from pipeline.demo.palette import COLOURS, LABELS, PATTERNS

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


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """The ground truth of one image: the first draws of its stream (before any drawing)."""
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
    h, s, v = draw_colour(rng, colour)
    return Outfit(person, garment, colour, h, s, v, pattern, sleeve)
