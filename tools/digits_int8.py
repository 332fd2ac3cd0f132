#!/usr/bin/python3
"""INT8 accuracy on a real task: a small CNN trained now on scikit-learn's handwritten digits,
calibrated and run by kiln in INT8 on the CPU reference, against its FP32 accuracy.

    /usr/bin/python3 tools/digits_int8.py OUTDIR --kiln KILN [--digits-example EXE] [--max-drop 1.0]

Debian's python3-torch and python3-sklearn (the digits data ships with it; nothing is downloaded).
Fixed seed; the 1,797 images (8x8, one channel, scaled to [0, 1]) are split into train (1,000),
calibration (200) and test (597). The network: Conv 3x3 1->16, ReLU, Conv 3x3 16->32, ReLU,
MaxPool 2, Flatten, Linear 512->64, ReLU, Linear 64->10; Adam, 40 epochs, batch 50.

Written to OUTDIR: model.onnx (opset 17, dynamic batch), calib/batch_NNN.npy (4 batches of 50),
test.npy, labels.npy. Then, with KILN:
  - FP32: `kiln run model.onnx --input input=test.npy` must agree with PyTorch's accuracy;
  - for each calibrator (entropy, minmax, percentile): `kiln build model.onnx --int8 --calib-data
    calib --calibrator C --calib-cache cache_C.txt --shape input=597x1x8x8 --save int8_C.plan`,
    then `kiln run --plan int8_C.plan --input input=test.npy`: accuracy within --max-drop points
    of FP32;
  - `kiln build --fp8 --calib-cache cache_entropy.txt`: FP8 E4M3 within --max-drop points of FP32;
  - the entropy plan built again from its cache alone gives identical outputs;
  - onnxruntime's quantize_static Q/DQ model of the network (tools/ort_qdq.py, run by --ort-python):
    kiln predicts onnxruntime's class on at least 99% of the test images;
  - the same network written in the DSL (examples/digits.hpp, the example program EXE, by default
    build/examples/digits beside KILN's build/tools), bound to the trained weights through
    digits.wts written by tools/gen_wts.py: in FP32 its outputs are the ONNX model's within 1e-4;
    `digits digits.wts --int8 calib --calibrator C` is within --max-drop points of FP32 for each
    calibrator; and `kiln build --example digits --weights digits.wts --int8` from the ONNX model's
    cache of C (the DSL names its layers after the PyTorch modules, so the names map one to one)
    gives the ONNX INT8 plan's outputs exactly, while the DSL's own calibration finds the same scales.
One line per check, then "N passed, N failed"; exit 1 on a failure, 77 (skip) without torch or
sklearn.
"""
import argparse
import os
import re
import subprocess
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
    from sklearn.datasets import load_digits
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import torch/sklearn/numpy ({e}); install Debian's python3-torch "
          "and python3-sklearn")
    sys.exit(77)

SEED = 1234
CALIBRATORS = ("entropy", "minmax", "percentile")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def data():
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    order = np.random.RandomState(SEED).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1000], y[:1000]), (x[1000:1200], y[1000:1200]), (x[1200:], y[1200:])


def train(train_set):
    torch.manual_seed(SEED)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = torch.from_numpy(train_set[0]), torch.from_numpy(train_set[1])
    g = torch.Generator().manual_seed(SEED)
    for _ in range(40):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 50):
            idx = perm[i:i + 50]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def kiln(cmd, what):
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}\n  {' '.join(cmd)}")
    return r.stdout, time.time() - t0


def predict(kiln_cli, out, args, what):
    d = os.path.join(out, "outputs", what)
    os.makedirs(d, exist_ok=True)
    kiln([kiln_cli, "run", *args, "--input", f"input={os.path.join(out, 'test.npy')}", "--output-dir", d,
          "--output-format", "npy"], what)
    return np.load(os.path.join(d, "logits.npy"))


def onnx_to_dsl_name(name):
    """The DSL digits network's name of an ONNX export's tensor: the PyTorch module that makes it
    ('/features/features.1/Relu_output_0' -> 'features.1'); graph inputs keep their names."""
    m = re.fullmatch(r"(?:/[^/]+)*/([^/]+)/[^/]+_output_0", name)
    return m.group(1) if m else name


def read_cache(path):
    """A calibration cache (TensorRT's text): its header line and tensor -> hex scale."""
    with open(path) as f:
        lines = f.read().split("\n")
    return lines[0], dict(line.split(": ") for line in lines[1:] if line)


def dsl_checks(args, out, net, te, fp32, onnx_int8, onnx_fp8, check):
    """The digits network written in the DSL (examples/digits.hpp), bound to the trained weights
    through a WTS file from tools/gen_wts.py: FP32 against the ONNX model, INT8 with each
    calibrator against FP32, the ONNX model's calibration caches on the DSL network, and FP8 from
    the DSL's entropy cache against the ONNX FP8 plan."""
    exe = args.digits_example or os.path.join(os.path.dirname(os.path.abspath(args.kiln)), "..", "examples", "digits")
    if not os.path.exists(exe):
        check(False, f"the DSL digits example program '{exe}' does not exist (build examples/digits or pass "
              "--digits-example)")
        return
    pth, wts = os.path.join(out, "digits.pth"), os.path.join(out, "digits.wts")
    torch.save(net.state_dict(), pth)
    gen_wts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen_wts.py")
    kiln([sys.executable, gen_wts, pth, wts], "tools/gen_wts.py")
    test_bin = os.path.join(out, "test.bin")
    te[0].astype("<f4").tofile(test_bin)

    def example(extra, what):
        y_bin = os.path.join(out, f"{what}.bin")
        text, s = kiln([exe, wts, "--input", test_bin, "--output", y_bin, *extra], what)
        return np.fromfile(y_bin, dtype="<f4").reshape(len(te[0]), 10), text, s

    y, _, _ = example([], "dsl_fp32")
    err = float(np.abs(y - fp32).max())
    agree = float((y.argmax(1) == fp32.argmax(1)).mean() * 100)
    check(err <= 1e-4 and agree == 100.0,
          f"the DSL digits network (examples/digits.hpp) bound to the trained weights through tools/gen_wts.py's "
          f"WTS file, FP32: max|DSL - ONNX| = {err:.3g} (limit 1e-4), same class on {agree:.2f}%")
    fp32_acc = float((fp32.argmax(1) == te[1]).mean() * 100)
    shape = f"input={len(te[0])}x1x8x8"
    for c in CALIBRATORS:
        cache = os.path.join(out, f"dsl_cache_{c}.txt")
        if os.path.exists(cache):
            os.remove(cache)
        y, text, s = example(["--int8", os.path.join(out, "calib"), "--calibrator", c, "--calib-cache", cache],
                             f"dsl_int8_{c}")
        acc = float((y.argmax(1) == te[1]).mean() * 100)
        plan_err = float(np.abs(y - onnx_int8[c]).max())
        check("int8: calibrated 4 tensors on 4 batches" in text and fp32_acc - acc <= args.max_drop,
              f"the DSL digits network in INT8 ({c} calibrator, `digits digits.wts --int8 calib`): accuracy "
              f"{acc:.2f}% vs FP32 {fp32_acc:.2f}% (drop {fp32_acc - acc:+.2f} points, limit {args.max_drop}); "
              f"max|DSL - ONNX INT8 plan| = {plan_err:.3g}; {s:.1f} s")
        # The ONNX model's cache of this calibrator, its names mapped to the DSL's, on the DSL network.
        header, onnx_scales = read_cache(os.path.join(out, f"cache_{c}.txt"))
        mapped = {onnx_to_dsl_name(k): v for k, v in onnx_scales.items()}
        _, dsl_scales = read_cache(cache)
        mapped_cache = os.path.join(out, f"onnx_cache_{c}_dsl_names.txt")
        with open(mapped_cache, "w") as f:
            f.write(header + "\n" + "".join(f"{k}: {v}\n" for k, v in sorted(mapped.items())))
        plan = os.path.join(out, f"dsl_int8_{c}.plan")
        if os.path.exists(plan):
            os.remove(plan)
        kiln([args.kiln, "build", "--example", "digits", "--weights", wts, "--int8", "--calib-cache", mapped_cache,
              "--shape", shape, "--save", plan], f"DSL int8 build from the ONNX cache ({c})")
        y_plan = predict(args.kiln, out, ["--plan", plan], f"dsl_int8_{c}_plan")
        diff = float(np.abs(y_plan - onnx_int8[c]).max())
        same = sorted(k for k in mapped if mapped[k] == dsl_scales.get(k))
        check(np.array_equal(y_plan, onnx_int8[c]) and mapped == dsl_scales,
              f"the DSL network's INT8 plan from the ONNX model's {c} cache (names mapped module to module) gives "
              f"the ONNX INT8 plan's outputs (max difference {diff:.3g}, limit 0), and the DSL's own {c} calibration "
              f"finds the same scales bit for bit ({len(same)} of {len(mapped)}: {', '.join(same)})")
    # FP8 from the DSL's entropy cache: the example's --fp8, against the ONNX model's FP8 plan.
    y, text, _ = example(["--fp8", "--calib-cache", os.path.join(out, "dsl_cache_entropy.txt")], "dsl_fp8")
    acc = float((y.argmax(1) == te[1]).mean() * 100)
    agree = float((y.argmax(1) == onnx_fp8.argmax(1)).mean() * 100)
    check("fp8: 4 scales read from" in text and fp32_acc - acc <= args.max_drop and agree >= 99.0,
          f"the DSL digits network in FP8 (`digits digits.wts --fp8 --calib-cache dsl_cache_entropy.txt`): accuracy "
          f"{acc:.2f}% vs FP32 {fp32_acc:.2f}%, the ONNX FP8 plan's class on {agree:.2f}% (at least 99%; the plan's "
          f"fused steps add the bias in another order), max difference {float(np.abs(y - onnx_fp8).max()):.3g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--max-drop", type=float, default=1.0, help="largest INT8 accuracy loss in points (1.0)")
    ap.add_argument("--digits-example",
                    help="the DSL example program examples/digits (default: build/examples/digits beside KILN)")
    ap.add_argument("--ort-python", default="python3",
                    help="the python with onnxruntime that runs tools/ort_qdq.py (python3 on PATH)")
    args = ap.parse_args()
    out = args.outdir
    os.makedirs(os.path.join(out, "calib"), exist_ok=True)
    torch.set_num_threads(2)
    tr, cal, te = data()
    t0 = time.time()
    net = train(tr)
    with torch.no_grad():
        torch_acc = float((net(torch.from_numpy(te[0])).argmax(1).numpy() == te[1]).mean() * 100)
    print(f"trained on {len(tr[0])} digits in {time.time() - t0:.1f} s; PyTorch FP32 test accuracy {torch_acc:.2f}% "
          f"({len(te[0])} images)")
    torch.onnx.export(net, torch.from_numpy(te[0][:1]), os.path.join(out, "model.onnx"), opset_version=17,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    for i in range(0, len(cal[0]), 50):
        np.save(os.path.join(out, "calib", f"batch_{i // 50:03d}.npy"), cal[0][i:i + 50])
    np.save(os.path.join(out, "test.npy"), te[0])
    np.save(os.path.join(out, "labels.npy"), te[1])

    passed = failed = 0

    def check(ok, line):
        nonlocal passed, failed
        print(f"{'ok' if ok else 'FAIL'}: {line}", flush=True)
        passed += ok
        failed += not ok

    model = os.path.join(out, "model.onnx")
    fp32 = predict(args.kiln, out, [model], "fp32")
    fp32_acc = float((fp32.argmax(1) == te[1]).mean() * 100)
    check(abs(fp32_acc - torch_acc) < 1e-9, f"kiln FP32 accuracy {fp32_acc:.2f}% (PyTorch {torch_acc:.2f}%)")
    shape = f"input={len(te[0])}x1x8x8"
    plans = {}
    for c in CALIBRATORS:
        cache = os.path.join(out, f"cache_{c}.txt")
        plan = os.path.join(out, f"int8_{c}.plan")
        for f in (cache, plan):
            if os.path.exists(f):
                os.remove(f)
        _, s = kiln([args.kiln, "build", model, "--int8", "--calib-data", os.path.join(out, "calib"), "--calibrator", c,
                     "--calib-cache", cache, "--shape", shape, "--save", plan], f"int8 build ({c})")
        y = predict(args.kiln, out, ["--plan", plan], f"int8_{c}")
        plans[c] = y
        acc = float((y.argmax(1) == te[1]).mean() * 100)
        agree = float((y.argmax(1) == fp32.argmax(1)).mean() * 100)
        check(fp32_acc - acc <= args.max_drop,
              f"INT8 ({c} calibrator) accuracy {acc:.2f}% vs FP32 {fp32_acc:.2f}% (drop {fp32_acc - acc:+.2f} points, "
              f"limit {args.max_drop}); same class as FP32 on {agree:.1f}%; built in {s:.1f} s")
    # FP8 E4M3 from the entropy calibration's cache (the same ranges, scales amax/448): within
    # --max-drop points of FP32, and every quantized layer listed as fp8 in the build's table.
    def from_entropy_cache(flag, name, what):
        """`kiln build --FLAG --calib-cache cache_entropy.txt` saved as NAME.plan: its text and outputs."""
        plan = os.path.join(out, name + ".plan")
        if os.path.exists(plan):
            os.remove(plan)
        text, _ = kiln([args.kiln, "build", model, flag, "--calib-cache", os.path.join(out, "cache_entropy.txt"),
                        "--shape", shape, "--save", plan], what)
        return text, predict(args.kiln, out, ["--plan", plan], name)

    text, y = from_entropy_cache("--fp8", "fp8_entropy", "fp8 build (entropy cache)")
    fp8_y = y
    acc = float((y.argmax(1) == te[1]).mean() * 100)
    agree = float((y.argmax(1) == fp32.argmax(1)).mean() * 100)
    fp8_rows = re.findall(r"^(/\S+)[ \t]+(Conv|Gemm|MatMul)[ \t]+fp8[ \t]", text, re.M)
    check(fp32_acc - acc <= args.max_drop and len(fp8_rows) == 4 and "fp8: 4 of 4 layers in FP8" in text,
          f"FP8 E4M3 (`kiln build --fp8 --calib-cache cache_entropy.txt`) accuracy {acc:.2f}% vs FP32 "
          f"{fp32_acc:.2f}% (drop {fp32_acc - acc:+.2f} points, limit {args.max_drop}); same class as FP32 on "
          f"{agree:.1f}%; {len(fp8_rows)} of 4 layers listed as fp8")
    # Mixed precision on purpose: the last layer pinned to FP16 and every other layer whose own
    # INT8 error exceeds 2% kept in float; the table names each layer's precision and error, and
    # the plan keeps the FP32 accuracy at least as well as the all-INT8 one.
    mixed = os.path.join(out, "int8_mixed.plan")
    if os.path.exists(mixed):
        os.remove(mixed)
    text, _ = kiln([args.kiln, "build", model, "--int8", "--calib-data", os.path.join(out, "calib"),
                    "--int8-tolerance", "0.02", "--layer-precision", "/classifier/classifier.3/Gemm:fp16",
                    "--shape", shape, "--save", mixed], "mixed-precision build")
    rows = re.findall(r"^(/\S+)[ \t]+(Conv|Gemm|MatMul)[ \t]+(int8|fp32|fp16|bf16)[ \t]+(\S+)[ \t]*(.*)$", text, re.M)
    y = predict(args.kiln, out, ["--plan", mixed], "int8_mixed")
    acc = float((y.argmax(1) == te[1]).mean() * 100)
    pinned = [r for r in rows if r[0] == "/classifier/classifier.3/Gemm"]
    over = [r for r in rows if r[4] == "error over the tolerance"]
    check(len(rows) == 4 and pinned and pinned[0][2] == "fp16" and pinned[0][4] == "pinned"
          and all(float(r[3]) > 0.02 for r in over) and all(r[2] == "int8" for r in rows if r not in over + pinned)
          and fp32_acc - acc <= args.max_drop,
          f"mixed precision (--int8-tolerance 0.02, the last Gemm pinned to fp16): "
          f"{', '.join(f'{r[0]} {r[2]} ({r[3]})' for r in rows)}; accuracy {acc:.2f}% vs FP32 {fp32_acc:.2f}%")
    # The cache alone, no calibration data: identical outputs.
    text, y = from_entropy_cache("--int8", "int8_entropy_from_cache", "int8 build from the cache")
    check("not calibrated" in text and np.array_equal(y, plans["entropy"]),
          "the entropy plan built from its calibration cache alone gives identical outputs")
    dsl_checks(args, out, net, te, fp32, plans, fp8_y, check)
    # A Q/DQ model made by onnxruntime's quantize_static (tools/ort_qdq.py, under PATH's python3,
    # which has onnxruntime): kiln runs it on the reference and must predict onnxruntime's class.
    r = subprocess.run([args.ort_python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_qdq.py"), out],
                       capture_output=True, text=True)
    if r.returncode == 77:
        print(f"skip: the onnxruntime Q/DQ check: {r.stdout.strip()}")
    elif r.returncode != 0:
        check(False, f"tools/ort_qdq.py failed ({r.returncode}): {r.stderr.strip()[-400:] or r.stdout.strip()}")
    else:
        ort_y = np.load(os.path.join(out, "ort_qdq_logits.npy"))
        y = predict(args.kiln, out, [os.path.join(out, "model_qdq.onnx")], "qdq")
        agree = float((y.argmax(1) == ort_y.argmax(1)).mean() * 100)
        acc = float((y.argmax(1) == te[1]).mean() * 100)
        check(agree >= 99.0, f"onnxruntime's Q/DQ model (quantize_static, per-channel int8 weights): kiln predicts "
              f"onnxruntime's class on {agree:.2f}% of the test images (at least 99%); accuracy {acc:.2f}%, "
              f"max|kiln - ort| {float(np.abs(y - ort_y).max()):.3g} (onnxruntime's integer QLinear kernels round "
              f"differently from the Q/DQ semantics)")
        literal = np.load(os.path.join(out, "ort_qdq_unoptimized_logits.npy"))
        lsb = float(np.load(os.path.join(out, "ort_qdq_logits_scale.npy")))
        err = float(np.abs(y - literal).max() / np.abs(literal).max())
        # A logit whose sum before its QuantizeLinear lies on a rounding boundary may round one step
        # apart: onnxruntime sums in float32, kiln's reference in double. Such flips are one step of
        # the logits' scale, and rare; any other difference is a semantic one.
        differ = np.abs(y - literal) > 1e-5 * np.abs(literal).max()
        flips, step_err = float(differ.mean()), float(np.abs(y - literal).max()) / lsb
        check(err <= 1e-5 or (step_err <= 1.0 + 1e-3 and flips <= 0.005),
              f"kiln's Q/DQ semantics equal onnxruntime's with its optimizer off (each Q/DQ node as ONNX defines "
              f"it): max|kiln - ort| / max|ort| = {err:.3g} (limit 1e-5, or one step of the logits' scale on at "
              f"most 0.5% of them, a sum on a rounding boundary: here {step_err:.3g} steps on {flips * 100:.2f}%)")
        # Built, the model's convolutions and products become fused INT8 steps (int32 accumulation,
        # requantized): the same outputs as the Q/DQ semantics, within one step of the logits' scale
        # (a value on a rounding boundary may round the other way).
        fused = os.path.join(out, "qdq_fused.plan")
        if os.path.exists(fused):
            os.remove(fused)
        text, _ = kiln([args.kiln, "build", os.path.join(out, "model_qdq.onnx"), "--shape", shape, "--save", fused],
                       "Q/DQ model build")
        steps = re.search(r"fuse-int8=(\d+)", text)
        y = predict(args.kiln, out, ["--plan", fused], "qdq_fused")
        steps_made = int(steps.group(1)) if steps else 0
        off = float(np.abs(y - literal).max()) / lsb
        check(steps_made == 4 and off <= 1.0 + 1e-3,  # one step, with float32's rounding of the ratio
              f"onnxruntime's Q/DQ model built by kiln: {steps_made} fused INT8 steps (2 convolutions, 2 products; "
              f"4 expected), outputs within {off:.3g} steps of the logits' scale of the Q/DQ semantics (limit 1), "
              f"{float((y != literal).mean() * 100):.2f}% of them not identical")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
