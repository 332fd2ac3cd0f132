#!/usr/bin/python3
"""Make the PyTorch models of the WTS end-to-end checks, their WTS files, inputs and outputs.

    /usr/bin/python3 tests/data/make_wts_models.py [OUTDIR] [--check-with TEST_EXE]

OUTDIR defaults to build/generated/wts. Everything is made from fixed seeds, so the files are
the same on every run; nothing here is committed. Written (see manifest.txt for the arrays):
  lenet.wts            TensorRT-MNIST LeNet, trt-hex, PyTorch state_dict names
  lenet_tensorrtx.wts  the same weights, tensorrtx dialect
  lenet_ckpt.pth       the same as a checkpoint dict; lenet_from_ckpt.wts: gen_wts.py's CLI on it
  lenet_input.*        f32 [1,1,28,28];  lenet_output.*  f32 [1,10] (softmax)
  charrnn.wts          char-RNN (nn.LSTM(512,512,2) + fc 65), trt-binary, PyTorch names
  charrnn_tf.wts       the same LSTM in TensorFlow's layout (kernel [in+H,4H], gates i,c,f,o,
                       one bias with forget_bias 1.0 taken out), fc as in charrnn.wts
  charrnn_input.*      f32 [5,2,512] (already embedded); charrnn_output.* f32 [5,2,65] (softmax)
  convbn_f16.wts       a conv + BatchNorm block in float16 (BatchNorm buffers included)
Arrays come as .npy and as raw little-endian .bin.

With --check-with, runs TEST_EXE (the test_wts doctest binary) with KILN_WTS_DIR=OUTDIR so that
it reads every file written here. Exits 77 (a skip for Meson) if torch cannot be imported.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import torch/numpy ({e}); install Debian's python3-torch "
          "to make the WTS test models")
    sys.exit(77)

import gen_wts  # noqa: E402  (tools/gen_wts.py)


class LeNet(nn.Module):
    """The TensorRT MNIST API sample's network."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.ip1 = nn.Linear(800, 500)
        self.ip2 = nn.Linear(500, 10)

    def forward(self, x):                                  # [N,1,28,28]
        x = F.max_pool2d(self.conv1(x), 2, 2)              # [N,20,12,12]
        x = F.max_pool2d(self.conv2(x), 2, 2)              # [N,50,4,4]
        x = F.relu(self.ip1(x.flatten(1)))                 # [N,500]
        return F.softmax(self.ip2(x), dim=1)               # [N,10]


class CharRNN(nn.Module):
    """The TensorRT char-RNN sample's network, from the embedded input on."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(512, 512, num_layers=2)
        self.fc = nn.Linear(512, 65)

    def forward(self, x):                                  # [T,N,512]
        y, _ = self.rnn(x)                                 # [T,N,512], zero initial state
        return F.softmax(self.fc(y), dim=-1)               # [T,N,65]


def tf_lstm_layout(sd, layer, forget_bias=1.0):
    """PyTorch LSTM layer -> TF (kernel [in+H, 4H], bias [4H]) with gates i,c,f,o."""
    w_ih, w_hh = sd[f"rnn.weight_ih_l{layer}"], sd[f"rnn.weight_hh_l{layer}"]
    b = sd[f"rnn.bias_ih_l{layer}"] + sd[f"rnn.bias_hh_l{layer}"]
    order = [0, 2, 1, 3]  # TF gate k is PyTorch gate order[k] (PyTorch: i,f,g,o)

    def gates(t):
        return torch.cat([t.chunk(4, 0)[k] for k in order], 0)

    kernel = torch.cat([gates(w_ih).t(), gates(w_hh).t()], 0).contiguous()  # [in+H, 4H]
    bias = gates(b).clone()
    h = w_hh.shape[1]
    bias[2 * h:3 * h] -= forget_bias  # TF adds forget_bias to the f gate at run time
    return kernel, bias


def save_array(outdir, manifest, name, t):
    a = t.detach().cpu().numpy().astype(np.float32)
    np.save(os.path.join(outdir, name + ".npy"), a)
    a.astype("<f4").tofile(os.path.join(outdir, name + ".bin"))
    manifest.append(f"{name}.bin f32 {','.join(str(d) for d in a.shape)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", nargs="?", default=os.path.join("build", "generated", "wts"))
    p.add_argument("--check-with", help="test_wts binary to run on the files")
    args = p.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    out = lambda name: os.path.join(args.outdir, name)  # noqa: E731
    torch.set_num_threads(1)
    manifest = []

    torch.manual_seed(1)
    lenet = LeNet().eval()
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = lenet(x)
    sd = lenet.state_dict()
    gen_wts.write_wts(sd, out("lenet.wts"), "trt-hex")
    gen_wts.write_wts(sd, out("lenet_tensorrtx.wts"), "tensorrtx")
    torch.save({"epoch": 3, "state_dict": sd}, out("lenet_ckpt.pth"))
    subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "tools", "gen_wts.py"),
                    out("lenet_ckpt.pth"), out("lenet_from_ckpt.wts"), "--dialect", "tensorrtx"],
                   check=True)
    save_array(args.outdir, manifest, "lenet_input", x)
    save_array(args.outdir, manifest, "lenet_output", y)

    torch.manual_seed(3)
    rnn = CharRNN().eval()
    xr = torch.randn(5, 2, 512, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        yr = rnn(xr)
    sd = rnn.state_dict()
    gen_wts.write_wts(sd, out("charrnn.wts"), "trt-binary")
    tf = {}
    for layer in range(2):
        kernel, bias = tf_lstm_layout(sd, layer)
        cell = f"rnn/multi_rnn_cell/cell_{layer}/basic_lstm_cell/"
        tf[cell + "kernel"] = kernel
        tf[cell + "bias"] = bias
    tf["fc.weight"] = sd["fc.weight"]
    tf["fc.bias"] = sd["fc.bias"]
    gen_wts.write_wts(tf, out("charrnn_tf.wts"), "trt-binary")
    save_array(args.outdir, manifest, "charrnn_input", xr)
    save_array(args.outdir, manifest, "charrnn_output", yr)

    torch.manual_seed(5)
    convbn = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))
    convbn.train()
    with torch.no_grad():
        convbn(torch.randn(4, 3, 8, 8))  # moves the running statistics off their defaults
    gen_wts.write_wts(convbn.eval().state_dict(), out("convbn_f16.wts"), "trt-hex", "float16")

    with open(out("manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print(f"wrote the WTS test models to {args.outdir}")

    if args.check_with:
        env = dict(os.environ, KILN_WTS_DIR=os.path.abspath(args.outdir))
        return subprocess.run([args.check_with, "--test-case=generated*"], env=env).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
