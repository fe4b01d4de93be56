"""The export runtime's ONNX Runtime settings (``pipeline/runtime/exported.py``; the export
itself: ``tests/test_export.py``)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from pipeline.runtime.exported import session_options


def test_sessions_neither_spin_nor_keep_an_arena(tmp_path):
    """Dozens of sessions live side by side: idle pools must not spin (they took the cores
    from the working one) and none keeps its largest batch's activations."""
    opts = session_options(threads=2)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert opts.enable_cpu_mem_arena is False and opts.intra_op_num_threads == 2
    assert session_options().intra_op_num_threads == 0  # ONNX Runtime's default: every core
    # and a session made with them runs
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(
        str(tmp_path / "m.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    out = sess.run(None, {"x": np.array([[-1.0, 0.5, 2.0]], np.float32)})[0]
    np.testing.assert_array_equal(out, [[0.0, 0.5, 2.0]])
