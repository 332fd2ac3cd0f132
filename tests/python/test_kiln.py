"""The Python module against the CPU reference and onnxruntime: import, build with the CLI's
options, inspect, plan files, dynamic shapes, INT8, the DSL examples, and errors."""

import pathlib

import numpy as np
import pytest
from onnx import numpy_helper

import kiln
from conftest import random_input


def test_module_imports_with_version_and_examples():
    assert kiln.__version__
    assert "lenet" in kiln.examples() and "resnet50" in kiln.examples()
    assert issubclass(kiln.ShapeError, kiln.Error) and issubclass(kiln.Error, RuntimeError)


def test_model_inputs_and_outputs(tiny_onnx, dynamic_onnx):
    m = kiln.load_onnx(str(tiny_onnx))
    assert repr(m) == "<kiln.Model 'tiny': 9 nodes, inputs x: f32[2,3,8,8], outputs prob: f32[2,5]>"
    assert m.inputs == [{"name": "x", "dtype": "f32", "shape": (2, 3, 8, 8)}]
    assert [o["name"] for o in m.outputs] == ["prob"]
    assert m.layers >= 9
    d = kiln.load_onnx(dynamic_onnx)  # os.PathLike works too
    assert d.inputs[0]["shape"] == ("N", 3, 8, 8)


def test_plan_and_graph_match_onnxruntime(tiny_onnx, ort):
    x = random_input((2, 3, 8, 8))
    want = ort(tiny_onnx, {"x": x})["prob"]
    model = kiln.load_onnx(str(tiny_onnx))
    plan = kiln.build(model)
    got = plan.run({"x": x})
    assert list(got) == ["prob"]
    assert got["prob"].dtype == np.float32 and got["prob"].shape == (2, 5)
    np.testing.assert_allclose(got["prob"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.run({"x": x})["prob"], want, rtol=1e-5, atol=1e-6)
    # float64 arrays are converted to the input's dtype, as `kiln run` converts input files
    np.testing.assert_allclose(plan.run({"x": x.astype(np.float64)})["prob"], want, rtol=1e-5, atol=1e-6)
    # and arrays that are not C-contiguous are copied as they are read
    np.testing.assert_allclose(plan.run({"x": np.asfortranarray(x)})["prob"], want, rtol=1e-5, atol=1e-6)


def test_build_fuses_and_reports(tiny_onnx):
    plan = kiln.build(tiny_onnx)
    assert "layers before fusion:" in plan.report and "layers after fusion:" in plan.report
    assert plan.layers_after < plan.layers_before
    assert plan.layers_after == len(plan.steps)
    fused = [s for s in plan.steps if s["fused"]]
    assert any(s["op"].startswith("Conv+") for s in fused), plan.steps
    assert {"conv1", "relu1"} <= {n for s in fused for n in s["fused"]}
    assert 0 < plan.arena_bytes <= plan.naive_bytes
    assert "x" in plan.memory_report()
    assert plan.target == "cpu-reference" and not plan.is_dynamic
    assert repr(plan) == f"<kiln.Plan 'tiny' for cpu-reference: {len(plan.steps)} steps, arena {plan.arena_bytes} bytes>"
    assert {s["layout"] for s in plan.steps if s["op"].startswith("Conv")} == {"NCHW"}
    fp16 = kiln.build(tiny_onnx, fp16=True)  # builds without a GPU; its tactics are timed on one
    assert fp16.target == "cuda-fp16"
    assert {s["layout"] for s in fp16.steps if s["op"].startswith("Conv")} == {"NHWC"}
    bf16 = kiln.build(tiny_onnx, bf16=True)  # cuda-fp16's plan, for an engine that stores BF16
    assert bf16.target == "cuda-bf16"
    assert [(s["op"], s["layout"]) for s in bf16.steps] == [(s["op"], s["layout"]) for s in fp16.steps]
    with pytest.raises(kiln.Error, match="--fp16 and --bf16 ask for different precisions"):
        kiln.build(tiny_onnx, fp16=True, bf16=True)
    plain = kiln.build(tiny_onnx, target="plain")
    assert plain.target == "plain" and len(plain.steps) > len(plan.steps)


def test_inspect_is_the_cli_text(tiny_onnx, tmp_path):
    text = kiln.inspect(str(tiny_onnx))
    for part in ("layers before fusion:", "layers after fusion:", "conv1"):
        assert part in text
    plan = kiln.build(tiny_onnx)
    plan.save(str(tmp_path / "t.plan"))
    assert kiln.inspect(tmp_path / "t.plan") == plan.dump() == kiln.inspect(plan)


def test_plan_file_round_trip(tiny_onnx, tmp_path):
    x = random_input((2, 3, 8, 8), seed=3)
    plan = kiln.build(kiln.load_onnx(str(tiny_onnx)))
    path = tmp_path / "tiny.plan"
    plan.save(str(path))
    loaded = kiln.load_plan(str(path))
    assert loaded.dump() == plan.dump()
    assert loaded.weights_hash == plan.weights_hash
    assert loaded.layers_after == -1 and loaded.report == ""
    np.testing.assert_array_equal(loaded.run({"x": x})["prob"], plan.run({"x": x})["prob"])
    with pytest.raises(kiln.FormatError, match="target"):
        kiln.load_plan(str(path), target="cuda")


def test_corrupt_plan_is_a_format_error(tiny_onnx, tmp_path):
    path = tmp_path / "bad.plan"
    kiln.build(tiny_onnx).save(str(path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(kiln.FormatError, match="checksum"):
        kiln.load_plan(str(path))


def test_static_shapes_and_max_batch(dynamic_onnx, ort):
    x = random_input((3, 3, 8, 8), seed=5)
    want = ort(dynamic_onnx, {"x": x})["prob"]
    plan = kiln.build(dynamic_onnx, shapes={"x": (3, 3, 8, 8)})
    assert plan.inputs[0]["shape"] == (3, 3, 8, 8)
    np.testing.assert_allclose(plan.run({"x": x})["prob"], want, rtol=1e-5, atol=1e-6)
    assert kiln.build(dynamic_onnx, max_batch=4).inputs[0]["shape"] == (4, 3, 8, 8)


def test_dynamic_plan_runs_any_shape_in_its_profile(dynamic_onnx, ort, tmp_path):
    plan = kiln.build(dynamic_onnx, min_shapes={"x": (1, 3, 8, 8)}, opt_shapes={"x": (2, 3, 8, 8)},
                      max_shapes={"x": (4, 3, 8, 8)})
    assert plan.is_dynamic and len(plan.profiles) == 1
    path = tmp_path / "dyn.plan"
    plan.save(str(path))
    loaded = kiln.load_plan(str(path))
    for batch in (1, 3, 4):
        x = random_input((batch, 3, 8, 8), seed=batch)
        want = ort(dynamic_onnx, {"x": x})["prob"]
        np.testing.assert_allclose(loaded.run({"x": x})["prob"], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(kiln.ShapeError, match="x"):
        loaded.run({"x": random_input((5, 3, 8, 8))})


def test_two_profiles(dynamic_onnx, ort):
    plan = kiln.build(dynamic_onnx, min_shapes=[{"x": (1, 3, 8, 8)}, {"x": (3, 3, 8, 8)}],
                      max_shapes=[{"x": (2, 3, 8, 8)}, {"x": (6, 3, 8, 8)}])
    assert len(plan.profiles) == 2
    x = random_input((5, 3, 8, 8), seed=9)
    np.testing.assert_allclose(plan.run({"x": x})["prob"], ort(dynamic_onnx, {"x": x})["prob"], rtol=1e-5, atol=1e-6)
    with pytest.raises(kiln.Error, match="--max-shapes"):
        kiln.build(dynamic_onnx, min_shapes={"x": (1, 3, 8, 8)})


def calibration_batches(tmp_path):
    """Four random batches of the tiny model's input in tmp_path/calib, as --calib-data reads them."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.save(calib / f"batch{i}.npy", random_input((2, 3, 8, 8), seed=10 + i))
    return calib


def test_int8_calibration_and_cache(tiny_onnx, tmp_path):
    calib = calibration_batches(tmp_path)
    cache = tmp_path / "tiny.calib"
    fp32 = kiln.build(tiny_onnx)
    int8 = kiln.build(tiny_onnx, int8=True, calib_data=calib, calibrator="minmax", calib_cache=cache)
    assert cache.is_file()
    ops = [s["op"] for s in int8.steps]
    assert "QuantizeLinear" in ops and "QuantizeLinear" not in [s["op"] for s in fp32.steps], ops
    x = random_input((2, 3, 8, 8), seed=11)
    np.testing.assert_allclose(int8.run({"x": x})["prob"], fp32.run({"x": x})["prob"], atol=0.05)
    # the cache alone gives the same plan, without calibration data
    again = kiln.build(tiny_onnx, int8=True, calib_cache=cache)
    assert again.dump() == int8.dump()


def test_fp8_from_the_int8_cache(tiny_onnx, tmp_path):
    calib = calibration_batches(tmp_path)
    cache = tmp_path / "tiny.calib"
    kiln.build(tiny_onnx, int8=True, calib_data=calib, calib_cache=cache)
    fp32 = kiln.build(tiny_onnx)
    fp8 = kiln.build(tiny_onnx, fp8=True, calib_cache=cache)
    assert any(s["op"] == "QuantizeLinear" for s in fp8.steps)
    assert "f8e4m3fn" in fp8.dump()
    x = random_input((2, 3, 8, 8), seed=11)
    np.testing.assert_allclose(fp8.run({"x": x})["prob"], fp32.run({"x": x})["prob"], atol=0.05)
    with pytest.raises(kiln.Error) as e:
        kiln.build(tiny_onnx, int8=True, fp8=True, calib_cache=cache)
    assert "--int8 and --fp8 are two 8-bit formats" in str(e.value)


def test_int8_without_data_names_the_option(tiny_onnx):
    with pytest.raises(kiln.Error) as e:
        kiln.build(tiny_onnx, int8=True)
    assert str(e.value) == ("kiln build --int8: give --calib-data DIR (or --calib-cache FILE of an earlier "
                            "calibration)")


def test_dsl_example_lenet_runs():
    model = kiln.example("lenet")
    assert model.inputs[0]["name"] == "data"
    plan = kiln.build(model, max_batch=2)
    out = plan.run({"data": random_input((2, 1, 28, 28))})
    (prob,) = out.values()
    assert prob.shape == (2, 10)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(kiln.Error, match="no such example network"):
        kiln.example("alexnet")


@pytest.mark.parametrize("name", ["test_relu", "test_conv_with_strides_padding", "test_gemm_default_single_elem_vector_bias",
                                  "test_maxpool_2d_pads", "test_softmax_axis_1", "test_batchnorm_example",
                                  "test_averagepool_2d_default", "test_matmul_2d"])
def test_onnx_backend_node(backend_data, name):
    folder = backend_data / "node" / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    model = kiln.load_onnx(str(folder / "model.onnx"))
    ds = folder / "test_data_set_0"
    inputs = {}
    for i, vi in enumerate(model.inputs):
        inputs[vi["name"]] = numpy_helper.to_array(_tensor(ds / f"input_{i}.pb"))
    got = kiln.build(model).run(inputs)
    for i, vo in enumerate(model.outputs):
        want = numpy_helper.to_array(_tensor(ds / f"output_{i}.pb"))
        np.testing.assert_allclose(got[vo["name"]], want, rtol=1e-4, atol=1e-5)


def test_sequences_and_optionals_on_the_reference(backend_data):
    """A sequence output is a list of arrays, an empty optional None; a plan of them is refused."""
    folder = backend_data / "node" / "test_if_opt"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    model = kiln.load_onnx(str(folder / "model.onnx"))
    assert model.outputs[0]["kind"] == "optional sequence"
    present = model.run({"cond": np.array(False)})["sequence"]
    assert isinstance(present, list) and len(present) == 1
    np.testing.assert_array_equal(present[0], np.array([1, 2, 3, 4, 5], np.float32))
    assert model.run({"cond": np.array(True)})["sequence"] is None
    with pytest.raises(kiln.Error, match="plans hold tensors"):
        kiln.build(model)
    loop = kiln.load_onnx(str(backend_data / "node" / "test_loop13_seq" / "model.onnx"))
    with pytest.raises(kiln.Error, match="input 'seq_empty' is seq"):
        loop.run({"trip_count": np.array(1, np.int64), "cond": np.array(True),
                  "seq_empty": np.zeros(1, np.float32)})


def _tensor(path):
    from onnx import TensorProto
    t = TensorProto()
    t.ParseFromString(pathlib.Path(path).read_bytes())
    return t


# ---- errors: kiln.Error (or a subclass) with the library's message ----------------------------------

def test_missing_model_file(tmp_path):
    with pytest.raises(kiln.Error) as e:
        kiln.load_onnx(str(tmp_path / "absent.onnx"))
    assert "absent.onnx" in str(e.value)


def test_wrong_input_name(tiny_onnx):
    plan = kiln.build(tiny_onnx)
    x = random_input((2, 3, 8, 8))
    with pytest.raises(kiln.Error) as e:
        plan.run({"x": x, "y": x})
    assert str(e.value) == "'y' is not an input of plan 'tiny'"
    with pytest.raises(kiln.Error) as e:
        plan.run({})
    assert str(e.value) == "missing input 'x' (f32[2,3,8,8])"


def test_wrong_input_shape(tiny_onnx):
    plan = kiln.build(tiny_onnx)
    with pytest.raises(kiln.Error) as e:
        plan.run({"x": random_input((1, 3, 8, 8))})
    assert str(e.value).startswith("[input 'x'] ") and "[1,3,8,8]" in str(e.value)


def test_bad_build_options(tiny_onnx):
    with pytest.raises(kiln.Error, match="--shape z: the model has no input 'z'"):
        kiln.build(tiny_onnx, shapes={"z": (1,)})
    with pytest.raises(kiln.Error, match="applies to GPU builds only"):
        kiln.build(tiny_onnx, workspace=64)
    with pytest.raises(kiln.Error, match="nosuch"):
        kiln.build(tiny_onnx, target="nosuch")
    with pytest.raises(TypeError):
        kiln.build(tiny_onnx, no_such_option=1)
