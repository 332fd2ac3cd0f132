#!/usr/bin/python3
"""Issue 15 item 4: the DSL Transformer encoder (examples/encoder.hpp) bound to the state_dict of
the same PyTorch module, as PyTorch writes it (Q/K/V packed in self_attn.in_proj_weight), matches
PyTorch on the CPU reference: max|kiln - torch| / max|torch| <= 1e-4, for the example program
(the DSL graph) and for the fused plan of `kiln build --example encoder --weights` run by
`kiln run --plan`. A state_dict that lacks a tensor, or holds one of the wrong shape, is refused
with a message naming it.

    /usr/bin/python3 encoder_vs_torch.py OUTDIR --encoder EXE --kiln KILN --gen-wts gen_wts.py

The module: token and learned position embeddings (nn.Embedding(1000, 64), nn.Embedding(16, 64))
and 2 nn.TransformerEncoderLayer(64, 4, 128, dropout=0, batch_first=True) (post-norm, ReLU) in a
ModuleList `layers`; fixed seed, every weight and bias random. One line per check, then
"N passed, N failed". Exits 77 (skip) when /usr/bin/python3 cannot import torch or numpy.
"""
import argparse
import copy
import importlib.util
import os
import subprocess
import sys

from e2e_util import rel_err, require, run

TOL = 1e-4
VOCAB, WIDTH, HEADS, FFN, LAYERS, SEQ = 1000, 64, 4, 128, 2, 16
BATCH = 3


def make_module():
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(VOCAB, WIDTH)
            self.pos = nn.Embedding(SEQ, WIDTH)
            layer = nn.TransformerEncoderLayer(WIDTH, HEADS, FFN, dropout=0.0, batch_first=True)
            self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(LAYERS)])

        def forward(self, ids):                                          # [N,S] int64
            x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))     # [N,S,E]
            for layer in self.layers:
                x = layer(x)
            return x                                                     # [N,S,E]

    torch.manual_seed(15)
    m = Encoder()
    with torch.no_grad():  # PyTorch leaves biases at 0 and norms at 1: draw them too
        for name, p in m.named_parameters():
            if p.dim() == 1:
                if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                    p.uniform_(0.5, 1.5)
                else:
                    p.uniform_(-0.1, 0.1)
    return m.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--encoder", required=True, help="the example program (build/examples/encoder)")
    ap.add_argument("--kiln", required=True, help="the kiln command line")
    ap.add_argument("--gen-wts", required=True, help="tools/gen_wts.py")
    args = ap.parse_args()
    require("numpy", "torch")
    import numpy as np
    import torch

    spec = importlib.util.spec_from_file_location("gen_wts", args.gen_wts)
    gen_wts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_wts)

    os.makedirs(args.outdir, exist_ok=True)
    d = lambda name: os.path.join(args.outdir, name)  # noqa: E731
    model = make_module()
    sd = model.state_dict()
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = model(ids).numpy()                                        # [N,16,64]
    ids.numpy().astype("<i8").tofile(d("ids.bin"))
    np.save(d("ids.npy"), ids.numpy().astype(np.int64))
    gen_wts.write_wts(sd, d("encoder.wts"))

    passed, failed = [], []

    def report(what, ok, detail):
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}", flush=True)
        (passed if ok else failed).append(what)

    def check(what, got):
        err = rel_err(got, want)
        report(what, err <= TOL, f"max|kiln - torch| / max|torch| = {err:.3g} (limit {TOL:g})")

    # The DSL graph, as the example program runs it.
    out = d("kiln_hidden.bin")
    try:
        run([args.encoder, d("encoder.wts"), "--input", d("ids.bin"), "--output", out])
        check("DSL encoder (example program) vs PyTorch",
              np.fromfile(out, dtype="<f4").reshape(want.shape))
    except (RuntimeError, OSError) as e:
        report("DSL encoder (example program) vs PyTorch", False, str(e))

    # The fused plan of the same network: kiln build --example encoder --weights, kiln run --plan.
    plan = d("encoder.kiln")
    try:
        run([args.kiln, "build", "--example", "encoder", "--weights", d("encoder.wts"),
             "--shape", f"ids={BATCH}x{SEQ}", "--save", plan])
        run([args.kiln, "run", "--plan", plan, "--input", "ids=" + d("ids.npy"),
             "--output-dir", d("plan_out"), "--output-format", "npy"])
        check("fused plan of the DSL encoder (kiln run --plan) vs PyTorch",
              np.load(os.path.join(d("plan_out"), "hidden.npy")))
    except (RuntimeError, OSError) as e:
        report("fused plan of the DSL encoder (kiln run --plan) vs PyTorch", False, str(e))

    # Refusals: a missing tensor, and one of the wrong shape, each named.
    bad = {
        "without layers.1.norm2.weight": (
            {k: v for k, v in sd.items() if k != "layers.1.norm2.weight"},
            "missing 'layers.1.norm2.weight' for layer 'layers.1.norm2' (expected f32 [64])"),
        "with in_proj_weight of Q and K only": (
            {**sd, "layers.0.self_attn.in_proj_weight": sd["layers.0.self_attn.in_proj_weight"][:128]},
            "'layers.0.self_attn.in_proj_weight' for layer 'layers.0.self_attn.in_proj_weight' has "
            "8192 elements [8192], expected 12288 [192,64]"),  # trt-hex files are flat
    }
    for what, (state, message) in bad.items():
        wts = d("encoder_" + what.replace(" ", "_").replace(".", "_") + ".wts")
        gen_wts.write_wts(state, wts)
        r = subprocess.run([args.encoder, wts], capture_output=True, text=True)
        report(f"a state_dict {what} is refused", r.returncode == 1 and message in r.stderr,
               f"exit {r.returncode}, {r.stderr.strip()!r}")

    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
