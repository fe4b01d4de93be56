import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pipeline.models.losses import MaskedMultiLabelLoss, TriangularCyclicLR  # noqa: E402

Y = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]], dtype=np.float32)  # -1 = unknown
P = np.array([[0.8, 0.3, 0.5], [0.1, 0.6, 0.9]], dtype=np.float32)


def _np_loss(kind, k=3.0, g=2.0, a=0.25):
    y, p = np.clip(Y, 0, 1), P.astype(np.float64)
    if kind == "bce":
        cell = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    elif kind == "weighted_bce":
        cell = -(k * y * np.log(p) + (1 - y) * np.log(1 - p))
    else:
        cell = -(a * y * (1 - p) ** g * np.log(p) + (1 - a) * (1 - y) * p**g * np.log(1 - p))
    mask = Y >= 0
    return ((cell * mask).sum(1) / mask.sum(1)).mean()


@pytest.mark.parametrize("kind", ["bce", "weighted_bce", "focal"])
def test_loss_matches_numpy(kind):
    loss = MaskedMultiLabelLoss(kind, pos_weight=3.0, gamma=2.0, alpha=0.25)
    got = float(keras.ops.convert_to_numpy(loss(Y, P)))
    assert got == pytest.approx(_np_loss(kind), rel=1e-5)


def test_hand_computed_bce_first_row():
    # row 0: known cells (1, 0.8) and (0, 0.3): (-ln .8 - ln .7) / 2
    loss = MaskedMultiLabelLoss("bce")
    row0 = float(keras.ops.convert_to_numpy(loss(Y[:1], P[:1])))
    assert row0 == pytest.approx((0.22314355 + 0.35667494) / 2, rel=1e-6)


def test_unknown_cell_has_no_effect():
    loss = MaskedMultiLabelLoss("bce")
    p2 = P.copy()
    p2[0, 2] = 0.01  # the unknown cell
    assert float(loss(Y, P)) == pytest.approx(float(loss(Y, p2)))


def test_cyclic_lr_triangle():
    s = TriangularCyclicLR(0.1, 1.0, half_cycle_steps=10)
    vals = [float(keras.ops.convert_to_numpy(s(i))) for i in (0, 5, 10, 15, 20)]
    assert vals == pytest.approx([0.1, 0.55, 1.0, 0.55, 0.1])
    assert TriangularCyclicLR.from_config(s.get_config()).half_cycle_steps == 10
