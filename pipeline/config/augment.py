"""Settings of the colour-change augmentation (TOML ``[augment]``).

Standard library only, so :mod:`pipeline.config.schema` (which the Makefile runs with the bare
system Python) can hold it; the image work lives in :mod:`pipeline.augment`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config.fields import Interval, OneOf, Range, build, check_fields
from pipeline.demo.palette import (
    BLACK_MAX_V,
    COLOURS,
    SKIN_CB,
    SKIN_CR,
    WHITE_MAX_S,
    WHITE_MIN_V,
)

ACHROMATIC_KINDS: tuple[str, ...] = ("black", "white", "grey")
GREY_POLICIES: tuple[str, ...] = ("skip", "value")
BOX_MODES: tuple[str, ...] = ("auto", "hog", "foreground", "centre")
MODES: tuple[str, ...] = ("labels", "rotate")

DEFAULT_COLOUR_MAP: tuple[str, ...] = tuple(
    f"{name}:{rng[0]}-{rng[1]}" if rng else f"{name}:{name}" for name, rng in COLOURS.items()
)
"""The demo's colour labels as colour-map entries (from :data:`pipeline.demo.palette.COLOURS`:
``"red:170-8"``, ..., ``"black:black"``, ``"white:white"``)."""

# ------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class ColourSpec:
    """One entry of the colour map: a label and how its colour is recognised.

    ``kind`` is ``"hue"`` (chromatic, inclusive OpenCV hue range ``lo..hi``, wrapping when
    ``lo > hi``) or one of :data:`ACHROMATIC_KINDS`.
    """

    label: str
    kind: str
    lo: int = 0
    hi: int = 0

    @property
    def chromatic(self) -> bool:
        return self.kind == "hue"

    def span(self) -> int:
        return (self.hi - self.lo) % 180

    def centre(self) -> float:
        return (self.lo + self.span() / 2) % 180

    def contains(self, hue: float) -> bool:
        """Whether ``hue`` (0..180, float) falls in the inclusive range (wrap-aware)."""
        return (hue - self.lo) % 180 <= self.span() + 0.5


def parse_colour_map(entries: Sequence[str]) -> dict[str, ColourSpec]:
    """Parse ``"label:lo-hi"`` / ``"label:black|white|grey"`` strings (see module doc).

    Raises:
        ValueError: on a malformed entry, a hue outside 0..179, a duplicate label or two
            labels claiming the same achromatic kind.
    """
    out: dict[str, ColourSpec] = {}
    kinds: dict[str, str] = {}
    for raw in entries:
        label, sep, rng = str(raw).partition(":")
        label, rng = label.strip(), rng.strip()
        if not sep or not label or not rng:
            raise ValueError(
                f"augment.colour_map entry {raw!r}: write 'label:lo-hi' (OpenCV hue 0..179) "
                f"or 'label:black' / 'label:white' / 'label:grey'"
            )
        if label in out:
            raise ValueError(f"augment.colour_map: label {label!r} is mapped twice")
        if rng in ACHROMATIC_KINDS:
            if rng in kinds:
                raise ValueError(
                    f"augment.colour_map: {label!r} and {kinds[rng]!r} both claim {rng!r}"
                )
            kinds[rng] = label
            out[label] = ColourSpec(label, rng)
            continue
        lo_s, dash, hi_s = rng.partition("-")
        try:
            lo, hi = int(lo_s), int(hi_s)
        except ValueError:
            lo = hi = -1
        if not dash or not (0 <= lo <= 179 and 0 <= hi <= 179):
            raise ValueError(
                f"augment.colour_map entry {raw!r}: the range must be 'lo-hi' with integers "
                "in 0..179 (OpenCV hue; lo > hi wraps through 0, e.g. 'red:170-8')"
            )
        out[label] = ColourSpec(label, "hue", lo, hi)
    return out


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of the colour-change augmentation (TOML ``[augment]``; simple types only).

    Attributes:
        enabled: ``false`` writes an empty augmentation (header-only ``labels.csv``), so
            the Make graph does not change shape.
        rare_threshold: labels whose prevalence (among known cells) is below this are rare.
        rare_labels: explicit rare labels; when non-empty it replaces the threshold.
        variants: recoloured copies per source image (for a rare *colour* label: copies
            recoloured into it = ``variants`` x its positives, from other-colour images).
        colour_map: colour label -> hue range or achromatic kind (module doc).
        target_colours: colours copies may be recoloured into; empty = every chromatic
            label of the map. Achromatic targets are allowed when listed here.
        colour_dependent: labels that depend on colour but have no mapping (e.g. a
            "multicolour" or "beige" column); an image positive for one is not recoloured.
        recolour_unlabelled: recolour images with no mapped colour label positive when
            their garment's hue lies outside every mapped range (e.g. an orange garment in
            a data set without an "orange" label). Off by default: an image without a
            colour label may simply have an unlabelled colour we would then mislabel.
        grey_policy: ``"skip"`` achromatic (black/white/grey) garments, or ``"value"``:
            colourise them (set hue and saturation, stretch value).
        mask_dir: folder of user masks (``<image id>`` or ``<stem>.png``, non-zero =
            garment); empty = estimate with GrabCut. A missing mask falls back to GrabCut.
        box: GrabCut seed box: ``"auto"`` (foreground box against the border colours,
            else the HOG person box, else a centre box), ``"hog"`` (HOG box first),
            ``"foreground"`` or ``"centre"``.
        hog_min_weight: SVM score a HOG detection needs to be used.
        work_size: GrabCut runs with the longer image side resized to this. On the 64 px
            demo, 2x upscaling (128) gives the same IoU as 4x (0.932 vs 0.934, 60 images) in a
            quarter of the time; raise it for large photos to keep finer edges.
        grabcut_iters: GrabCut iterations.
        skin_cr, skin_cb: inclusive YCrCb box of skin-like pixels, never recoloured.
        min_saturation, min_value: a pixel with S and V at least these is chromatic.
        black_max_value: V below this is black.
        white_max_saturation, white_min_value: S below and V at least these is white.
        saturation_scale: multiply the saturation of recoloured pixels (1 = hue only).
        colourise_saturation: saturation given to achromatic garments (``"value"``).
        colourise_value: (lo, hi) value range achromatic garments are stretched to.
        min_value_by_colour: ``"label:V"`` strings: copies recoloured into ``label`` get
            their value lifted so the garment's median V is at least ``V`` (a dark blue
            shifted to yellow hue reads as olive otherwise). Labels not in the colour map
            are ignored, so the default does no harm to maps without "yellow".
        feather: Gaussian sigma (pixels) of the soft mask edge; 0 = hard edge.
        min_mask_fraction: masks smaller than this fraction of the image are not trusted.
        verify: skip a source whose masked colour does not match its colour label, and
            drop a copy whose recoloured garment does not read as the target colour.
        mode: ``"labels"`` (colour-label aware: copies get a mapped target colour and
            their colour labels rewritten) or ``"rotate"`` (a data set without colour
            labels, e.g. garment tags: every garment of a rare-label image has its hue
            rotated by an offset spread over the colour wheel; the labels are copied
            unchanged, since no label names a colour). ``rotate`` needs no colour map.
        mask_model: a garment segmenter (``.npz`` of ``make segmenter``, e.g.
            ``build/clothing_co_parsing/segmenter.npz``); its refined masks replace the
            box-seeded GrabCut. "" = GrabCut.
        seed: seeds source sampling, target colours and target hues.
    """

    enabled: bool = True
    rare_threshold: float = 0.05
    rare_labels: tuple[str, ...] = ()
    variants: int = 3
    colour_map: tuple[str, ...] = DEFAULT_COLOUR_MAP
    target_colours: tuple[str, ...] = ()
    colour_dependent: tuple[str, ...] = ()
    recolour_unlabelled: bool = False
    grey_policy: str = "skip"
    mask_dir: str = ""
    box: str = "auto"
    hog_min_weight: float = 0.5
    work_size: int = 128
    grabcut_iters: int = 5
    skin_cr: tuple[int, ...] = SKIN_CR
    skin_cb: tuple[int, ...] = SKIN_CB
    min_saturation: int = 60
    min_value: int = 40
    black_max_value: int = BLACK_MAX_V
    white_max_saturation: int = WHITE_MAX_S
    white_min_value: int = WHITE_MIN_V
    saturation_scale: float = 1.0
    colourise_saturation: int = 200
    colourise_value: tuple[int, ...] = (110, 235)
    min_value_by_colour: tuple[str, ...] = ("yellow:190",)
    feather: float = 0.7
    min_mask_fraction: float = 0.02
    verify: bool = True
    mode: str = "labels"
    mask_model: str = ""
    seed: int = 13

    RULES = {
        "grey_policy": OneOf(GREY_POLICIES),
        "mode": OneOf(MODES),
        "box": OneOf(BOX_MODES),
        "rare_threshold": Range(0.0, 1.0),
        "variants": Range(0, 100),
        "skin_cr": Interval(0, 255),
        "skin_cb": Interval(0, 255),
        "colourise_value": Interval(0, 255),
        "work_size": Range(16, 4096),
        "grabcut_iters": Range(1),
        "feather": Range(0.0),
        "saturation_scale": Range(0.0),
    }

    def __post_init__(self) -> None:
        # checked here too, not only when read from TOML: code builds AugmentConfig directly
        colours = self.colours  # parses (and so validates) the map
        check_fields(self, "augment")
        _ = self._floors  # validates min_value_by_colour
        unknown = [c for c in self.target_colours if c not in colours]
        if unknown:
            raise ValueError(
                f"augment.target_colours: {unknown[0]!r} is not in augment.colour_map "
                f"({', '.join(colours)}); add it to the map or remove it"
            )
        clash = [c for c in self.colour_dependent if c in colours]
        if clash:
            raise ValueError(
                f"augment.colour_dependent: {clash[0]!r} has a mapping in augment.colour_map; "
                "list only colour-dependent labels that have none"
            )

    # Derived values are cached properties, not dataclass fields, so the dataclass holds
    # exactly the TOML keys (the main config maps ``[augment]`` onto it 1:1).
    @functools.cached_property
    def colours(self) -> dict[str, ColourSpec]:
        """The parsed colour map, label -> :class:`ColourSpec`."""
        return parse_colour_map(self.colour_map)

    @functools.cached_property
    def _floors(self) -> dict[str, float]:
        floors: dict[str, float] = {}
        for raw in self.min_value_by_colour:
            label, sep, val = str(raw).partition(":")
            try:
                v = float(val)
            except ValueError:
                v = -1.0
            if not sep or not label.strip() or not 0 <= v <= 255:
                raise ValueError(
                    f"augment.min_value_by_colour entry {raw!r}: write 'label:V' with V in 0..255"
                )
            floors[label.strip()] = v
        return floors

    def value_floor(self, label: str) -> float | None:
        """Minimum median value for garments recoloured into ``label`` (None = no floor)."""
        return self._floors.get(label)

    def for_labels(self, labels: Sequence[str]) -> AugmentConfig:
        """This config for a data set with ``labels``: the default colour map describes the
        demo's colour labels, so on another data set only its entries naming a label there
        are kept (none: nothing is recoloured) instead of failing on a map the user never
        wrote. A map the user wrote is kept as written and checked against the labels."""
        if self.colour_map != DEFAULT_COLOUR_MAP:
            return self
        kept = tuple(e for e in DEFAULT_COLOUR_MAP if e.partition(":")[0] in set(labels))
        if kept == self.colour_map:
            return self
        import dataclasses

        return dataclasses.replace(self, colour_map=kept)

    def targets(self) -> tuple[str, ...]:
        """Colours copies may be recoloured into (``target_colours`` or the chromatic map)."""
        if self.target_colours:
            return tuple(self.target_colours)
        return tuple(k for k, s in self.colours.items() if s.chromatic)


def augment_config_from_dict(raw: dict | None) -> AugmentConfig:
    """Build an :class:`AugmentConfig` from a parsed TOML ``[augment]`` table, checked as
    :mod:`pipeline.config.schema` checks every section (:func:`pipeline.config.fields.build`)."""
    return build(AugmentConfig, dict(raw or {}), "augment")
