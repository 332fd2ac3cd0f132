#!/usr/bin/python3
"""Issue 3 item 9, one IR for all fronts: the ResNet-50 written in the DSL (examples/resnet50.cpp)
and torchvision's ResNet-50 exported to ONNX, given the same weights, give the same outputs on
the CPU reference (max|dsl - onnx| / max|onnx| <= 1e-4); both are also checked against PyTorch.

    /usr/bin/python3 resnet50_dsl_vs_onnx.py OUTDIR --resnet50 EXE --kiln KILN

The model and input come from tools/onnx_exports.py's build("resnet50"): torchvision ResNet-50
with a fixed seed, BatchNorm affine parameters random and running statistics calibrated on a
fixed random batch (so they differ from 0/1 and matter), eval mode, input [1,3,224,224]. It is
exported with the TorchScript exporter at opset 17 (onnx_exports.export_torchscript) and its
state_dict written with tools/gen_wts.py (trt-binary dialect, BatchNorm buffers included).
Exits 77 (skip) when /usr/bin/python3 cannot import torch or torchvision.
"""
import argparse
import os
import sys

from e2e_util import rel_err, require, run

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
TOL = 1e-4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--resnet50", required=True)
    ap.add_argument("--kiln", required=True)
    args = ap.parse_args()
    require("numpy", "torch", "torchvision")
    import numpy as np
    import torch
    import gen_wts
    import onnx_exports

    os.makedirs(args.outdir, exist_ok=True)
    d = lambda name: os.path.join(args.outdir, name)  # noqa: E731
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    model, x = onnx_exports.build("resnet50")
    with torch.no_grad():
        want = model(x).numpy()
    input_name = onnx_exports.export_torchscript(model, x, d("model.onnx"))
    gen_wts.write_wts(model.state_dict(), d("resnet50.wts"), "trt-binary")
    onnx_exports.write_pb(x.numpy(), d("input.pb"), input_name)
    x.numpy().astype("<f4").tofile(d("input.bin"))
    print(f"wrote model.onnx (opset {onnx_exports.OPSET}), resnet50.wts, input [1,3,224,224]; "
          f"PyTorch max|y| {np.abs(want).max():.4g}", flush=True)

    s_dsl = run([args.resnet50, d("resnet50.wts"), "--input", d("input.bin"), "--output", d("dsl_output.bin")])
    dsl = np.fromfile(d("dsl_output.bin"), dtype="<f4").reshape(want.shape)
    onnx_out = d("onnx_output")
    os.makedirs(onnx_out, exist_ok=True)
    for f in os.listdir(onnx_out):
        os.remove(os.path.join(onnx_out, f))
    s_onnx = run([args.kiln, "run", d("model.onnx"), "--input", f"{input_name}={d('input.pb')}",
                  "--output-dir", onnx_out])
    written = sorted(f for f in os.listdir(onnx_out) if f.endswith(".pb"))
    if len(written) != 1:
        print(f"FAIL: kiln run wrote {written}, expected one output")
        return 1
    _, onnx = onnx_exports.read_pb(os.path.join(onnx_out, written[0]))

    failures = []
    for what, got, ref in (("DSL vs ONNX (both kiln CPU reference)", dsl, onnx),
                           ("DSL vs PyTorch", dsl, want), ("ONNX vs PyTorch", onnx, want)):
        err = rel_err(got, ref)
        ok = err <= TOL
        print(f"{'ok  ' if ok else 'FAIL'} resnet50 {what}: max|diff| / max|ref| = {err:.3g} (limit {TOL:g})")
        if not ok:
            failures.append(what)
    print(f"kiln run times: DSL example {s_dsl:.1f} s, kiln run on ONNX {s_onnx:.1f} s")
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("DSL and ONNX ResNet-50 agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
