#!/usr/bin/python3
"""Export real PyTorch networks to ONNX with PyTorch's own outputs, and check kiln against them.

    /usr/bin/python3 tools/onnx_exports.py [OUTDIR] [--only NAME,...] [--check-with KILN]
                                           [--dynamo] [--tolerance 1e-4]

Models (random weights from a fixed seed, eval mode):
  resnet50      torchvision ResNet-50                           input [1,3,224,224]
  mobilenet_v2  torchvision MobileNetV2                         input [1,3,224,224]
  googlenet     torchvision GoogLeNet (aux_logits=False, transform_input=False, init_weights=True)
                                                                input [1,3,224,224]
  vgg19         torchvision VGG-19                              input [1,3,224,224]
                (224 is the smallest size it exports at: the TorchScript exporter takes its
                adaptive 7x7 average pool only where 7 divides the feature map, 224/32 = 7)
  lstm          nn.LSTM(64, 128, num_layers=2) + nn.Linear(128, 10) on every step
                                                                input [16,2,64] (seq, batch, feature)

BatchNorm layers get random affine parameters and running statistics calibrated on a fixed
random batch (one forward pass in training mode with momentum None), so that activations stay
O(1) as in a trained network; otherwise GoogLeNet's std-0.01 weights leave its classifier
looking at values near 1e-14 and the test would check nothing but a bias.

Each model is written in the folder layout of `kiln conformance`:
  OUTDIR/<name>/model.onnx                  TorchScript exporter (torch.onnx.export), opset 17
  OUTDIR/<name>/test_data_set_0/input_0.pb  the fixed input (TensorProto)
  OUTDIR/<name>/test_data_set_0/output_0.pb PyTorch's output
TensorProto files are written by a small protobuf encoder here, so Debian's python3 (torch and
numpy, no onnx package) suffices.

--check-with KILN runs `KILN run model.onnx --input NAME=input_0.pb --output-dir ...` for each
model and requires max|kiln - torch| / max|torch| <= --tolerance (1e-4); --remove-passing then
deletes the folders of the models that pass (the exports take 690 MB, VGG-19 548 MB of it).

--dynamo (torch 2.6 or later, with onnxscript; e.g. the GPU machine's torch 2.11) exports only
resnet50 and lstm, with the torch.export-based exporter (torch.onnx.export(..., dynamo=True)),
opset 18, weights in an external data file beside the model (OUTDIR/<name>_dynamo/model.onnx and
model.onnx.data). Those files are large; check them in the same call with --check-with.

Exits 77 (a skip for Meson) when torch, torchvision or numpy cannot be imported.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torchvision
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import torch/torchvision/numpy ({e}); install Debian's "
          "python3-torch and python3-torchvision")
    sys.exit(77)

# The TorchScript exporter warns about LSTM batch sizes and prim::Constant shape inference;
# neither applies to these fixed-shape exports.
warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")

SEED = 20240601
OPSET = 17
DYNAMO_OPSET = 18
ALL_MODELS = ["resnet50", "mobilenet_v2", "googlenet", "vgg19", "lstm"]
DYNAMO_MODELS = ["resnet50", "lstm"]

# ---- TensorProto files without the onnx package ------------------------------------------------
# TensorProto fields used: dims = 1 (int64, repeated), data_type = 2, name = 8, raw_data = 9;
# readers also accept float_data = 4, int32_data = 5, int64_data = 7, double_data = 10.
_ONNX_TYPES = {np.dtype(np.float32): 1, np.dtype(np.uint8): 2, np.dtype(np.int8): 3,
               np.dtype(np.uint16): 4, np.dtype(np.int16): 5, np.dtype(np.int32): 6,
               np.dtype(np.int64): 7, np.dtype(np.bool_): 9, np.dtype(np.float16): 10,
               np.dtype(np.float64): 11, np.dtype(np.uint32): 12, np.dtype(np.uint64): 13}
_NUMPY_TYPES = {v: k for k, v in _ONNX_TYPES.items()}


def _varint(n):
    n &= (1 << 64) - 1  # negative int64 as two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, wire, payload):
    return _varint((number << 3) | wire) + payload


def tensor_proto_bytes(array, name=""):
    a = np.ascontiguousarray(array)
    if a.dtype not in _ONNX_TYPES:
        raise ValueError(f"dtype {a.dtype} has no ONNX type here")
    out = b"".join(_field(1, 0, _varint(int(d))) for d in a.shape)
    out += _field(2, 0, _varint(_ONNX_TYPES[a.dtype]))
    if name:
        data = name.encode()
        out += _field(8, 2, _varint(len(data)) + data)
    raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    out += _field(9, 2, _varint(len(raw)) + raw)
    return out


def write_pb(array, path, name=""):
    with open(path, "wb") as f:
        f.write(tensor_proto_bytes(array, name))


def _read_varint(buf, pos):
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def read_pb(path):
    """A TensorProto file as (name, numpy array)."""
    with open(path, "rb") as f:
        buf = f.read()
    dims, dtype, name, raw, packed = [], 1, "", None, {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if number == 1:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
            elif number == 2:
                dtype = value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            data = buf[pos:pos + length]
            pos += length
            if number == 1:  # packed dims
                p = 0
                while p < len(data):
                    v, p = _read_varint(data, p)
                    dims.append(v - (1 << 64) if v >= 1 << 63 else v)
            elif number == 8:
                name = data.decode()
            elif number == 9:
                raw = data
            else:
                packed[number] = data
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ValueError(f"{path}: unexpected protobuf wire type {wire}")
    np_type = _NUMPY_TYPES[dtype]
    if raw is not None:
        a = np.frombuffer(raw, dtype=np_type.newbyteorder("<"))
    elif 4 in packed:
        a = np.frombuffer(packed[4], dtype="<f4")
    elif 10 in packed:
        a = np.frombuffer(packed[10], dtype="<f8")
    else:
        raise ValueError(f"{path}: no raw_data, float_data or double_data")
    return name, a.astype(np_type).reshape(dims)


# ---- models --------------------------------------------------------------------------------------
class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(64, 128, num_layers=2)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):         # [T,B,64]
        y, _ = self.lstm(x)       # [T,B,128]
        return self.fc(y)         # [T,B,10]


def build(name):
    """(model in eval mode, fixed input) with weights from the fixed seed."""
    torch.manual_seed(SEED)
    tv = torchvision.models
    if name == "resnet50":
        model, shape = tv.resnet50(weights=None), [1, 3, 224, 224]
    elif name == "mobilenet_v2":
        model, shape = tv.mobilenet_v2(weights=None), [1, 3, 224, 224]
    elif name == "googlenet":
        model = tv.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=True)
        shape = [1, 3, 224, 224]
    elif name == "vgg19":
        model, shape = tv.vgg19(weights=None), [1, 3, 224, 224]
    elif name == "lstm":
        model, shape = LSTMNet(), [16, 2, 64]
    else:
        raise ValueError(f"unknown model '{name}'")
    calibrate_batchnorm(model, shape)
    model.eval()
    gen = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(shape, generator=gen)
    return model, x


def calibrate_batchnorm(model, shape):
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    gen = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.uniform_(-0.1, 0.1, generator=gen)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one batch sets the statistics
        model.train()
        model(torch.randn([2] + shape[1:], generator=gen))
    model.eval()


def export_torchscript(model, x, path):
    torch.onnx.export(model, (x,), path, opset_version=OPSET, input_names=["input"],
                      output_names=["output"], do_constant_folding=True)
    return "input"


def export_dynamo(model, x, path):
    # torch >= 2.6: the torch.export-based exporter; external_data=True writes the weights to
    # model.onnx.data beside the model (its location in the model is relative to the folder).
    torch.onnx.export(model, (x,), path, dynamo=True, opset_version=DYNAMO_OPSET,
                      input_names=["input"], output_names=["output"], external_data=True)
    import onnx  # the dynamo exporter depends on it
    m = onnx.load(path, load_external_data=False)
    opsets = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    external = sum(1 for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    print(f"  opsets {opsets}, {external} of {len(m.graph.initializer)} initializers in external data, "
          f"graph input '{m.graph.input[0].name}'", flush=True)
    return m.graph.input[0].name


def export_one(name, outdir, dynamo):
    model, x = build(name)
    folder = os.path.join(outdir, name + ("_dynamo" if dynamo else ""))
    data = os.path.join(folder, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    with torch.no_grad():
        y = model(x).numpy()
    t0 = time.time()
    input_name = (export_dynamo if dynamo else export_torchscript)(model, x, os.path.join(folder, "model.onnx"))
    write_pb(x.numpy(), os.path.join(data, "input_0.pb"), input_name)
    write_pb(y, os.path.join(data, "output_0.pb"), "output")
    print(f"{os.path.basename(folder)}: exported in {time.time() - t0:.1f} s, output {list(y.shape)} "
          f"max|y| {np.abs(y).max():.4g}", flush=True)
    return folder, input_name


def relative_error(got, want):
    """max|got - want| / max|want|, in float64 (NaN when either holds a NaN)."""
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def select_models(ap, only, all_models, default=None):
    """The models that --only names (comma-separated; `default`, else all, when not given);
    ap.error names the unknown ones."""
    if not only:
        return all_models if default is None else default
    names = [n for n in only.split(",") if n]
    unknown = [n for n in names if n not in all_models]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {all_models}")
    return names


def export_and_check(names, export, check, check_with, remove_passing):
    """Exports each model (export(name) -> its folder) and, with --check-with, checks it on kiln
    (check(name, folder) -> ok), deleting each folder that passes when remove_passing. Exits 1
    naming the models where kiln differs from PyTorch, else says that all matched."""
    failed = []
    for name in names:
        folder = export(name)
        if not check_with:
            continue
        if not check(name, folder):
            failed.append(name)
        elif remove_passing:
            shutil.rmtree(folder)
    if failed:
        print(f"kiln does not match PyTorch on: {', '.join(failed)}")
        sys.exit(1)
    if check_with:
        print(f"kiln matches PyTorch on all {len(names)} models")


def compare_run(kiln_cmd, data, input_name, tolerance, output_name=None):
    """Runs kiln_cmd (`kiln run MODEL` or `kiln run --plan PLAN`, without inputs and outputs) on
    data/input_0.pb as `input_name` and compares what it writes with data/output_0.pb: the output
    `output_name`, or the only one it writes when None. Returns (ok, message); NaN is not ok."""
    _, want = read_pb(os.path.join(data, "output_0.pb"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        r = subprocess.run(kiln_cmd + ["--input", input_name + "=" + os.path.join(data, "input_0.pb"),
                                       "--output-dir", tmp], capture_output=True, text=True)
        seconds = time.time() - t0
        if r.returncode != 0:
            return False, f"kiln run failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
        if output_name is None:
            written = sorted(f for f in os.listdir(tmp) if f.endswith(".pb"))
            if len(written) != 1:
                return False, f"kiln wrote {written}, expected one output"
            path = os.path.join(tmp, written[0])
        else:
            path = os.path.join(tmp, output_name + ".pb")
            if not os.path.exists(path):
                return False, f"kiln wrote {sorted(os.listdir(tmp))}, no {output_name}.pb"
        _, got = read_pb(path)
    if got.shape != want.shape:
        return False, f"shape {list(got.shape)}, PyTorch has {list(want.shape)}"
    err = relative_error(got, want)
    ok = err <= tolerance  # False for NaN
    return ok, f"max|kiln - torch| / max|torch| = {err:.3g} (limit {tolerance:g}), kiln run {seconds:.1f} s"


def check_one(kiln, folder, input_name, tolerance):
    """Runs kiln on the folder's model and input; returns (ok, message)."""
    return compare_run([kiln, "run", os.path.join(folder, "model.onnx")], os.path.join(folder, "test_data_set_0"),
                       input_name, tolerance)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", default=os.path.join("build", "generated", "onnx_exports"))
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(ALL_MODELS))
    ap.add_argument("--check-with", metavar="KILN", help="the kiln CLI to check the exports with")
    ap.add_argument("--dynamo", action="store_true",
                    help="use the dynamo exporter (torch >= 2.6) for " + ",".join(DYNAMO_MODELS))
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--remove-passing", action="store_true",
                    help="with --check-with: delete each model folder that passes (VGG-19 alone is 548 MB)")
    args = ap.parse_args()
    names = select_models(ap, args.only, ALL_MODELS, DYNAMO_MODELS if args.dynamo else None)
    if args.dynamo:
        major, minor = (int(v) for v in torch.__version__.split(".")[:2])
        if (major, minor) < (2, 6):
            print(f"SKIP: --dynamo needs torch 2.6 or later (torch.onnx.export(dynamo=True)), "
                  f"this is {torch.__version__}")
            sys.exit(77)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{'dynamo exporter, opset %d' % DYNAMO_OPSET if args.dynamo else 'TorchScript exporter, opset %d' % OPSET}")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    input_names = {}

    def export(name):
        folder, input_names[name] = export_one(name, args.outdir, args.dynamo)
        return folder

    def check(name, folder):
        ok, msg = check_one(args.check_with, folder, input_names[name], args.tolerance)
        print(f"  {'ok' if ok else 'FAIL'}: {msg}", flush=True)
        return ok

    export_and_check(names, export, check, args.check_with, args.remove_passing)


if __name__ == "__main__":
    main()
