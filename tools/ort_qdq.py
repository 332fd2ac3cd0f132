#!/usr/bin/env python3
"""onnxruntime's post-training quantization of tools/digits_int8.py's network: the Q/DQ model a
user would bring to kiln (issue 13, item 7).

    python3 tools/ort_qdq.py OUTDIR

Reads OUTDIR/model.onnx, OUTDIR/calib/batch_*.npy and OUTDIR/test.npy (written by
tools/digits_int8.py); writes OUTDIR/model_qdq.onnx (onnxruntime.quantization.quantize_static: QDQ
format, per-channel int8 weights, uint8 activations, min-max calibration over the calibration
batches), OUTDIR/ort_qdq_logits.npy (onnxruntime's CPU outputs of the Q/DQ model on the test
images, its integer QLinear fusions on) and OUTDIR/ort_qdq_unoptimized_logits.npy (its optimizer
off: every Q/DQ node computed as ONNX defines it) and OUTDIR/ort_qdq_logits_scale.npy (the scale of the
logits' QuantizeLinear). Runs under the python3 that has onnxruntime (PATH's, not Debian's); exits 77 with a
message when onnxruntime cannot be imported.
"""
import glob
import os
import sys

try:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import onnxruntime.quantization ({e})")
    sys.exit(77)


class Batches(CalibrationDataReader):
    def __init__(self, files):
        self.files = iter(files)

    def get_next(self):
        f = next(self.files, None)
        return None if f is None else {"input": np.load(f).astype(np.float32)}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    files = sorted(glob.glob(os.path.join(out, "calib", "batch_*.npy")))
    if not files:
        sys.exit(f"no calibration batches in {os.path.join(out, 'calib')}")
    qdq = os.path.join(out, "model_qdq.onnx")
    quantize_static(os.path.join(out, "model.onnx"), qdq, Batches(files), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    x = {"input": np.load(os.path.join(out, "test.npy")).astype(np.float32)}
    # onnxruntime as deployed (its optimizer fuses Q/DQ pairs into integer QLinear kernels) and with
    # its optimizer off (each Q/DQ node as ONNX defines it: the semantics kiln's reference follows).
    logits = ort.InferenceSession(qdq, providers=["CPUExecutionProvider"]).run(None, x)[0]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    literal = ort.InferenceSession(qdq, opts, providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.save(os.path.join(out, "ort_qdq_logits.npy"), logits)
    np.save(os.path.join(out, "ort_qdq_unoptimized_logits.npy"), literal)
    # The logits' quantization step, which a fused INT8 plan's outputs are compared in.
    import onnx
    from onnx import numpy_helper
    scale = [numpy_helper.to_array(t) for t in onnx.load(qdq).graph.initializer if t.name == "logits_scale"]
    if len(scale) != 1:
        sys.exit(f"{qdq} has no initializer 'logits_scale' (onnxruntime names a Q/DQ pair's scale after its tensor)")
    np.save(os.path.join(out, "ort_qdq_logits_scale.npy"), scale[0])
    print(f"wrote {qdq} and onnxruntime's outputs (optimized and not) on {logits.shape[0]} test images")


if __name__ == "__main__":
    main()
