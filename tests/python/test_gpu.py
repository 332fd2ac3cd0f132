"""The GPU side of the Python module. Without a GPU: Engine raises kiln.Error("no GPU: ..."), and
the binding helpers (device pointers from __cuda_array_interface__, streams) are checked on fake
objects. With one (tools/gpu_check.sh on the H100): the engine's outputs against the CPU
reference, through numpy and through PyTorch tensors (DLPack and __cuda_array_interface__)."""

import numpy as np
import pytest

import kiln
from conftest import random_input

has_gpu = kiln.gpu_count() > 0


class FakeCudaArray:
    def __init__(self, ptr, shape, strides=None, typestr="<f4"):
        self.__cuda_array_interface__ = {"data": (ptr, False), "shape": shape, "strides": strides,
                                         "typestr": typestr, "version": 3}


def test_device_pointer_from_cuda_array_interface():
    assert kiln.device_pointer(FakeCudaArray(0x7000, (2, 3))) == 0x7000
    assert kiln.tensor_info(FakeCudaArray(0x7000, (2, 3), strides=(12, 4))) == (0x7000, "f32", (2, 3))
    assert kiln.tensor_info(FakeCudaArray(0x10, (4,), typestr="<f2")) == (0x10, "f16", (4,))
    assert kiln.tensor_info(FakeCudaArray(0x10, (2, 1), strides=(4, 99))) == (0x10, "f32", (2, 1))  # a dim of 1
    assert kiln.tensor_info(1234) == (1234, None, None)
    with pytest.raises(kiln.Error, match="not C-contiguous"):
        kiln.device_pointer(FakeCudaArray(0x7000, (2, 3), strides=(4, 8)))
    with pytest.raises(kiln.Error, match="cannot take a device pointer from list"):
        kiln.device_pointer([1, 2])
    with pytest.raises(kiln.Error, match="no dtype for"):
        kiln.device_pointer(FakeCudaArray(0x10, (4,), typestr="<c8"))


def test_host_dlpack_tensor_is_refused():
    with pytest.raises(kiln.Error, match="DLPack device type 1"):
        kiln.device_pointer(np.zeros(4, np.float32))  # numpy speaks DLPack, but on the CPU


def test_bindings_are_checked_against_the_plan():
    assert kiln.check_binding("x", FakeCudaArray(0x20, (2, 3, 8, 8)), "f32", [2, 3, 8, 8]) == 0x20
    assert kiln.check_binding("x", FakeCudaArray(0x20, (2, 192)), "f32", [2, 3, 8, 8]) == 0x20  # a view
    assert kiln.check_binding("x", 0x30, "f32", [2, 3, 8, 8]) == 0x30  # an address: nothing to check
    with pytest.raises(kiln.Error) as e:
        kiln.check_binding("x", FakeCudaArray(0x20, (2, 3, 8, 8), typestr="<f2"), "f32", [2, 3, 8, 8])
    assert str(e.value) == "binding 'x': a f16 tensor of shape (2, 3, 8, 8); the plan binds f32[2,3,8,8] here"
    with pytest.raises(kiln.Error, match=r"shape \(1, 3, 8, 8\)"):
        kiln.check_binding("x", FakeCudaArray(0x20, (1, 3, 8, 8)), "f32", [2, 3, 8, 8])


def test_stream_handles():
    class TorchLike:
        cuda_stream = 99

    class CupyLike:
        ptr = 77

    class Protocol:
        def __cuda_stream__(self):
            return (0, 55)

    assert kiln.stream_handle(None) == 0
    assert kiln.stream_handle(5) == 5
    assert kiln.stream_handle(TorchLike()) == 99
    assert kiln.stream_handle(CupyLike()) == 77
    assert kiln.stream_handle(Protocol()) == 55


@pytest.mark.skipif(has_gpu, reason="a GPU is present")
def test_engine_without_gpu_is_a_clear_error(tiny_onnx):
    plan = kiln.build(tiny_onnx, gpu=True)  # a GPU plan builds without a GPU; tactics are not timed
    assert plan.target == "cuda"
    with pytest.raises(kiln.Error, match="^no GPU: kiln.Engine needs a CUDA device"):
        kiln.Engine(plan)


@pytest.mark.skipif(not has_gpu, reason=f"no GPU ({kiln.no_gpu_reason()})")
@pytest.mark.parametrize("fp16", [False, True])
def test_engine_matches_reference(tiny_onnx, fp16):
    x = random_input((2, 3, 8, 8))
    want = kiln.build(tiny_onnx).run({"x": x})["prob"]
    plan = kiln.build(tiny_onnx, fp16=fp16) if fp16 else kiln.build(tiny_onnx, gpu=True)
    engine = kiln.Engine(plan, workspace=64)
    ctx = engine.create_context()
    got = ctx.run({"x": x})["prob"]
    np.testing.assert_allclose(got, want, atol=2e-2 if fp16 else 1e-4)
    ctx.enable_profiler()
    ctx.run({"x": x})
    assert "conv1" in ctx.profile_table()


@pytest.mark.skipif(not has_gpu, reason=f"no GPU ({kiln.no_gpu_reason()})")
def test_enqueue_with_torch_tensors(tiny_onnx):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    x = random_input((2, 3, 8, 8))
    want = kiln.build(tiny_onnx).run({"x": x})["prob"]
    ctx = kiln.Engine(kiln.build(tiny_onnx, gpu=True)).create_context()
    dx = torch.from_numpy(x).cuda()
    out = torch.empty((2, 5), device="cuda")
    stream = torch.cuda.Stream()
    ctx.enqueue({"x": dx, "prob": out}, stream)  # DLPack for x, __cuda_array_interface__ for out too
    stream.synchronize()
    np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-4)


@pytest.mark.skipif(not has_gpu, reason=f"no GPU ({kiln.no_gpu_reason()})")
def test_dynamic_engine_set_input_shape(dynamic_onnx):
    plan = kiln.build(dynamic_onnx, gpu=True, min_shapes={"x": (1, 3, 8, 8)}, max_shapes={"x": (4, 3, 8, 8)})
    ctx = kiln.Engine(plan).create_context()
    ctx.set_input_shape("x", (3, 3, 8, 8))
    assert ctx.output_shape("prob") == [3, 5]
    assert ctx.binding("x") == ("f32", [3, 3, 8, 8])
    x = random_input((3, 3, 8, 8))
    np.testing.assert_allclose(ctx.run({"x": x})["prob"], plan.run({"x": x})["prob"], atol=1e-4)
    with pytest.raises(kiln.ShapeError):
        ctx.set_input_shape("x", (5, 3, 8, 8))


def test_stubs_ship_with_the_module():
    import pathlib
    stub = pathlib.Path(kiln._kiln.__file__).with_name("_kiln.pyi")
    assert stub.is_file(), stub
    text = stub.read_text()
    assert "def load_onnx(" in text and "class Plan" in text
    assert pathlib.Path(kiln.__file__).with_name("py.typed").is_file()
