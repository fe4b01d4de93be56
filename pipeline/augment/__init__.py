"""Colour-change augmentation for rare labels: recolour garments, rewrite colour labels.

Why: the winning JD AI Fashion-Challenge solution got its largest gain on rare labels from
recolouring clothing. A rare garment type seen only in red is learnt better once it has
also been seen in blue and green; a rare colour is learnt better once other garments have
been shown in it. This package does it without corrupting labels or leaking validation
images:

1. **Garment mask** (:func:`garment_mask`): a user-supplied mask (``mask_dir``, e.g. from
   any segmentation model), else OpenCV GrabCut seeded by a box (the foreground box found
   against the border colours, the HOG person detector's box, or a centre box), refined
   to the garment: pixels of the image's labelled colour (the labels are known for every
   image we augment) or, with no colour to go by, the colour cluster at the centre of the
   foreground; a morphological closing brings back stripes, dots and seams. Skin-like
   pixels (YCrCb box) are always removed, so faces, arms and legs are never recoloured.
2. **Colour inference** (:func:`dominant_hue`): saturation-weighted circular mean of hue;
   pixels vote black / white / grey / chromatic, so achromatic garments are recognised.
3. **Recolouring** (:func:`recolour`): shift the hue of masked pixels only (saturation and
   value, hence texture and pattern, are kept), blended through a feathered alpha that is
   zero outside the mask. Achromatic garments are skipped or, with
   ``grey_policy = "value"``, colourised (:func:`colourise`: new hue and saturation, the
   value range stretched so the pattern survives).
4. **Label-aware plan** (:func:`plan_augmentation`): which images, how many copies, which
   target colour, the rewritten label row; copies inherit their source's fold.
5. **Output** (:func:`run_augmentation`): ``images/aug_<stem>_<v>.png``, ``labels.csv``
   (``image,source,fold,<labels>``), ``masks/`` (the mask used per source) and
   ``summary.json``, built in a temp folder and renamed into place.

Training reads copies through :func:`augmented_rows_for_fold`: for CNN fold ``k`` only
copies whose source is outside fold ``k`` are added to the training rows; validation, OOF
and threshold rows stay the original images.

Colour map format (``AugmentConfig.colour_map``), one string per colour label:

* ``"red:170-8"`` -- a chromatic label and its inclusive OpenCV hue range (0..179; ``lo >
  hi`` wraps through 0);
* ``"black:black"``, ``"white:white"``, ``"grey:grey"`` -- an achromatic label defined by
  value/saturation (``black_max_value``, ``white_max_saturation``/``white_min_value``;
  grey is what is neither black, white nor chromatic).

The package, by step: :mod:`~pipeline.augment.masks` (1), :mod:`~pipeline.augment.colour`
(2, 3), :mod:`~pipeline.augment.plan` (4) and :mod:`~pipeline.augment.run` (5, reading
the copies back, the preview); the settings live in :mod:`pipeline.config.augment`. The
names other modules use are re-exported here.
"""

from pipeline.augment.colour import (
    HueStats,
    colour_name,
    colourise,
    dominant_hue,
    recolour,
    to_achromatic,
)
from pipeline.augment.masks import (
    colour_pixels,
    foreground_box,
    garment_mask,
    hog_person_box,
    seed_box,
    skin_mask,
)
from pipeline.augment.plan import (
    AugJob,
    plan_augmentation,
    plan_with_skips,
    rare_labels,
    rotation_offsets,
)
from pipeline.augment.run import (
    OUTPUT_COLUMNS,
    augmented_rows_for_fold,
    preview_png,
    read_augmented,
    run_augmentation,
)
from pipeline.config.augment import (
    ACHROMATIC_KINDS,
    BOX_MODES,
    DEFAULT_COLOUR_MAP,
    GREY_POLICIES,
    AugmentConfig,
    ColourSpec,
    augment_config_from_dict,
    parse_colour_map,
)

__all__ = [
    "ACHROMATIC_KINDS",
    "AugJob",
    "AugmentConfig",
    "BOX_MODES",
    "ColourSpec",
    "DEFAULT_COLOUR_MAP",
    "GREY_POLICIES",
    "HueStats",
    "OUTPUT_COLUMNS",
    "augment_config_from_dict",
    "augmented_rows_for_fold",
    "colour_name",
    "colour_pixels",
    "colourise",
    "dominant_hue",
    "foreground_box",
    "garment_mask",
    "hog_person_box",
    "parse_colour_map",
    "plan_augmentation",
    "plan_with_skips",
    "preview_png",
    "rare_labels",
    "read_augmented",
    "recolour",
    "rotation_offsets",
    "run_augmentation",
    "seed_box",
    "skin_mask",
    "to_achromatic",
]
