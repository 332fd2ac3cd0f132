#!/usr/bin/python3
"""INT8 accuracy on a real task: a small CNN trained now on scikit-learn's handwritten digits,
calibrated and run by kiln in INT8 on the CPU reference, against its FP32 accuracy.

    /usr/bin/python3 tools/digits_int8.py OUTDIR --kiln KILN [--max-drop 1.0]

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
  - the entropy plan built again from its cache alone gives identical outputs;
  - onnxruntime's quantize_static Q/DQ model of the network (tools/ort_qdq.py, run by --ort-python):
    kiln predicts onnxruntime's class on at least 99% of the test images.
One line per check, then "N passed, N failed"; exit 1 on a failure, 77 (skip) without torch or
sklearn.
"""
import argparse
import os
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--max-drop", type=float, default=1.0, help="largest INT8 accuracy loss in points (1.0)")
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
    # The cache alone, no calibration data: identical outputs.
    again = os.path.join(out, "int8_entropy_from_cache.plan")
    if os.path.exists(again):
        os.remove(again)
    text, _ = kiln([args.kiln, "build", model, "--int8", "--calib-cache", os.path.join(out, "cache_entropy.txt"),
                    "--shape", shape, "--save", again], "int8 build from the cache")
    y = predict(args.kiln, out, ["--plan", again], "int8_entropy_from_cache")
    check("not calibrated" in text and np.array_equal(y, plans["entropy"]),
          "the entropy plan built from its calibration cache alone gives identical outputs")
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
        err = float(np.abs(y - literal).max() / np.abs(literal).max())
        check(err <= 1e-5, f"kiln's Q/DQ semantics equal onnxruntime's with its optimizer off (each Q/DQ node as "
              f"ONNX defines it): max|kiln - ort| / max|ort| = {err:.3g} (limit 1e-5)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
