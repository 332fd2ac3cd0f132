"""The rows of tools/bench.py: which network, precision and shape each row measures, the PyTorch
model it builds (random weights from a fixed seed) and the ONNX file kiln reads.

Imported by tools/bench.py (and by its torch.compile worker); not a script. Works with Debian's
torch 1.13 on the CPU as well as torch 2.x on the GPU machine: the export is the TorchScript
exporter (torch.onnx.export(..., dynamo=False) where that argument exists).
"""
import inspect
import os
import sys
import warnings
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "data"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import onnx_exports  # noqa: E402  (tools/onnx_exports.py: seed, BatchNorm calibration)
from make_wts_models import CharRNN, LeNet  # noqa: E402  (the PyTorch twins of examples/)

try:
    import onnx  # only to read the graph's input/output names back (the dynamo exporter's)
except ImportError:
    onnx = None

# The TorchScript exporter warns about LSTM batch sizes, traced shape arithmetic and its own
# deprecation; none of it matters for these exports.
for _category in (UserWarning, DeprecationWarning, FutureWarning):
    warnings.filterwarnings("ignore", category=_category, module=r"torch\.onnx")
warnings.filterwarnings("ignore", message=r".*(Tracer|tracing|traced|Converting a tensor).*")

SEED = onnx_exports.SEED
OPSET = 17
DYNAMO_OPSET = 18

# ResNet-18 with a dynamic batch and image size (tools/dynamic_exports.py's model and profile).
DYNAMIC_PROFILE = {"min": (1, 3, 64, 64), "opt": (2, 3, 224, 224), "max": (4, 3, 256, 256)}
CONV_MODELS = {"lenet", "resnet18", "resnet50", "vgg19", "mobilenet_v2", "googlenet"}
TRANSFORMERS = {"bert", "vit"}
BERT_SEQ = 128


@dataclass(frozen=True)
class Row:
    id: str
    model: str         # lenet resnet50 vgg19 mobilenet_v2 googlenet charrnn bert vit resnet18 ssdlite
    precision: str     # fp32 fp16 bf16 int8 fp8
    batch: int
    steps: int = 0     # char-RNN: sequence length; BERT: tokens per sequence
    shape: tuple = ()  # dynamic rows: the input's dims (NCHW)
    dynamic: bool = False  # kiln: a dynamic plan (DYNAMIC_PROFILE) against a static engine
    blocked: str = ""  # why kiln cannot run the row at all (listed as not run)

    @property
    def half(self):  # PyTorch runs the row in 16 bits (an INT8 row: in FP16)
        return self.precision in ("fp16", "bf16", "int8", "fp8")

    @property
    def conv(self):  # a convolutional network: PyTorch tries channels-last too
        return self.model in CONV_MODELS

    @property
    def export_key(self):  # rows that share an ONNX file (one model and shape, every precision)
        if self.dynamic:
            return f"{self.model}-dynamic"
        return f"{self.model}-b{self.batch}" + (f"-t{self.steps}" if self.steps else "")

    def shapes_arg(self):  # the trtexec syntax of kiln's --shapes
        return "x:" + "x".join(str(d) for d in self.shape)


def _dyn(shape):
    n, _, h, w = shape
    return Row(f"resnet18-dyn-fp16-{n}x{h}", "resnet18", "fp16", n, shape=shape, dynamic=True)


NO_NMS = ("kiln runs ssdlite's post-processing (per-class score filtering, then NonMaxSuppression of "
          "boxes sized at run time) as host steps with the CPU reference, 1375 of its 1628 steps "
          "(kiln build --host-fallback): a latency would time the reference, not the GPU (issue 16)")

ROWS = [
    Row("lenet-fp32-b1", "lenet", "fp32", 1),
    Row("lenet-fp32-b1024", "lenet", "fp32", 1024),
    Row("resnet50-fp32-b1", "resnet50", "fp32", 1),
    Row("resnet50-fp32-b64", "resnet50", "fp32", 64),
    Row("resnet50-fp16-b1", "resnet50", "fp16", 1),
    Row("resnet50-fp16-b256", "resnet50", "fp16", 256),
    Row("vgg19-fp16-b1", "vgg19", "fp16", 1),
    Row("vgg19-fp16-b32", "vgg19", "fp16", 32),
    Row("mobilenetv2-fp16-b1", "mobilenet_v2", "fp16", 1),
    Row("googlenet-fp16-b1", "googlenet", "fp16", 1),
    Row("charrnn-fp32-b1-t1", "charrnn", "fp32", 1, 1),
    Row("charrnn-fp32-b64-t100", "charrnn", "fp32", 64, 100),
    Row("charrnn-fp16-b64-t100", "charrnn", "fp16", 64, 100),
    # issue 20's new rows
    Row("bert-fp16-b1-s128", "bert", "fp16", 1, BERT_SEQ),
    Row("bert-fp16-b32-s128", "bert", "fp16", 32, BERT_SEQ),
    Row("bert-bf16-b1-s128", "bert", "bf16", 1, BERT_SEQ),
    Row("bert-bf16-b32-s128", "bert", "bf16", 32, BERT_SEQ),
    Row("vit-b16-fp16-b1", "vit", "fp16", 1),
    Row("vit-b16-fp16-b64", "vit", "fp16", 64),
    _dyn((1, 3, 224, 224)),   # inside the profile, not one of its bucket shapes
    _dyn((2, 3, 224, 224)),   # the profile's opt shape
    _dyn((4, 3, 256, 256)),   # the profile's max shape
    # kiln INT8 and FP8 E4M3 (calibrated by kiln, tools/bench.py quantized_plan) against PyTorch
    # in FP16: PyTorch has no INT8 or FP8 CUDA convolution in eager mode or CUDA graphs.
    Row("resnet50-int8-b1", "resnet50", "int8", 1),
    Row("resnet50-int8-b256", "resnet50", "int8", 256),
    Row("resnet50-fp8-b1", "resnet50", "fp8", 1),
    Row("resnet50-fp8-b256", "resnet50", "fp8", 256),
    Row("ssdlite320-fp16-b1", "ssdlite", "fp16", 1, blocked=NO_NMS),
]
ROW_BY_ID = {r.id: r for r in ROWS}


# ---- models ----------------------------------------------------------------------------------
class CharRNNStates(CharRNN):
    """examples/charrnn.cpp: embedded characters [T,N,512], a 2-layer LSTM of 512 with initial
    states in and final states out, fc to 65, softmax. Parameter names as in CharRNN."""

    def forward(self, data, hidden_in, cell_in):           # [T,N,512] [2,N,512] [2,N,512]
        y, (h, c) = self.rnn(data, (hidden_in, cell_in))   # [T,N,512] [2,N,512] [2,N,512]
        return F.softmax(self.fc(y), dim=-1), h, c         # [T,N,65]


def _bert(gen):
    """issue 15's BERT-base-shaped encoder as tools/transformer_exports.py makes it (one class and
    one initialization for both): each layer's matrices drawn again, embeddings N(0, 0.02),
    LayerNorm affines and biases at random."""
    from transformer_exports import BertEncoder, randomize_affine, redraw_layers
    model = BertEncoder()
    redraw_layers(model.encoder)
    with torch.no_grad():
        model.tokens.weight.normal_(0.0, 0.02, generator=gen)
        model.positions.weight.normal_(0.0, 0.02, generator=gen)
    randomize_affine(model, gen)
    return model


def _vit():
    import torchvision
    model = torchvision.models.vit_b_16(weights=None)
    # torchvision zero-initializes the classifier (and the class token): the output would be 0
    # for every input and the accuracy column would check nothing.
    gen = torch.Generator().manual_seed(SEED + 3)
    with torch.no_grad():
        head = model.heads.head
        head.weight.normal_(0.0, head.in_features ** -0.5, generator=gen)
        head.bias.uniform_(-0.1, 0.1, generator=gen)
        model.class_token.normal_(0.0, 0.02, generator=gen)
    return model


def build(row):
    """(fp32 model in eval mode on the CPU, {input name: tensor}, [output names]). Float inputs
    of 16-bit rows are rounded to that precision (and kept fp32), so every run sees the same
    values."""
    gen = torch.Generator().manual_seed(SEED + 1)
    if row.model == "lenet":
        torch.manual_seed(SEED)
        model = LeNet()
        inputs = {"data": torch.rand(row.batch, 1, 28, 28, generator=gen)}  # MNIST-like, [0,1)
        outputs = ["prob"]
    elif row.model == "charrnn":
        torch.manual_seed(SEED)
        model = CharRNNStates()
        t, n = row.steps, row.batch
        inputs = {"data": torch.randn(t, n, 512, generator=gen),
                  "hidden_in": 0.5 * torch.randn(2, n, 512, generator=gen),
                  "cell_in": 0.5 * torch.randn(2, n, 512, generator=gen)}
        outputs = ["prob", "hidden_out", "cell_out"]
    elif row.model == "bert":
        torch.manual_seed(SEED)
        model = _bert(torch.Generator().manual_seed(SEED + 2))
        inputs = {"tokens": torch.randint(0, 30522, (row.batch, row.steps), generator=gen)}
        outputs = ["hidden"]
    elif row.model == "vit":
        torch.manual_seed(SEED)
        model = _vit()
        inputs = {"input": torch.randn(row.batch, 3, 224, 224, generator=gen)}
        outputs = ["output"]
    elif row.model == "resnet18":
        import dynamic_exports  # tools/dynamic_exports.py: the same seeded, calibrated model
        model = dynamic_exports.build("resnet18")
        inputs = {"x": torch.randn(*row.shape, generator=gen)}
        outputs = ["logits"]
    elif row.model in ("resnet50", "vgg19", "mobilenet_v2", "googlenet"):
        model, _ = onnx_exports.build(row.model)  # seeded torchvision model, BatchNorm calibrated
        inputs = {"input": torch.randn(row.batch, 3, 224, 224, generator=gen)}
        outputs = ["output"]
    else:
        raise ValueError(f"row {row.id}: no model '{row.model}' here")
    model.eval()
    dtype = torch_dtype(row)
    if row.half:
        inputs = {k: v.to(dtype).float() if v.is_floating_point() else v for k, v in inputs.items()}
    return model, inputs, outputs


def torch_dtype(row):
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float16,
            "fp8": torch.float16}.get(row.precision, torch.float32)


def _dynamo_arg():
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def export(row, model, inputs, outputs, path, exporter, opset=OPSET):
    """Writes the row's ONNX file (fp32 weights); returns ([input names], [output names]) as they
    are in the file. Dynamic rows get dim_params N, H, W on x (and N on logits)."""
    args = tuple(inputs.values())
    names = dict(input_names=list(inputs), output_names=outputs)
    # Transformers are exported with autograd on: PyTorch's inference fast paths (the fused
    # kernels of TransformerEncoderLayer and MultiheadAttention) are taken only without grad, and
    # have no ONNX form. The others without it (no activations kept for a backward pass).
    with (torch.enable_grad() if row.model in TRANSFORMERS else torch.no_grad()):
        if exporter == "dynamo" and not row.dynamic:
            torch.onnx.export(model, args, path, dynamo=True, opset_version=DYNAMO_OPSET,
                              external_data=True, **names)
        else:
            extra = dict(dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N"}}) \
                if row.dynamic else {}
            torch.onnx.export(model, args, path, opset_version=opset, do_constant_folding=True,
                              **names, **extra, **_dynamo_arg())
    if exporter != "dynamo" or row.dynamic or onnx is None:  # TorchScript keeps the names given
        return list(inputs), list(outputs)
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    return ([i.name for i in m.graph.input if i.name not in inits], [o.name for o in m.graph.output])
