#!/usr/bin/python3
"""Export torchvision's detection networks to ONNX and check kiln's CPU reference against
onnxruntime on them (issue 16: control flow, data-dependent shapes, NMS, RoiAlign).

    /usr/bin/python3 tools/detection_exports.py OUTDIR [--only ssdlite,fasterrcnn]
        [--check-with KILN --ort-python PYTHON] [--remove-passing]

Models (random weights from a fixed seed, eval mode; TorchScript exporter, opset 17; one 3x320x320
image in [0, 1]):
  ssdlite     ssdlite320_mobilenet_v3_large          -> boxes [K,4], scores [K], labels [K]
  fasterrcnn  fasterrcnn_mobilenet_v3_large_320_fpn  -> boxes [K,4], labels [K], scores [K]
              (box_score_thresh 0.01: with random weights few class scores pass the default 0.05)
Weights: every convolution's drawn He-normal (biases uniform in [-0.1, 0.1]), every BatchNorm's
affine parameters uniform and its statistics set by one training step on two random images with
one box each; the heads' linear layers keep torchvision's initialization. The exports hold If
(nested two deep in Faster R-CNN), NonZero, TopK, GatherND, NonMaxSuppression and RoiAlign.

OUTDIR/<name>/model.onnx, image.npy, and with --check-with:
  ort/<output>.npy        onnxruntime's outputs (PYTHON, a python3 with onnxruntime, runs this
                          script with --ort-reference)
  model.plan              `KILN build model.onnx` (the CPU reference's fused plan; NonZero's and
                          NMS's outputs, and what follows them, are sized at run time)
  kiln-graph/<output>.npy `KILN run model.onnx --input image=image.npy`
  kiln-plan/<output>.npy  `KILN run --plan model.plan --input image=image.npy`
  torch64/<output>.npy    the PyTorch model's outputs in float64 (model.double(), written on
                          export): the exact answer the float32 runs approximate
The check, for the graph's run and the plan's: the same number of detections as onnxruntime;
each of its detections matched to one of kiln's with the same label (the nearest box and score:
near-equal scores may be ordered differently); max|kiln - ort| / max|ort| <= 1e-4 for the boxes
and for the scores. Or, where onnxruntime's own error is larger: within 1e-3 of onnxruntime and
within 1e-4 of the float64 outputs (matched the same way). onnxruntime sums in float32, and box
decoding magnifies that: against the float64 outputs its ssdlite boxes are off by 2.4e-4
(onnxruntime 1.32) to 6.9e-4 (1.23) of max|box|, where kiln's reference, which sums in double, is
off by 5.5e-5. (The float64 run alone is no oracle: near a score threshold it keeps other
detections than both float32 runs, as in Faster R-CNN.) One line per model, then
"N passed, N failed"; exits 1 when one failed, 77 (a skip for Meson) when torch or torchvision
(or, to check, PYTHON's onnxruntime) is missing.
"""
import argparse
import copy
import inspect
import math
import os
import shutil
import subprocess
import sys
import time
import warnings

SEED = 20240601
OPSET = 17
TOLERANCE = 1e-4      # against onnxruntime, or against the float64 run
ORT_TOLERANCE = 1e-3  # against onnxruntime where it is further from the float64 run (docstring)
MODELS = ["ssdlite", "fasterrcnn"]
OUTPUTS = {"ssdlite": ["boxes", "scores", "labels"], "fasterrcnn": ["boxes", "labels", "scores"]}


def ort_reference(folder):
    """Runs onnxruntime on folder/model.onnx and folder/image.npy; writes folder/ort/*.npy."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"SKIP: {e}")
        sys.exit(77)
    session = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
    image = np.load(os.path.join(folder, "image.npy"))
    outs = session.run(None, {session.get_inputs()[0].name: image})
    os.makedirs(os.path.join(folder, "ort"), exist_ok=True)
    for meta, value in zip(session.get_outputs(), outs):
        np.save(os.path.join(folder, "ort", meta.name + ".npy"), value)


def build(name):
    import torch
    import torchvision
    from torch import nn
    torch.manual_seed(SEED)
    d = torchvision.models.detection
    if name == "ssdlite":
        model = d.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    else:
        model = d.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None,
                                                        box_score_thresh=0.01)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, math.sqrt(2.0 / m.weight[0].numel()), generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.1, 0.1, generator=gen)
                m.reset_running_stats()
                m.momentum = None  # cumulative average: the one step sets the statistics
        model.train()
        images = [torch.rand(3, 320, 320, generator=gen) for _ in range(2)]
        targets = [{"boxes": torch.tensor([[10.0, 20.0, 200.0, 220.0]]), "labels": torch.tensor([3])}
                   for _ in images]
        model(images, targets)
    model.eval()
    return model, torch.rand(3, 320, 320, generator=gen)


def export(name, outdir):
    import numpy as np
    import torch
    folder = os.path.join(outdir, name)
    os.makedirs(folder, exist_ok=True)
    model, image = build(name)
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (torch >= 2.5 defaults to the dynamo one, which has a `dynamo`
        # switch; Debian's 1.13 has neither).
        extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(model, ([image],), os.path.join(folder, "model.onnx"), opset_version=OPSET,
                          input_names=["image"], output_names=OUTPUTS[name], **extra)
    np.save(os.path.join(folder, "image.npy"), image.numpy())
    with torch.no_grad():
        k = len(model([image])[0]["scores"])
        exact = copy.deepcopy(model).double()([image.double()])[0]
    os.makedirs(os.path.join(folder, "torch64"), exist_ok=True)
    for o in OUTPUTS[name]:
        np.save(os.path.join(folder, "torch64", o + ".npy"), exact[o].numpy())
    print(f"{name}: exported in {time.time() - t0:.1f} s ({k} detections in PyTorch, {len(exact['scores'])} "
          f"in float64)", flush=True)
    return folder


def match(kiln, ort, tolerance):
    """(ok, message): kiln's detections against another run's (`ort`), as described above."""
    import numpy as np
    n = len(ort["scores"])
    if len(kiln["scores"]) != n:
        return False, f"{len(kiln['scores'])} detections, the other run {n}"
    used = np.zeros(n, bool)
    box_err = score_err = 0.0
    for i in np.argsort(-ort["scores"], kind="stable"):
        cand = np.where((kiln["labels"] == ort["labels"][i]) & ~used)[0]
        if len(cand) == 0:
            return False, f"the other run's detection {i} (label {ort['labels'][i]}) has no partner"
        cost = np.abs(kiln["boxes"][cand].astype(np.float64) - ort["boxes"][i]).max(axis=1) + \
            np.abs(kiln["scores"][cand].astype(np.float64) - ort["scores"][i])
        j = cand[np.argmin(cost)]
        used[j] = True
        box_err = max(box_err, float(np.abs(kiln["boxes"][j].astype(np.float64) - ort["boxes"][i]).max()))
        score_err = max(score_err, abs(float(kiln["scores"][j]) - float(ort["scores"][i])))
    box_rel = box_err / max(float(np.abs(ort["boxes"]).max()), 1e-30) if n else 0.0
    score_rel = score_err / max(float(np.abs(ort["scores"]).max()), 1e-30) if n else 0.0
    ok = box_rel <= tolerance and score_rel <= tolerance
    return ok, (f"{n} detections, labels equal; boxes {box_rel:.3g}, scores {score_rel:.3g} (limit {tolerance:g})")


def check(name, folder, kiln, ort_python):
    import numpy as np
    r = subprocess.run([ort_python, os.path.abspath(__file__), "--ort-reference", folder],
                       capture_output=True, text=True)
    if r.returncode == 77:
        print(f"SKIP: {ort_python} has no onnxruntime: {r.stdout.strip()}")
        sys.exit(77)
    if r.returncode != 0:
        return False, f"onnxruntime failed: {r.stderr.strip()[-800:]}"
    want = {o: np.load(os.path.join(folder, "ort", o + ".npy")) for o in OUTPUTS[name]}
    exact = {o: np.load(os.path.join(folder, "torch64", o + ".npy")) for o in OUTPUTS[name]}
    _, ort_msg = match({o: v for o, v in want.items()}, exact, TOLERANCE)
    plan = os.path.join(folder, "model.plan")
    r = subprocess.run([kiln, "build", os.path.join(folder, "model.onnx"), "--save", plan],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"kiln build failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}"
    msgs, all_ok = [], True
    for what, source in (("graph", [os.path.join(folder, "model.onnx")]), ("plan", ["--plan", plan])):
        out = os.path.join(folder, "kiln-" + what)
        t0 = time.time()
        r = subprocess.run([kiln, "run"] + source + ["--input", "image=" + os.path.join(folder, "image.npy"),
                                                     "--output-dir", out, "--output-format", "npy"],
                           capture_output=True, text=True)
        seconds = time.time() - t0
        if r.returncode != 0:
            return False, f"kiln run ({what}) failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}"
        got = {o: np.load(os.path.join(out, o + ".npy")) for o in OUTPUTS[name]}
        ok, msg = match(got, want, TOLERANCE)
        if not ok:
            ok_loose, msg = match(got, want, ORT_TOLERANCE)
            ok64, msg64 = match(got, exact, TOLERANCE)
            ok = ok_loose and ok64
            msg += f"; against float64 {msg64}"
        all_ok &= ok
        msgs.append(f"{what}: against onnxruntime {msg}; {seconds:.1f} s")
    return all_ok, "; ".join(msgs) + f" (onnxruntime against float64: {ort_msg})"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--ort-reference":
        ort_reference(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--only", help="comma-separated: " + ",".join(MODELS))
    ap.add_argument("--check-with", metavar="KILN")
    ap.add_argument("--ort-python", default="python3", help="a python3 with onnxruntime (default python3)")
    ap.add_argument("--remove-passing", action="store_true")
    args = ap.parse_args()
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e} (Debian's python3-torch and python3-torchvision export the models)")
        sys.exit(77)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from onnx_exports import select_models  # needs torch: imported once torch is known to be here
    names = select_models(ap, args.only, MODELS)
    passed = failed = 0
    for name in names:
        folder = export(name, args.outdir)
        if not args.check_with:
            continue
        ok, msg = check(name, folder, args.check_with, args.ort_python)
        print(f"{'pass' if ok else 'FAIL'} {name}: {msg}", flush=True)
        passed += ok
        failed += not ok
        if ok and args.remove_passing:
            shutil.rmtree(folder)
    if args.check_with:
        print(f"{passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
