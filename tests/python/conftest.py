"""Fixtures of the kiln Python tests: small ONNX models made with onnx.helper (fixed seeds), the
ONNX backend data folder (KILN_TEST_DATA, else ../shared/onnx-backend-data), and onnxruntime as
the second opinion."""

import os
import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import kiln  # noqa: E402


def _conv_net(batch):
    """x[batch,3,8,8] -> Conv(4,3x3,pad 1)+bias -> Relu -> Conv(4,1x1) + residual Add -> Relu
    -> GlobalAveragePool -> Flatten -> Gemm(5) -> Softmax: fusable conv+bias+act, conv+add."""
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(4).astype(np.float32) * 0.1
    w2 = rng.standard_normal((4, 4, 1, 1)).astype(np.float32) * 0.3
    b2 = rng.standard_normal(4).astype(np.float32) * 0.1
    wg = rng.standard_normal((5, 4)).astype(np.float32) * 0.5
    bg = rng.standard_normal(5).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (wg, "wg"), (bg, "bg"))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch, 5])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_onnx(models_dir):
    """A static model (batch 2), as a file."""
    path = models_dir / "tiny.onnx"
    onnx.save(_conv_net(2), str(path))
    return path


@pytest.fixture(scope="session")
def dynamic_onnx(models_dir):
    """The same network with a dynamic batch ("N")."""
    path = models_dir / "tiny_dynamic.onnx"
    onnx.save(_conv_net("N"), str(path))
    return path


@pytest.fixture(scope="session")
def ort():
    """Runs an ONNX file with onnxruntime: ort(path, {name: array}) -> {name: array}."""
    rt = pytest.importorskip("onnxruntime")

    def run(path, feeds):
        sess = rt.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))

    return run


@pytest.fixture(scope="session")
def backend_data():
    """The ONNX project's backend test data; the tests that need it skip, saying where they looked."""
    default = pathlib.Path(__file__).resolve().parents[3] / "shared" / "onnx-backend-data"
    path = pathlib.Path(os.environ.get("KILN_TEST_DATA") or default)
    if not (path / "node").is_dir():
        pytest.skip(f"no ONNX backend data at {path} (set KILN_TEST_DATA or meson configure -Dtest_data=DIR)")
    return path


def random_input(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
