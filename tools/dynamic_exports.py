#!/usr/bin/python3
"""Export PyTorch networks with dynamic input dims to ONNX, with PyTorch's outputs at several
shapes of a min/opt/max profile, and check kiln against them.

    /usr/bin/python3 tools/dynamic_exports.py [OUTDIR] [--only NAME,...] [--check-with KILN]
                                              [--tolerance 1e-4]

Models (random weights from a fixed seed, eval mode; TorchScript exporter, opset 17, dynamic
dims as named dim_params through dynamic_axes):
  resnet18     torchvision ResNet-18
               x [N,3,H,W] -> logits [N,1000]          N 1..4, H, W 64..256
  fcn          three conv+BN+ReLU stride-2 stages, a 1x1 classifier to 8 classes, then
               F.interpolate(size=x.shape[-2:], mode='bilinear') back to the input size, so the
               export holds a Shape -> Slice -> Concat -> Resize shape subgraph
               x [N,3,H,W] -> scores [N,8,H,W]         N 1..2, H, W 64..256
  transformer  nn.Embedding(100, 64) + a learned positional embedding sliced to S,
               nn.TransformerEncoder (2 layers, d_model 64, 4 heads, ff 128, dropout 0,
               batch_first, enable_nested_tensor=False), nn.Linear(64, 100)
               tokens [N,S] int64 -> logits [N,S,100]  N 1..4, S 1..64
  charrnn      the char-RNN of tests/data/make_wts_models.py and examples/charrnn.hpp
               (nn.LSTM(512, 512, 2), nn.Linear(512, 65), softmax), states in and out
               data [T,N,512], hidden_in, cell_in [2,N,512]
               -> prob [T,N,65], hidden_out, cell_out [2,N,512]   T 1..64, N 1..4

Each model is written in the folder layout of `kiln conformance`:
  OUTDIR/<name>/model.onnx
  OUTDIR/<name>/profile.txt                   min/opt/max in trtexec syntax: `min x:1x3x64x64`
  OUTDIR/<name>/test_data_set_<k>/input_<i>.pb, output_<j>.pb
                                              k = 0 min, 1 opt, 2 max, 3 and 4 random shapes in
                                              the profile (fixed seeds), PyTorch's outputs
The export traces the model at the opt shape. TensorProto files, BatchNorm calibration and the
seed come from tools/onnx_exports.py, so Debian's python3 (torch, torchvision, numpy; no onnx
package) suffices.

--check-with KILN builds one dynamic plan per model from profile.txt (`KILN build model.onnx
--min-shapes ... --opt-shapes ... --max-shapes ... --save OUTDIR/<name>/dynamic.plan`), then runs
every data set twice: `KILN run model.onnx --input NAME=input_<i>.pb ... --output-dir DIR` (the
CPU reference on the imported graph, each dynamic dim from the input files) and `KILN run --plan
dynamic.plan --input ...` (the plan specialized at the data set's shape); each run must give
max|kiln - torch| / max|torch| <= --tolerance (1e-4) on every output. One line per model and
shape, then "N passed, N failed"; exits 1 when one failed. With --gpu fp32|fp16 the plans are
built for the GPU (`--gpu`/`--fp16`: each bucket's tactics timed and recorded) and every data set
runs on it (`KILN run --gpu --plan`: min, opt and max are buckets; the two random shapes run
their bucket's tactics, the line says how many problems did).

The four models take about 80 MB (ResNet-18 52 MB, charrnn 18 MB); on two cores the export
takes 5 to 15 s and the check (20 kiln runs) about 15 s.

Exits 77 (a skip for Meson) when torch, torchvision or numpy cannot be imported.
"""
import argparse
import inspect
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "data"))

# tools/onnx_exports.py exits 77 when torch, torchvision or numpy is missing
from onnx_exports import read_pb, write_pb, calibrate_batchnorm, relative_error, select_models, SEED, OPSET  # noqa: E402
import make_wts_models  # noqa: E402  (tests/data/make_wts_models.py: CharRNN)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

ALL_MODELS = ["resnet18", "fcn", "transformer", "charrnn"]
SHAPE_LABELS = ["min", "opt", "max", "random", "random"]


# ---- models --------------------------------------------------------------------------------------
class SmallFCN(nn.Module):
    def __init__(self, classes=8):
        super().__init__()
        layers, c_in = [], 3
        for c in (16, 32, 64):
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(64, classes, 1)

    def forward(self, x):                                                   # [N,3,H,W]
        y = self.classifier(self.features(x))                               # [N,8,ceil(H/8),ceil(W/8)]
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)  # [N,8,H,W]


class TokenTransformer(nn.Module):
    def __init__(self, vocab=100, d=64, max_len=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, max_len, d))
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens):                                              # [N,S] int64
        x = self.embed(tokens) + self.pos[:, :tokens.shape[1]]              # [N,S,64]
        return self.head(self.encoder(x))                                   # [N,S,100]


class CharRNNStates(make_wts_models.CharRNN):
    """make_wts_models.CharRNN (same layers and names) with the states in and out, as in
    examples/charrnn.hpp."""

    def forward(self, x, h0, c0):                                           # [T,N,512], [2,N,512] x2
        y, (h, c) = self.rnn(x, (h0, c0))                                   # [T,N,512], [2,N,512] x2
        return F.softmax(self.fc(y), dim=-1), h, c                          # [T,N,65]


# Per model: inputs (name, dims with a dim_param's name for each dynamic dim, dtype), outputs
# (name, the same for their dims: what dynamic_axes names), and each dim_param's (min, opt, max).
SPECS = {
    "resnet18": dict(
        inputs=[("x", ["N", 3, "H", "W"], np.float32)],
        outputs=[("logits", ["N", 1000])],
        dims={"N": (1, 2, 4), "H": (64, 224, 256), "W": (64, 224, 256)}),
    "fcn": dict(
        inputs=[("x", ["N", 3, "H", "W"], np.float32)],
        outputs=[("scores", ["N", 8, "H", "W"])],
        dims={"N": (1, 1, 2), "H": (64, 128, 256), "W": (64, 128, 256)}),
    "transformer": dict(
        inputs=[("tokens", ["N", "S"], np.int64)],
        outputs=[("logits", ["N", "S", 100])],
        dims={"N": (1, 2, 4), "S": (1, 16, 64)}),
    "charrnn": dict(
        inputs=[("data", ["T", "N", 512], np.float32), ("hidden_in", [2, "N", 512], np.float32),
                ("cell_in", [2, "N", 512], np.float32)],
        outputs=[("prob", ["T", "N", 65]), ("hidden_out", [2, "N", 512]), ("cell_out", [2, "N", 512])],
        dims={"T": (1, 16, 64), "N": (1, 2, 4)}),
}


def build(name):
    """The model in eval mode, weights from the fixed seed."""
    torch.manual_seed(SEED)
    if name == "resnet18":
        model = torchvision.models.resnet18(weights=None)
    elif name == "fcn":
        model = SmallFCN()
    elif name == "transformer":
        model = TokenTransformer()
    elif name == "charrnn":
        model = CharRNNStates()
    else:
        raise ValueError(f"unknown model '{name}'")
    spec = SPECS[name]
    calibrate_batchnorm(model, shape_of(spec["inputs"][0][1], opt_dims(spec)))  # ResNet-18, FCN
    return model.eval()


# ---- shapes --------------------------------------------------------------------------------------
def opt_dims(spec):
    return {d: r[1] for d, r in spec["dims"].items()}


def shape_of(template, dims):
    return [dims[d] if isinstance(d, str) else d for d in template]


def profile_dims(name):
    """The dim_param values of the data sets: min, opt, max, then two random ones, each unlike
    the sets before it (a fixed seed per model)."""
    ranges = SPECS[name]["dims"]
    sets = [{d: r[i] for d, r in ranges.items()} for i in range(3)]
    rng = np.random.default_rng([SEED, ALL_MODELS.index(name)])
    while len(sets) < len(SHAPE_LABELS):
        dims = {d: int(rng.integers(r[0], r[2] + 1)) for d, r in ranges.items()}
        if dims not in sets:
            sets.append(dims)
    return sets


def profile_text(spec):
    lines = []
    for label, i in (("min", 0), ("opt", 1), ("max", 2)):
        dims = {d: r[i] for d, r in spec["dims"].items()}
        lines.append(f"{label} " + ",".join(f"{n}:" + "x".join(str(v) for v in shape_of(t, dims))
                                            for n, t, _ in spec["inputs"]))
    return "\n".join(lines) + "\n"


def make_inputs(spec, dims, seed):
    gen = torch.Generator().manual_seed(seed)
    xs = []
    for _, template, dtype in spec["inputs"]:
        shape = shape_of(template, dims)
        if dtype == np.int64:
            xs.append(torch.randint(0, 100, shape, generator=gen, dtype=torch.int64))
        else:
            xs.append(torch.randn(shape, generator=gen))
    return xs


def dims_label(dims):
    return ",".join(f"{d}={v}" for d, v in dims.items())


# ---- export and check ----------------------------------------------------------------------------
def export_one(name, outdir):
    spec = SPECS[name]
    model = build(name)
    folder = os.path.join(outdir, name)
    os.makedirs(folder, exist_ok=True)
    t0 = time.time()
    example = tuple(make_inputs(spec, opt_dims(spec), SEED + 1))
    dynamic_axes = {}
    for n, template, *_ in spec["inputs"] + spec["outputs"]:
        dynamic_axes[n] = {i: d for i, d in enumerate(template) if isinstance(d, str)}
    # The TorchScript exporter, also where a newer torch defaults to the dynamo one.
    extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(model, example, os.path.join(folder, "model.onnx"), opset_version=OPSET,
                      input_names=[n for n, *_ in spec["inputs"]],
                      output_names=[n for n, *_ in spec["outputs"]],
                      dynamic_axes=dynamic_axes, do_constant_folding=True, **extra)
    with open(os.path.join(folder, "profile.txt"), "w") as f:
        f.write(profile_text(spec))
    for k, dims in enumerate(profile_dims(name)):
        data = os.path.join(folder, f"test_data_set_{k}")
        os.makedirs(data, exist_ok=True)
        xs = make_inputs(spec, dims, SEED + 10 + k)
        with torch.no_grad():
            ys = model(*xs)
        ys = ys if isinstance(ys, tuple) else (ys,)
        for i, ((n, *_), x) in enumerate(zip(spec["inputs"], xs)):
            write_pb(x.numpy(), os.path.join(data, f"input_{i}.pb"), n)
        for j, ((n, template), y) in enumerate(zip(spec["outputs"], ys)):
            if list(y.shape) != shape_of(template, dims):
                raise RuntimeError(f"{name}: output {n} is {list(y.shape)}, "
                                   f"expected {shape_of(template, dims)}")
            write_pb(y.numpy(), os.path.join(data, f"output_{j}.pb"), n)
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)
    print(f"{name}: exported with {len(SHAPE_LABELS)} data sets in {time.time() - t0:.1f} s, "
          f"{size / 1e6:.1f} MB; profile {profile_text(spec).strip().replace(chr(10), ' | ')}", flush=True)
    return folder


GPU_FLAGS = {None: [], "fp32": ["--gpu"], "fp16": ["--fp16"]}


def build_dynamic_plan(kiln, folder, gpu=None):
    """`kiln build model.onnx --min-shapes ... --opt-shapes ... --max-shapes ... --save` from
    profile.txt (for the GPU in precision `gpu`: its buckets' tactics timed); returns (plan path or
    None, message)."""
    plan = os.path.join(folder, f"dynamic-{gpu}.plan" if gpu else "dynamic.plan")
    if os.path.exists(plan):
        os.remove(plan)
    cmd = [kiln, "build", os.path.join(folder, "model.onnx"), "--save", plan] + GPU_FLAGS[gpu]
    with open(os.path.join(folder, "profile.txt")) as f:
        for line in f:
            which, shapes = line.split()
            cmd += [f"--{which}-shapes", shapes]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"kiln build failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
    return plan, f"dynamic plan built in {time.time() - t0:.1f} s, {os.path.getsize(plan) / 1e6:.1f} MB"


def check_set(kiln, folder, k, spec, tolerance, plan=None, gpu=None):
    """Runs kiln on data set k (the ONNX model, or `plan` specialized at the set's shape, on the
    GPU when `gpu`); returns (ok, message)."""
    data = os.path.join(folder, f"test_data_set_{k}")
    cmd = [kiln, "run", "--plan", plan] if plan else [kiln, "run", os.path.join(folder, "model.onnx")]
    if gpu:
        cmd.append("--gpu")
    for i, (n, *_) in enumerate(spec["inputs"]):
        cmd += ["--input", f"{n}={os.path.join(data, f'input_{i}.pb')}"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        r = subprocess.run(cmd + ["--output-dir", tmp], capture_output=True, text=True)
        seconds = time.time() - t0
        if r.returncode != 0:
            return False, (f"kiln run failed ({r.returncode}, {seconds:.1f} s): "
                           f"{r.stderr.strip() or r.stdout.strip()}")
        errors = []
        for j, (n, _) in enumerate(spec["outputs"]):
            _, want = read_pb(os.path.join(data, f"output_{j}.pb"))
            path = os.path.join(tmp, n + ".pb")
            if not os.path.exists(path):
                return False, f"kiln wrote {sorted(os.listdir(tmp))}, no {n}.pb"
            _, got = read_pb(path)
            if got.shape != want.shape:
                return False, f"output {n}: shape {list(got.shape)}, PyTorch has {list(want.shape)}"
            errors.append((relative_error(got, want), n))
    err, worst = max(errors)
    tactics = [line for line in r.stdout.splitlines() if line.startswith("tactics:")]
    return err <= tolerance, (f"max|kiln - torch| / max|torch| = {err:.3g} ({worst}; limit {tolerance:g}), "
                              f"kiln run {seconds:.1f} s" + (f"; {tactics[0]}" if tactics else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", default=os.path.join("build", "generated", "dynamic_exports"))
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(ALL_MODELS))
    ap.add_argument("--check-with", metavar="KILN", help="the kiln CLI to check the exports with")
    ap.add_argument("--tolerance", type=float, default=None,
                    help="largest max|kiln - torch| / max|torch| (1e-4; with --gpu fp16 1e-2)")
    ap.add_argument("--gpu", choices=["fp32", "fp16"],
                    help="build the dynamic plans for the GPU in this precision (each bucket's "
                    "tactics timed) and run them there only (the CPU reference runs are CI's)")
    ap.add_argument("--remove-plans", action="store_true", help="delete each dynamic plan once checked")
    args = ap.parse_args()
    names = select_models(ap, args.only, ALL_MODELS)
    if args.tolerance is None:
        args.tolerance = 1e-2 if args.gpu == "fp16" else 1e-4
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"TorchScript exporter, opset {OPSET}, dynamic axes")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    passed = failed = 0
    for name in names:
        folder = export_one(name, args.outdir)
        if not args.check_with:
            continue
        spec = SPECS[name]
        plan, msg = build_dynamic_plan(args.check_with, folder, args.gpu)
        print(f"  {name}: {msg}", flush=True)
        if plan is None:
            failed += 1
        runs = (("dynamic plan " + args.gpu, plan),) if args.gpu else (("onnx", None), ("dynamic plan", plan))
        for k, dims in enumerate(profile_dims(name)):
            for how, p in runs:
                if how.startswith("dynamic plan") and plan is None:
                    continue
                ok, msg = check_set(args.check_with, folder, k, spec, args.tolerance, p, args.gpu)
                print(f"  {name} {SHAPE_LABELS[k]} {dims_label(dims)} {how}: {'ok' if ok else 'FAIL'}: {msg}",
                      flush=True)
                passed += ok
                failed += not ok
        if plan is not None and args.remove_plans:
            os.remove(plan)
    if args.check_with:
        print(f"{passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
