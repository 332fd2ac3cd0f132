#!/usr/bin/env python3
"""Give the nine light model-zoo networks random weights and expected outputs from onnxruntime.

    python3 tools/light_random_weights.py [OUTDIR] [--data DIR] [--seed N]

The light models (../shared/onnx-backend-data/light/light_X.onnx) hold every weight as a
ConstantOfShape node filled with 0.02, so they test structure more than numbers. This script
turns each of those nodes (and each float initializer that is a weight) into an initializer of
random values drawn from a fixed seed, scaled by role so that activations stay O(1):

  Conv / Gemm weight      He-normal, std sqrt(2 / fan_in)
  biases, Add operands    uniform(-0.1, 0.1)
  BN scale, Mul operands  uniform(0.5, 1.5)
  BN mean / var           calibrated: the per-channel mean and variance of the BN's input,
                          measured with onnxruntime on the test input (see calibrate()), so
                          that each BN normalizes what it really sees
  an output Conv/Gemm bias moved 0.5 away from zero per element (see keep_outputs_off_zero())

and writes, in the folder layout that `kiln conformance` reads:

  OUTDIR/light_X_random/model.onnx
  OUTDIR/light_X_random/test_data_set_0/input_0.pb     standard normal input, fixed seed
  OUTDIR/light_X_random/test_data_set_0/output_0.pb    onnxruntime's output (no graph optimizations)

Needs onnx, onnxruntime and numpy (pyenv python3); exits 77 (a skip for Meson) without them.
"""
import argparse
import os
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import onnx/onnxruntime/numpy ({e}); "
          "install them with pip (tools/setup.sh does)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "onnx-backend-data", "light")
MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
          "shufflenet", "squeezenet", "vgg19", "zfnet512"]


def consumers(graph):
    """value name -> [(node, input index)] of the nodes that read it."""
    uses = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, i))
    return uses


def role_of(name, uses, depth=0):
    """What a weight is used as: 'conv_w', 'gemm_w', 'bias', 'bn_scale', 'bn_bias', 'bn_mean',
    'bn_var', 'mul', 'add', or None (kept as it is). Looks through the Unsqueeze and Reshape
    that the light models put between some weights and their consumers."""
    for node, i in uses.get(name, []):
        op = node.op_type
        if op == "Conv":
            return "conv_w" if i == 1 else "bias"
        if op == "Gemm":
            return "gemm_w" if i == 1 else ("bias" if i == 2 else None)
        if op == "BatchNormalization":
            return [None, "bn_scale", "bn_bias", "bn_mean", "bn_var"][i]
        if op == "Mul":
            return "mul"
        if op in ("Add", "Sum"):
            return "add"
        if op in ("Unsqueeze", "Reshape") and i == 0 and depth < 2:
            return role_of(node.output[0], uses, depth + 1)
    return None


def fan_in(role, shape, uses, inits, name):
    if role == "conv_w":  # [O, I/group, k...]
        return int(np.prod(shape[1:]))
    # Gemm B: [K, N], or [N, K] with transB; the light models may reshape it first
    for node, i in uses.get(name, []):
        if node.op_type == "Reshape" and node.input[1] in inits:
            target = [int(d) for d in numpy_helper.to_array(inits[node.input[1]])]
            return fan_in(role, target, uses, inits, node.output[0])
        if node.op_type == "Gemm":
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            return int(shape[1] if trans_b else shape[0])
    raise ValueError(f"weight '{name}': no Gemm consumer found")


def random_weights(model, rng):
    """Replaces the 0.02 ConstantOfShape weights (and float weight initializers) in place. BN
    means and variances get placeholders here; calibrate() sets them."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    uses = consumers(g)

    def draw(name, shape):
        role = role_of(name, uses)
        shape = [int(d) for d in shape]
        if role in ("conv_w", "gemm_w"):
            std = np.sqrt(2.0 / max(1, fan_in(role, shape, uses, inits, name)))
            return role, rng.normal(0.0, std, shape)
        if role in ("bias", "bn_bias", "add"):
            return role, rng.uniform(-0.1, 0.1, shape)
        if role in ("bn_scale", "mul"):
            return role, rng.uniform(0.5, 1.5, shape)
        if role == "bn_mean":
            return role, rng.uniform(-0.1, 0.1, shape)
        if role == "bn_var":
            return role, rng.uniform(0.5, 1.5, shape)
        return role, None

    kept_nodes = []
    new_inits = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and value.data_type == onnx.TensorProto.FLOAT:
                shape = numpy_helper.to_array(inits[node.input[0]])
                role, w = draw(node.output[0], shape)
                if w is None:  # not a weight we know: keep its constant value
                    w = np.full(shape, numpy_helper.to_array(value).reshape(-1)[0])
                new_inits.append(numpy_helper.from_array(w.astype(np.float32), node.output[0]))
                continue
        kept_nodes.append(node)
    for t in list(g.initializer):
        if t.data_type != onnx.TensorProto.FLOAT:
            continue
        role, w = draw(t.name, list(t.dims))
        if w is not None:
            t.CopyFrom(numpy_helper.from_array(w.astype(np.float32), t.name))
    del g.node[:]
    g.node.extend(kept_nodes)
    g.initializer.extend(new_inits)
    # IR version 3 lists every initializer as a graph input too; keep the models that way.
    if model.ir_version < 4:
        listed = {i.name for i in g.input}
        for t in new_inits:
            if t.name not in listed:
                g.input.append(helper.make_tensor_value_info(t.name, onnx.TensorProto.FLOAT, list(t.dims)))


def session(model, extra_outputs=()):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra_outputs:
        m.graph.output.append(helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def calibrate(model, feeds):
    """Sets each BatchNormalization's mean/var to the per-channel statistics of its input on
    `feeds`, all in one run: a copy of the model with every BN replaced by
    InstanceNormalization (which, for batch 1, is that calibrated BN) shows each BN's input as
    it will be after calibration. The variance gets a floor of 0.01 so that a nearly constant
    channel is not blown up into rounding noise."""
    g = model.graph
    bns = [n for n in g.node if n.op_type == "BatchNormalization"]
    if not bns:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for n in probe.graph.node:
        if n.op_type == "BatchNormalization":
            eps = [a for a in n.attribute if a.name == "epsilon"]
            del n.input[3:]
            del n.attribute[:]
            n.attribute.extend(eps)
            n.op_type = "InstanceNormalization"
    xs = sorted({n.input[0] for n in bns})
    sess = session(probe, xs)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    inits = {t.name: t for t in g.initializer}
    for n in bns:
        x = got[n.input[0]].astype(np.float64)  # [N, C, ...]
        axes = tuple(i for i in range(x.ndim) if i != 1)
        mean, var = x.mean(axis=axes), x.var(axis=axes) + 1e-2
        for name, v in ((n.input[3], mean), (n.input[4], var)):
            inits[name].CopyFrom(numpy_helper.from_array(v.astype(np.float32), name))


def keep_outputs_off_zero(model, outputs):
    """The conformance runner compares each element within rtol 1e-3 (atol 1e-7), which a
    float32 value that happens to land near zero cannot meet after a hundred layers of
    rounding. Softmax outputs are positive; an output made directly by a Conv or Gemm with one
    element per bias channel (DenseNet's 1x1 classifier conv after global pooling) has its
    bias moved by 0.5 away from zero, element by element: y becomes y + 0.5 sign(y).
    Returns whether a bias changed."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    changed = False
    for vi, y in zip(g.output, outputs):
        n = producer.get(vi.name)
        if n is None or n.op_type not in ("Conv", "Gemm") or len(n.input) < 3 or n.input[2] not in inits:
            continue
        b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)
        per_channel = y.reshape(-1) if y.ndim >= 2 and y.shape[0] == 1 else None
        if per_channel is None or b.shape != (per_channel.size,):
            continue
        b += 0.5 * np.where(per_channel >= 0, 1.0, -1.0)
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(b.astype(np.float32), n.input[2]))
        changed = True
    return changed


def real_inputs(graph):
    inits = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def make_one(src, out_dir, seed):
    model = onnx.load(src)
    rng = np.random.default_rng(seed)
    random_weights(model, rng)
    feeds = {}
    for vi in real_inputs(model.graph):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
    calibrate(model, feeds)
    onnx.checker.check_model(model)
    outputs = session(model).run(None, feeds)
    if keep_outputs_off_zero(model, outputs):
        outputs = session(model).run(None, feeds)
    data = os.path.join(out_dir, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    onnx.save(model, os.path.join(out_dir, "model.onnx"))
    for i, (name, x) in enumerate(feeds.items()):
        onnx.save_tensor(numpy_helper.from_array(x, name), os.path.join(data, f"input_{i}.pb"))
    for i, (vi, y) in enumerate(zip(model.graph.output, outputs)):
        onnx.save_tensor(numpy_helper.from_array(y, vi.name), os.path.join(data, f"output_{i}.pb"))
    return outputs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", default=os.path.join("build", "generated", "light_random"))
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder of light_X.onnx (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()
    missing = [m for m in MODELS if not os.path.exists(os.path.join(args.data, f"light_{m}.onnx"))]
    if len(missing) == len(MODELS):
        print(f"SKIP: no light models in {args.data}")
        sys.exit(77)
    for k, name in enumerate(MODELS):
        if name in missing:
            print(f"light_{name}: missing in {args.data}", file=sys.stderr)
            sys.exit(1)
        out = os.path.join(args.outdir, f"light_{name}_random")
        ys = make_one(os.path.join(args.data, f"light_{name}.onnx"), out, args.seed + k)
        y = ys[0]
        print(f"light_{name}_random: output {list(y.shape)} max |y| {np.abs(y).max():.4g} "
              f"mean {y.mean():.4g} argmax {int(y.argmax())}")


if __name__ == "__main__":
    main()
