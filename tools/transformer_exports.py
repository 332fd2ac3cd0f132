#!/usr/bin/python3
"""Export three transformers of standard shapes to ONNX with PyTorch's outputs, and check kiln
against them.

    /usr/bin/python3 tools/transformer_exports.py [OUTDIR | --out DIR] [--only NAME,...]
                                                  [--batch N] [--check-with KILN]
                                                  [--remove-passing] [--tolerance 1e-4]

Models (batch 1, or --batch N; eval mode, dropout 0). The TorchScript exporter at opset 17 writes
LayerNormalization as one node, GELU decomposed (opset 17 has no Gelu: Div, Erf, Add, Mul, Mul;
the tanh form as Mul, Mul, Mul, Add, Mul, Tanh, Add, Mul, Mul), and attention as one QKV MatMul
+ bias, three Slices, Reshape/Transpose of the heads, Div of Q by sqrt(64), MatMul with K^T,
(GPT: Mul by 1 and Add of the mask, from baddbmm), Softmax, MatMul with V, Transpose/Reshape
and the output Gemm:
  bert   a BERT-base-shaped encoder: token (vocabulary 30522) + learned position embeddings,
         LayerNorm, nn.TransformerEncoder of 12 post-norm layers (d_model 768, 12 heads,
         feed-forward 3072, erf GELU, batch_first); no pooler, no token types
         input_ids [1,128] int64 -> last_hidden_state [1,128,768]
  vit    torchvision vit_b_16 (weights=None); torchvision zero-initializes its classifier, which
         gets N(0, 0.02) weights here, or the output would be all zeros
         pixel_values [1,3,224,224] -> logits [1,1000]
  gpt    a GPT-2-small-shaped causal decoder: token (vocabulary 50257) + learned position
         embeddings, 12 pre-norm self-attention blocks (nn.TransformerEncoderLayer with
         norm_first=True, d_model 768, 12 heads, feed-forward 3072, tanh GELU as in GPT-2) under
         an additive causal mask (-inf above the diagonal: a [64,64] constant added to the
         scores), a final LayerNorm and an LM head tied to the token embedding
         input_ids [1,64] int64 -> logits [1,64,50257]

Weights: random from a fixed seed. nn.TransformerEncoder deep-copies one layer, so each layer's
matrices are drawn again (equal layers would also be stored once by the exporter); embeddings
are N(0, 0.02) as in BERT and GPT-2; LayerNorm scales and shifts and every bias are drawn at
random (PyTorch starts them at 1 and 0), so that a fusion or kernel that drops one shows.

Each model is written in the folder layout of `kiln conformance`:
  OUTDIR/<name>/model.onnx                  bert 435 MB, vit 346 MB, gpt 649 MB (the tied
                                            embedding is stored twice: for Gather and, transposed,
                                            for the LM head's MatMul)
  OUTDIR/<name>/test_data_set_0/input_0.pb  the fixed input (TensorProto)
  OUTDIR/<name>/test_data_set_0/output_0.pb PyTorch's output
(OUTDIR/<name>_b<N> at --batch N.) Without --check-with (or without --remove-passing) the
folders stay, e.g. for the GPU runs: `kiln run OUTDIR/bert/model.onnx --gpu ...`, `kiln bench
OUTDIR/vit_b64/model.onnx` after `--only vit --batch 64`.

--check-with KILN checks each model twice on the CPU reference: the imported graph (`KILN run
model.onnx --input NAME=input_0.pb --output-dir ...`) and the fused plan (`KILN build model.onnx
--save model.plan`, whose layer counts before and after fusion are printed, then `KILN run --plan
model.plan ...`; the plan is deleted after). Each must give max|kiln - torch| / max|torch| <=
--tolerance (1e-4). --remove-passing then deletes each model's folder once it passes, so that one
model at a time is on disk (at most 1.3 GB, with its plan).

TensorProto files and the seed come from tools/onnx_exports.py, so Debian's python3 (torch,
torchvision, numpy; no onnx package) suffices. Exits 77 (a skip for Meson) when torch,
torchvision or numpy cannot be imported.
"""
import argparse
import os
import re
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# tools/onnx_exports.py exits 77 when torch, torchvision or numpy is missing
from onnx_exports import compare_run, export_and_check, select_models, write_pb, SEED, OPSET  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

# torchvision's ViT asserts the image size with a Python bool, which the tracer warns about; the
# export is at that size
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

ALL_MODELS = ["bert", "vit", "gpt"]


# ---- models --------------------------------------------------------------------------------------
class BertEncoder(nn.Module):
    """BERT-base's shape: embeddings, their LayerNorm, 12 post-norm encoder layers (no pooler,
    no token types)."""

    def __init__(self, vocab=30522, max_len=512, d=768, heads=12, ff=3072, layers=12):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                           layer_norm_eps=1e-12, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids):                                           # [N,S] int64
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # [S]
        x = self.tokens(input_ids) + self.positions(positions)              # [N,S,768]
        return self.encoder(self.norm(x))                                   # [N,S,768]


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


class GPTDecoder(nn.Module):
    """GPT-2 small's shape: pre-norm causal self-attention blocks, a final LayerNorm and an LM
    head tied to the token embedding."""

    def __init__(self, vocab=50257, max_len=1024, d=768, heads=12, ff=3072, layers=12, seq=64):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation=gelu_tanh,
                                           layer_norm_eps=1e-5, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tokens.weight
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(seq))  # [S,S]

    def forward(self, input_ids):                                           # [N,S] int64
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # [S]
        x = self.tokens(input_ids) + self.positions(positions)              # [N,S,768]
        x = self.blocks(x, mask=self.causal)                                # [N,S,768]
        return self.head(self.norm(x))                                      # [N,S,50257]


def redraw_layers(stack):
    """nn.TransformerEncoder deep-copies one layer, so its layers start out equal (and the exporter
    would store their weights once): each layer's matrices are drawn again, one after another."""
    for layer in stack.layers:
        layer.self_attn._reset_parameters()      # in_proj_weight; zeroes the biases
        layer.self_attn.out_proj.reset_parameters()
        layer.linear1.reset_parameters()
        layer.linear2.reset_parameters()


def randomize_affine(model, gen):
    """LayerNorm scales and shifts and the biases that PyTorch zeroes (attention's, ViT's MLP's)
    drawn at random, as in a trained network, so that a fusion or kernel that drops one is seen."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(m, nn.MultiheadAttention):
                m.in_proj_bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1, generator=gen)


# name -> (input name, output name, input shape)
SPECS = {
    "bert": ("input_ids", "last_hidden_state", [1, 128]),
    "vit": ("pixel_values", "logits", [1, 3, 224, 224]),
    "gpt": ("input_ids", "logits", [1, 64]),
}


def build(name, batch=1):
    """(model in eval mode, fixed input of `batch` samples) with weights from the fixed seed."""
    torch.manual_seed(SEED)
    if name == "bert":
        model = BertEncoder()
        redraw_layers(model.encoder)
    elif name == "vit":
        model = torchvision.models.vit_b_16(weights=None)
        nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zeroes it
    elif name == "gpt":
        model = GPTDecoder()
        redraw_layers(model.blocks)
    else:
        raise ValueError(f"unknown model '{name}'")
    if name in ("bert", "gpt"):  # BERT's and GPT-2's initializer: N(0, 0.02)
        nn.init.normal_(model.tokens.weight, std=0.02)
        nn.init.normal_(model.positions.weight, std=0.02)
    randomize_affine(model, torch.Generator().manual_seed(SEED + 2))
    model.eval()
    shape = [batch] + SPECS[name][2][1:]
    gen = torch.Generator().manual_seed(SEED + 1)
    if name == "vit":
        x = torch.randn(shape, generator=gen)
    else:
        x = torch.randint(0, model.tokens.num_embeddings, shape, generator=gen, dtype=torch.int64)
    return model, x


# ---- export and check ----------------------------------------------------------------------------
def folder_size(folder):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def export_one(name, outdir, batch):
    model, x = build(name, batch)
    input_name, output_name, _ = SPECS[name]
    folder = os.path.join(outdir, name if batch == 1 else f"{name}_b{batch}")
    data = os.path.join(folder, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    with torch.no_grad():
        y = model(x).numpy()
    t0 = time.time()
    torch.onnx.export(model, (x,), os.path.join(folder, "model.onnx"), opset_version=OPSET,
                      input_names=[input_name], output_names=[output_name], do_constant_folding=True)
    write_pb(x.numpy(), os.path.join(data, "input_0.pb"), input_name)
    write_pb(y, os.path.join(data, "output_0.pb"), output_name)
    print(f"{name}: exported in {time.time() - t0:.1f} s, {folder_size(folder) / 1e6:.0f} MB, "
          f"{input_name} {list(x.shape)} -> {output_name} {list(y.shape)}, max|y| {np.abs(y).max():.4g}",
          flush=True)
    return folder


def compare(kiln_cmd, name, data, tolerance):
    """Runs kiln_cmd (`kiln run ...` without inputs and outputs) on data's input; returns (ok, message)."""
    input_name, output_name, _ = SPECS[name]
    return compare_run(kiln_cmd, data, input_name, tolerance, output_name)


# The fused plan of each model, as `kiln build` reports it (issue 15's golden plans): layers before
# and after fusion, and what the transformer passes made. A change to the passes that moves these
# is either a regression or an improvement to record here.
GOLDEN = {
    "bert": {"before": 411, "after": 195, "fuse-attention": 12, "fuse-gelu": 12, "fuse-gemm-bias": 36,
             "fuse-residual-norm": 24},
    "vit": {"before": 416, "after": 199, "fuse-attention": 12, "fuse-gelu": 12, "fuse-gemm-bias": 36,
            "fuse-residual-norm": 24},
    "gpt": {"before": 484, "after": 196, "fuse-attention": 12, "fuse-gelu": 12, "fuse-gemm-bias": 36,
            "fuse-residual-norm": 24},
}


def golden_mismatches(name, build_stdout):
    """What differs between `kiln build`'s report and GOLDEN[name] (batch 1 only)."""
    got = {}
    for when, n in re.findall(r"^layers (before|after) fusion: (\d+)", build_stdout, re.M):
        got[when] = int(n)
    passes = re.search(r"^passes:(.*)$", build_stdout, re.M)
    for key, n in re.findall(r"([a-z-]+)=(\d+)", passes.group(1) if passes else ""):
        got[key] = int(n)
    return [f"{k} {got.get(k)} (golden {v})" for k, v in GOLDEN[name].items() if got.get(k) != v]


def check_one(kiln, folder, name, tolerance, batch=1):
    """Checks the imported graph (`kiln run model.onnx`), then builds the fused CPU plan (`kiln build
    model.onnx --save model.plan`, whose layer counts are printed) and checks it (`kiln run --plan`);
    the plan is deleted afterwards. Returns whether both passed; prints a line for each step."""
    data = os.path.join(folder, "test_data_set_0")
    model = os.path.join(folder, "model.onnx")
    ok, msg = compare([kiln, "run", model], name, data, tolerance)
    print(f"  onnx graph: {'ok' if ok else 'FAIL'}: {msg}", flush=True)
    plan = os.path.join(folder, "model.plan")
    t0 = time.time()
    r = subprocess.run([kiln, "build", model, "--save", plan], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  fused plan: FAIL: kiln build failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}",
              flush=True)
        return False
    counts = re.findall(r"^layers (before|after) fusion: (\d+)", r.stdout, re.M)
    counts = ", ".join(f"{n} layers {when} fusion" for when, n in counts) or "no layer counts printed"
    print(f"  fused plan: {counts}, kiln build {time.time() - t0:.1f} s", flush=True)
    golden_ok = True
    if batch == 1:
        wrong = golden_mismatches(name, r.stdout)
        golden_ok = not wrong
        print(f"  fused plan: {'matches its golden counts' if golden_ok else 'FAIL: ' + ', '.join(wrong)}", flush=True)
    plan_ok, msg = compare([kiln, "run", "--plan", plan], name, data, tolerance)
    os.remove(plan)
    print(f"  fused plan: {'ok' if plan_ok else 'FAIL'}: {msg}", flush=True)
    return ok and plan_ok and golden_ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", help="where the models are written (default build/generated/transformer_exports)")
    ap.add_argument("--out", metavar="DIR", help="the same as OUTDIR")
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(ALL_MODELS))
    ap.add_argument("--check-with", metavar="KILN", help="the kiln CLI to check the exports with")
    ap.add_argument("--batch", type=int, default=1,
                    help="the batch size the models are exported at (default 1); the folders of "
                         "another batch are named <name>_b<N>")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--remove-passing", action="store_true",
                    help="with --check-with: delete each model folder that passes (each is 350 to 650 MB)")
    args = ap.parse_args()
    if args.out and args.outdir and args.out != args.outdir:
        ap.error("give OUTDIR or --out, not both")
    if args.batch < 1:
        ap.error("--batch must be at least 1")
    outdir = args.out or args.outdir or os.path.join("build", "generated", "transformer_exports")
    names = select_models(ap, args.only, ALL_MODELS)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, TorchScript exporter, opset {OPSET}")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    export_and_check(names, lambda name: export_one(name, outdir, args.batch),
                     lambda name, folder: check_one(args.check_with, folder, name, args.tolerance, args.batch),
                     args.check_with, args.remove_passing)


if __name__ == "__main__":
    main()
