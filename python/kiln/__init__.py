"""kiln: build neural networks into fused plans and run them.

Import an ONNX model or one of kiln's DSL example networks, build it into a plan (the same
builder and options as ``kiln build``), inspect it, save and load plan files, and run it on the
CPU reference with numpy arrays, or on the GPU through an Engine and its ExecutionContexts with
device tensors from PyTorch, CuPy or anything that speaks DLPack or ``__cuda_array_interface__``.

    import numpy as np, kiln
    model = kiln.load_onnx("model.onnx")
    plan = kiln.build(model, shapes={"x": (1, 3, 224, 224)})
    print(plan.report)                       # layers before/after fusion, fused steps
    plan.save("model.plan")
    out = kiln.load_plan("model.plan").run({"x": np.zeros((1, 3, 224, 224), np.float32)})

Every error kiln reports is a ``kiln.Error`` (or a subclass: ShapeError, GraphError, FormatError,
UnsupportedError, MemoryLimitError, WeightError) with the C++ library's message.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

from ._kiln import (  # noqa: F401
    Error,
    FormatError,
    GraphError,
    MemoryLimitError,
    Model,
    Plan,
    ShapeError,
    UnsupportedError,
    WeightError,
    __version__,
    example,
    examples,
    gpu_count,
    load_onnx,
    load_plan,
    no_gpu_reason,
)
from . import _kiln

__all__ = [
    "Error", "ShapeError", "GraphError", "FormatError", "UnsupportedError", "MemoryLimitError", "WeightError",
    "Model", "Plan", "Engine", "ExecutionContext",
    "load_onnx", "example", "examples", "build", "inspect", "load_plan", "gpu_count", "no_gpu_reason",
    "tensor_info", "device_pointer", "check_binding", "stream_handle",
]

Shapes = Mapping[str, Sequence[int]]
PathLike = Union[str, "os.PathLike[str]"]


def _dims(name: str, dims: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in dims)


def _shape_list(shapes: Shapes) -> str:
    """{"x": (1, 3, 8, 8)} -> "x:1x3x8x8" (the trtexec syntax of --min-shapes and friends)."""
    return ",".join(f"{name}:{_dims(name, dims)}" for name, dims in shapes.items())


def _profiles(v: Union[None, Shapes, Sequence[Shapes]]) -> list:
    if v is None:
        return []
    return [v] if isinstance(v, Mapping) else list(v)


def _build_argv(
    target: Optional[str] = None,
    gpu: bool = False,
    fp16: bool = False,
    bf16: bool = False,
    shapes: Optional[Shapes] = None,
    max_batch: Optional[int] = None,
    min_shapes: Union[None, Shapes, Sequence[Shapes]] = None,
    opt_shapes: Union[None, Shapes, Sequence[Shapes]] = None,
    max_shapes: Union[None, Shapes, Sequence[Shapes]] = None,
    buckets_between: Optional[int] = None,
    int8: bool = False,
    fp8: bool = False,
    calib_data: Optional[PathLike] = None,
    calibrator: Optional[str] = None,
    percentile: Optional[float] = None,
    calib_cache: Optional[PathLike] = None,
    workspace: Optional[float] = None,
    timing_cache: Optional[PathLike] = None,
    check: bool = False,
) -> list:
    """The options of ``kiln build`` that these keyword arguments stand for, for the C++ side to
    parse and check exactly as the command line does (its messages name those flags)."""
    argv: list = []
    if target is not None:
        argv += ["--target", str(target)]
    if gpu:
        argv.append("--gpu")
    if fp16:
        argv.append("--fp16")
    if bf16:
        argv.append("--bf16")
    for name, dims in (shapes or {}).items():
        argv += ["--shape", f"{name}={_dims(name, dims)}"]
    if max_batch is not None:
        argv += ["--max-batch", str(max_batch)]
    for flag, v in (("--min-shapes", min_shapes), ("--opt-shapes", opt_shapes), ("--max-shapes", max_shapes)):
        for p in _profiles(v):
            argv += [flag, _shape_list(p)]
    if buckets_between is not None:
        argv += ["--buckets-between", str(buckets_between)]
    if int8:
        argv.append("--int8")
    if fp8:
        argv.append("--fp8")
    for flag, v in (("--calib-data", calib_data), ("--calibrator", calibrator), ("--calib-cache", calib_cache),
                    ("--timing-cache", timing_cache)):
        if v is not None:
            argv += [flag, os.fspath(v)]
    if percentile is not None:
        argv += ["--percentile", repr(float(percentile))]
    if workspace is not None:
        argv += ["--workspace", repr(float(workspace))]
    if check:
        argv.append("--check")
    return argv


def _model(model: Union[Model, PathLike]) -> Model:
    return model if isinstance(model, Model) else load_onnx(os.fspath(model))


def build(model: Union[Model, PathLike], *, verbose: bool = False, **options: Any) -> Plan:
    """Builds a plan, as ``kiln build`` does (the same C++ function).

    model: a Model (load_onnx(), example()) or the path of an ONNX model.
    Options (each the ``kiln build`` flag of the same name):
      target: "cpu-reference" (default), "plain" (no fusion), "cuda", "cuda-fp16" or "cuda-bf16";
      gpu: target "cuda"; fp16: target "cuda-fp16"; bf16: target "cuda-bf16" (BF16 on the GPU);
      shapes: {input: dims} for dynamic dims (--shape); max_batch: dim 0 of every input;
      min_shapes, opt_shapes, max_shapes: {input: dims}, or a list of them for several
        profiles: a dynamic plan (--min-shapes ...); buckets_between: shapes timed between;
      int8, calib_data (a folder of .npy/.pb batches), calibrator ("entropy", "minmax",
        "percentile"), percentile, calib_cache (TensorRT's cache format): INT8 calibration;
      fp8: the same calibration (and cache) for FP8 E4M3 instead of INT8;
      workspace (MiB), timing_cache (a file): the engine options of GPU builds;
      check: run every pass's result on the CPU reference against the previous one.
    verbose: print what ``kiln build`` prints (the report is in Plan.report either way).
    Raises kiln.Error with the library's message for a bad option, model or build.
    """
    return _model(model)._build(_build_argv(**options), verbose)


def inspect(model: Union[Model, Plan, PathLike], **options: Any) -> str:
    """What ``kiln inspect`` prints: for a model (or ONNX path), the layers before and after fusion,
    each fused step with what it absorbed, the target, the steps and the memory plan (options as
    build(): target, shapes, ...); for a Plan or a plan file, the plan's dump."""
    if isinstance(model, Plan):
        return model.dump()
    if not isinstance(model, Model):
        path = os.fspath(model)
        with open(path, "rb") as f:
            if f.read(8) == b"KILNPLAN":
                return load_plan(path).dump()
        model = load_onnx(path)
    return model._inspect(_build_argv(**options))


# ---- the GPU --------------------------------------------------------------------------------------

def _require_gpu(what: str) -> None:
    if gpu_count() == 0:
        raise Error(f"no GPU: {what} ({no_gpu_reason()}); kiln runs plans on the CPU reference with Plan.run()")


_TYPESTR = {"f4": "f32", "f8": "f64", "f2": "f16", "i1": "i8", "i2": "i16", "i4": "i32", "i8": "i64",
            "u1": "u8", "u2": "u16", "u4": "u32", "u8": "u64", "b1": "bool"}
_ITEMSIZE = {"f32": 4, "f64": 8, "f16": 2, "bf16": 2, "i8": 1, "i16": 2, "i32": 4, "i64": 8, "u8": 1, "u16": 2,
             "u32": 4, "u64": 8, "bool": 1}


def _dense(shape: Sequence[int], strides: Optional[Sequence[int]], itemsize: int) -> bool:
    """Whether strides (in bytes; None: C order) describe a C-contiguous array; dims of 1 may have any stride."""
    if strides is None:
        return True
    expect = itemsize
    for d, s in zip(reversed(list(shape)), reversed(list(strides))):
        if d != 1 and s != expect:
            return False
        expect *= d
    return True


def tensor_info(tensor: Any) -> tuple:
    """(device address, kiln dtype name or None, shape or None) of a CUDA tensor: an int address
    as it is (nothing to check), else ``__cuda_array_interface__`` (CuPy, Numba, PyTorch), else
    DLPack (``__dlpack__``). Raises kiln.Error for a tensor that is not C-contiguous (kiln reads
    bindings as dense arrays) or not in CUDA device memory."""
    if isinstance(tensor, int):
        return tensor, None, None
    cai = getattr(tensor, "__cuda_array_interface__", None)
    if cai is not None:
        typestr = cai["typestr"]
        dtype = _TYPESTR.get(typestr[1:])
        shape = tuple(cai["shape"])
        if not _dense(shape, cai.get("strides"), int(typestr[2:])):
            raise Error(f"a tensor of shape {shape} with strides {tuple(cai['strides'])} is not C-contiguous; "
                        "kiln binds dense tensors (copy it first)")
        if dtype is None:
            raise Error(f"a tensor of element type '{typestr}' (__cuda_array_interface__), which kiln has no dtype for")
        return int(cai["data"][0]), dtype, shape
    if hasattr(tensor, "__dlpack__"):
        if hasattr(tensor, "__dlpack_device__"):
            kind = int(tensor.__dlpack_device__()[0])
            if kind not in (2, 13):  # kDLCUDA, kDLCUDAManaged
                raise Error(f"a {type(tensor).__name__} in DLPack device type {kind} memory (1 is the CPU): kiln "
                            "binds CUDA device memory (ExecutionContext.run() takes host arrays)")
        ptr, dtype, shape, strides = _kiln._dlpack_info(tensor)
        if not _dense(shape, [st * _ITEMSIZE.get(dtype, 1) for st in strides], _ITEMSIZE.get(dtype, 1)):
            raise Error(f"a tensor of shape {tuple(shape)} with strides {tuple(strides)} (elements) is not "
                        "C-contiguous; kiln binds dense tensors (copy it first)")
        if dtype == "?":
            raise Error("a DLPack tensor of an element type kiln has no dtype for")
        return ptr, dtype, tuple(shape)
    raise Error(f"cannot take a device pointer from {type(tensor).__name__}: give a CUDA tensor with "
                "__cuda_array_interface__ or __dlpack__, or an int address")


def device_pointer(tensor: Any) -> int:
    """The device address of a CUDA tensor (see tensor_info())."""
    return tensor_info(tensor)[0]


def check_binding(name: str, tensor: Any, dtype: str, dims: Sequence[int]) -> int:
    """The address of `tensor` for binding `name`, which takes `dtype` and `dims`: raises kiln.Error
    when the tensor's dtype or element count differs (an int address is taken as it is)."""
    ptr, got_dtype, shape = tensor_info(tensor)
    if got_dtype is None:
        return ptr
    count = 1
    for d in shape:
        count *= int(d)
    want = 1
    for d in dims:
        want *= int(d)
    if got_dtype != dtype or count != want:
        raise Error(f"binding '{name}': a {got_dtype} tensor of shape {tuple(shape)}; the plan binds "
                    f"{dtype}[{','.join(str(d) for d in dims)}] here")
    return ptr


def stream_handle(stream: Any) -> int:
    """A cudaStream_t as an int: None (the default stream), an int, an object with
    ``__cuda_stream__`` (returns (version, handle)), ``cuda_stream`` (torch.cuda.Stream) or
    ``ptr`` (cupy.cuda.Stream)."""
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1])
    for attr in ("cuda_stream", "ptr", "handle"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise Error(f"cannot take a CUDA stream from {type(stream).__name__}")


class Engine:
    """A plan on the GPU: weights uploaded once and tactics timed (runtime::Engine, or
    runtime::DynamicEngine for a dynamic plan). Options: workspace (MiB), timing_cache (a file),
    as ``kiln build --gpu``; tune_new_shapes (dynamic plans): time the problems of a new shape
    that the buckets' tactics do not cover, instead of running each step with the tactic it ran
    at the shape's bucket (or, for a plan built without a GPU, the libraries' heuristic choice),
    untimed (no tuning at run time by default). Raises kiln.Error("no GPU: ...") without a CUDA
    device."""

    def __init__(self, plan: Plan, *, workspace: Optional[float] = None,
                 timing_cache: Optional[PathLike] = None, tune_new_shapes: bool = False) -> None:
        _require_gpu("kiln.Engine needs a CUDA device")
        self.plan = plan
        self._engine = _kiln._Engine(plan, _build_argv(workspace=workspace, timing_cache=timing_cache),
                                     bool(tune_new_shapes))

    def create_context(self) -> "ExecutionContext":
        """A context: its own activation arena, workspace and stream."""
        return ExecutionContext(self)

    def describe(self) -> str:
        """The steps as they will run: name, op, kind, tactic."""
        return self._engine.describe()

    @property
    def tactics(self) -> dict:
        return self._engine.tactics

    @property
    def max_batch(self) -> int:
        return self._engine.max_batch


class ExecutionContext:
    """Runs an Engine's plan: enqueue() on a CUDA stream with device tensors (no copy), or run()
    with numpy arrays (uploads, executes, downloads)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ctx = _kiln._Context(engine._engine)

    def set_batch(self, batch: int) -> None:
        """Dim 0 of the next runs (static plans)."""
        self._ctx.set_batch(batch)

    def set_input_shape(self, name: str, dims: Sequence[int]) -> None:
        """An input's dims for the next runs (dynamic plans; checked against the profile)."""
        self._ctx.set_input_shape(name, list(dims))

    def set_profile(self, profile: int) -> None:
        self._ctx.set_profile(profile)

    def binding(self, name: str) -> tuple:
        """(dtype name, dims) that input or output `name` binds at the batch or shapes set."""
        return self._ctx.binding(name)

    def output_shape(self, name: str) -> list:
        """An output's dims at the batch or shapes set."""
        return self._ctx.binding(name)[1]

    def _pointers(self, bindings: Mapping[str, Any]) -> dict:
        out = {}
        for name, tensor in bindings.items():
            dtype, dims = self._ctx.binding(name)
            out[name] = check_binding(name, tensor, dtype, dims)
        return out

    def set_cuda_graph(self, on: bool) -> None:
        """Replay a CUDA graph of the whole plan (captured per shape on its first run)."""
        self._ctx.set_cuda_graph(on)

    def enable_profiler(self) -> None:
        """Time every step of the following runs (profile_table(), profile_trace())."""
        self._ctx.enable_profiler()

    def profile_table(self, top: int = 0) -> str:
        return self._ctx.profile_table(top)

    def profile_trace(self) -> str:
        """A Chrome trace (JSON) of the profiled runs."""
        return self._ctx.profile_trace()

    def enqueue(self, bindings: Mapping[str, Any], stream: Any = None) -> None:
        """Runs the plan on `stream` without waiting. bindings: {input or output name: CUDA tensor
        (DLPack or __cuda_array_interface__) or int address}, dense, in the plan's dtypes; each
        tensor's dtype and element count are checked against binding(name)."""
        self._ctx.enqueue(self._pointers(bindings), stream_handle(stream))

    def execute(self, bindings: Mapping[str, Any]) -> None:
        """enqueue() on the context's own stream, then waits."""
        self._ctx.execute(self._pointers(bindings))

    def run(self, inputs: Mapping[str, Any]) -> dict:
        """numpy in, numpy out: uploads the inputs, executes, downloads every output."""
        import numpy as np
        return self._ctx.run({k: np.ascontiguousarray(v) for k, v in inputs.items()})
