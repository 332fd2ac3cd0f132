#!/usr/bin/python3
"""Issue 4 item 6: the DSL LeNet and char-RNN examples, run from WTS files written from PyTorch
models (tests/data/make_wts_models.py, fixed seeds), match PyTorch's outputs within 1e-5
relative (max|kiln - torch| / max|torch|); the char-RNN from the TensorFlow-layout file
(charrnn_tf.wts) gives the same outputs as from the PyTorch-layout file (charrnn.wts). LeNet also
runs in INT8 (`lenet lenet.wts --int8 DIR`, issue 13 item 6): within 1% of PyTorch's FP32 output,
the same from the calibration cache it wrote, and a mistaken --int8 command line is refused with
a message naming what is wrong.

    /usr/bin/python3 wts_examples.py OUTDIR --make-models make_wts_models.py --lenet EXE --charrnn EXE

The DSL char-RNN has a fixed sequence length of 16 and PyTorch's data is [5, 2, 512]: the input is
padded with zero steps to 16; an LSTM is causal, so the first 5 steps of the output must match.
Exits 77 (skip) when /usr/bin/python3 cannot import torch.
"""
import argparse
import os
import subprocess
import sys

from e2e_util import rel_err, require, run

TOL = 1e-5
CHARRNN_T = 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--make-models", required=True)
    ap.add_argument("--lenet", required=True)
    ap.add_argument("--charrnn", required=True)
    args = ap.parse_args()
    require("numpy", "torch")
    import numpy as np

    os.makedirs(args.outdir, exist_ok=True)
    d = lambda name: os.path.join(args.outdir, name)  # noqa: E731
    r = subprocess.run([sys.executable, args.make_models, args.outdir])
    if r.returncode != 0:
        print(f"FAIL: make_wts_models.py exited with {r.returncode}")
        return r.returncode if r.returncode == 77 else 1

    failures = []

    def check(what, err, tol=TOL):
        ok = err <= tol
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max|diff| / max|ref| = {err:.3g} (limit {tol:g})", flush=True)
        if not ok:
            failures.append(what)

    # LeNet: both hex dialects, [1,1,28,28] -> softmax [1,10].
    want = want_lenet = np.load(d("lenet_output.npy"))
    for wts in ("lenet.wts", "lenet_tensorrtx.wts"):
        out = d("kiln_" + wts.replace(".wts", "_output.bin"))
        run([args.lenet, d(wts), "--input", d("lenet_input.bin"), "--output", out])
        got = np.fromfile(out, dtype="<f4").reshape(want.shape)
        check(f"lenet ({wts}) vs PyTorch", rel_err(got, want))

    # LeNet in INT8 (`lenet lenet.wts --int8 DIR`): calibrated on four batches of the input with
    # noise, within INT8 rounding of PyTorch's FP32 softmax; the cache it writes gives the same
    # outputs without the batches; a mistaken command line is refused naming what is wrong.
    x = np.fromfile(d("lenet_input.bin"), dtype="<f4").reshape(1, 1, 28, 28)
    calib = d("lenet_calib")
    os.makedirs(calib, exist_ok=True)
    rng = np.random.RandomState(5)
    for i in range(4):
        np.save(os.path.join(calib, f"batch_{i}.npy"),
                (x + rng.normal(0, 0.1, (2, 1, 28, 28))).astype(np.float32))
    cache = d("lenet_int8.cache")
    if os.path.exists(cache):
        os.remove(cache)
    int8_out = {}
    for what, flags in (("calibrated", ["--int8", calib]), ("from its cache", ["--int8"])):
        out = d(f"kiln_lenet_int8_{what.replace(' ', '_')}.bin")
        run([args.lenet, d("lenet.wts"), "--input", d("lenet_input.bin"), "--output", out, *flags,
             "--calibrator", "minmax", "--calib-cache", cache])
        int8_out[what] = np.fromfile(out, dtype="<f4").reshape(want_lenet.shape)
        check(f"lenet INT8 ({what}, minmax) vs PyTorch FP32", rel_err(int8_out[what], want_lenet), 0.01)
    check("lenet INT8 from its cache vs calibrated", rel_err(int8_out["from its cache"], int8_out["calibrated"]), 0)
    bad_calib = d("lenet_bad_calib")
    os.makedirs(bad_calib, exist_ok=True)
    np.save(os.path.join(bad_calib, "batch.npy"), np.zeros((2, 28, 28), dtype=np.float32))
    for flags, message in (
            (["--int8"], "--int8: no directory of calibration batches given (and no --calib-cache"),
            (["--int8", d("lenet_no_such_dir")], "lenet_no_such_dir' is not a directory"),
            (["--int8", bad_calib], "batch.npy' holds f32[2,28,28]; input 'data' is f32[N,1,28,28]"),
            (["--calibrator", "minmax"], "--calibrator goes with --int8 DIR"),
            (["--int8", calib, "--calibrator", "kl"], "calibrator 'kl': expected entropy, minmax or percentile")):
        r = subprocess.run([args.lenet, d("lenet.wts"), *flags], capture_output=True, text=True)
        ok = r.returncode == 1 and message in r.stderr
        print(f"{'ok  ' if ok else 'FAIL'} lenet {' '.join(flags)}: exit {r.returncode}, {r.stderr.strip()!r}",
              flush=True)
        if not ok:
            failures.append(f"lenet {' '.join(flags)} (expected exit 1 and '{message}')")

    # char-RNN: [5,2,512] padded to [16,2,512]; zero initial states; softmax [16,2,65].
    x = np.load(d("charrnn_input.npy"))
    want = np.load(d("charrnn_output.npy"))
    t, n, c = x.shape
    padded = np.zeros((CHARRNN_T, n, c), dtype="<f4")
    padded[:t] = x
    padded.tofile(d("charrnn_input_t16.bin"))
    outs = {}
    for wts in ("charrnn.wts", "charrnn_tf.wts"):
        out = d("kiln_" + wts.replace(".wts", "_output.bin"))
        run([args.charrnn, d(wts), "--input", d("charrnn_input_t16.bin"), "--output", out])
        got = np.fromfile(out, dtype="<f4").reshape(CHARRNN_T, n, want.shape[-1])
        outs[wts] = got
        check(f"charrnn ({wts}) vs PyTorch, first {t} steps", rel_err(got[:t], want))
    check("charrnn TF layout vs PyTorch layout, all 16 steps",
          rel_err(outs["charrnn_tf.wts"], outs["charrnn.wts"]))

    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("all end-to-end WTS checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
