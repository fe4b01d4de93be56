"""Procedural demo data set (``make demo-data``): small drawn outfits with imbalanced
multi-label attributes.

The demo data stands in for a real clothing-attribute set so that every stage of the
pipeline (folds, colour-change augmentation, CNNs, stacking, thresholds, submission) can
run end to end in minutes, deterministically. Each image shows one garment (t-shirt, shirt,
dress, coat or skirt) either worn by a drawn person (skin-coloured face, neck, arms, hands,
legs; hair; trousers or bare legs) on a varied background, or alone as a product shot on a
plain light background. Garments have one main colour (HSV with jitter), optional stripes
or dots, and long or short sleeves.

Besides the images the generator writes what it knows: a garment mask and a skin mask per
image (so colour-change augmentation can be tested against ground truth) and ``meta.csv``
with the colour name and the exact hue used. :func:`pipeline.demo.colours.classify_colour`
names a garment colour from HSV pixels with the same definitions the generator draws from,
so a recoloured image can be checked against its rewritten labels.

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

Modules (import the one you use; this file imports nothing, so :mod:`pipeline.config.augment`
can read :mod:`pipeline.demo.palette` on a bare Python):

- :mod:`~pipeline.demo.palette`: label columns, colour ranges, thresholds, skin box (stdlib);
- :mod:`~pipeline.demo.colours`: :func:`~pipeline.demo.colours.classify_colour` and the
  colour draws (garment, pattern, skin, neutral clothing);
- :mod:`~pipeline.demo.outfit`: the attribute distribution and :class:`Outfit`;
- :mod:`~pipeline.demo.geometry`: body and garment polygons;
- :mod:`~pipeline.demo.render`: backgrounds, the person, the garment, one image;
- :mod:`~pipeline.demo.dataset`: per-image random streams and
  :func:`~pipeline.demo.dataset.generate`, which writes the set.
"""
