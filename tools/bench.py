#!/usr/bin/python3
"""kiln against PyTorch, side by side: latency, peak device memory and accuracy per network.

    python3 tools/bench.py [--rows ID,...] [--kiln build/tools/kiln] [--work /tmp/kiln-bench]
                           [--markdown FILE] [--json FILE] [--quick] [--compile] [--channels-last]
    python3 tools/bench.py --list

Each row builds a PyTorch model (random weights from a fixed seed; BatchNorm running statistics
set from a random batch, as in tools/onnx_exports.py), exports it ONCE to ONNX in fp32 (opset 17,
TorchScript exporter, the row's fixed batch) into --work, saves a random input as .npy, then:
  torch   eager (model.eval(), fp16 rows: model.half() and a half input) and a CUDA graph
          (torch.cuda.CUDAGraph capture, then replay): each iteration timed on the host with
          time.perf_counter around the call and torch.cuda.synchronize(); median and p90.
          Peak memory: torch.cuda.max_memory_allocated() after reset_peak_memory_stats().
  kiln    `KILN bench MODEL.onnx [--fp16] --batch B --warmup W --iterations N --input NAME=X.npy
          --output-dir DIR --json FILE` without and with --cuda-graph; kiln's time is the better
          median of the two, its peak memory is memory_bytes.peak.
  error   max|kiln - torch| / max|torch| over every output, on the same input, against torch in
          the row's precision (fp16 rows also against torch fp32, in the notes).
A row whose kiln run fails gets kiln's stderr tail in its notes; the suite goes on.
Everything is written to --work/<row>/ (inputs, torch outputs, kiln outputs and JSON).
See bench/README.md.
"""
import argparse
import datetime
import gc
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "data"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import onnx_exports  # noqa: E402  (tools/onnx_exports.py: seed, BatchNorm calibration)
from make_wts_models import CharRNN, LeNet  # noqa: E402  (the PyTorch twins of examples/)

try:
    import onnx  # only to read the graph's input/output names back (the dynamo exporter's)
except ImportError:
    onnx = None

# The TorchScript exporter warns about LSTM batch sizes and its own deprecation; neither matters.
for _category in (UserWarning, DeprecationWarning, FutureWarning):
    warnings.filterwarnings("ignore", category=_category, module=r"torch\.onnx")

SEED = onnx_exports.SEED
OPSET = 17
DYNAMO_OPSET = 18


@dataclass(frozen=True)
class Row:
    id: str
    model: str       # lenet resnet50 vgg19 mobilenet_v2 googlenet charrnn
    fp16: bool
    batch: int
    steps: int = 0   # char-RNN sequence length

    @property
    def export_key(self):  # rows that share an ONNX file (fp32 and fp16 of one shape)
        return f"{self.model}-b{self.batch}" + (f"-t{self.steps}" if self.steps else "")


ROWS = [
    Row("lenet-fp32-b1", "lenet", False, 1),
    Row("lenet-fp32-b1024", "lenet", False, 1024),
    Row("resnet50-fp32-b1", "resnet50", False, 1),
    Row("resnet50-fp32-b64", "resnet50", False, 64),
    Row("resnet50-fp16-b1", "resnet50", True, 1),
    Row("resnet50-fp16-b256", "resnet50", True, 256),
    Row("vgg19-fp16-b1", "vgg19", True, 1),
    Row("vgg19-fp16-b32", "vgg19", True, 32),
    Row("mobilenetv2-fp16-b1", "mobilenet_v2", True, 1),
    Row("googlenet-fp16-b1", "googlenet", True, 1),
    Row("charrnn-fp32-b1-t1", "charrnn", False, 1, 1),
    Row("charrnn-fp32-b64-t100", "charrnn", False, 64, 100),
    Row("charrnn-fp16-b64-t100", "charrnn", True, 64, 100),
]
ROW_BY_ID = {r.id: r for r in ROWS}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- models ----------------------------------------------------------------------------------
class CharRNNStates(CharRNN):
    """examples/charrnn.cpp: embedded characters [T,N,512], a 2-layer LSTM of 512 with initial
    states in and final states out, fc to 65, softmax. Parameter names as in CharRNN."""

    def forward(self, data, hidden_in, cell_in):           # [T,N,512] [2,N,512] [2,N,512]
        y, (h, c) = self.rnn(data, (hidden_in, cell_in))   # [T,N,512] [2,N,512] [2,N,512]
        return F.softmax(self.fc(y), dim=-1), h, c         # [T,N,65]


def build(row):
    """(fp32 model in eval mode on the CPU, {input name: fp32 tensor}, [output names])."""
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
    else:
        model, _ = onnx_exports.build(row.model)  # seeded torchvision model, BatchNorm calibrated
        inputs = {"input": torch.randn(row.batch, 3, 224, 224, generator=gen)}
        outputs = ["output"]
    model.eval()
    if row.fp16:  # the same values for every precision: fp16-representable inputs
        inputs = {k: v.half().float() for k, v in inputs.items()}
    return model, inputs, outputs


def as_tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def export(model, inputs, outputs, path, exporter):
    """Writes the ONNX file; returns ([input names], [output names]) as they are in the file."""
    args = tuple(inputs.values())
    names = dict(input_names=list(inputs), output_names=outputs)
    if exporter == "dynamo":
        torch.onnx.export(model, args, path, dynamo=True, opset_version=DYNAMO_OPSET,
                          external_data=True, **names)
    else:
        extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(model, args, path, opset_version=OPSET, do_constant_folding=True,
                          **names, **extra)
    if exporter != "dynamo" or onnx is None:  # TorchScript keeps the names it is given
        return list(inputs), list(outputs)
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    return ([i.name for i in m.graph.input if i.name not in inits], [o.name for o in m.graph.output])


# ---- torch timing ----------------------------------------------------------------------------
def summarize(times_s):
    ms = np.array(times_s) * 1e3
    return {"n": int(ms.size), "min": float(ms.min()), "mean": float(ms.mean()),
            "median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99))}


def time_calls(fn, sync, warmup, iterations, budget_s):
    """Latency per call: warmup calls, then up to `iterations` calls (fewer when the estimate
    from the warmup says they would take more than budget_s), each synchronised."""
    warm = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        sync()
        warm.append(time.perf_counter() - t0)
    est = float(np.median(warm[len(warm) // 2:])) if warm else 0.0
    n = iterations if est <= 0 else min(iterations, max(10, int(budget_s / est)))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return summarize(times)


def cuda_graph(model, static_args):
    """Captures one forward on static inputs; returns (graph, static outputs)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            model(*static_args)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = model(*static_args)
    torch.cuda.synchronize()
    return g, static_out


def rel_err(got, want):
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"shape {list(got.shape)}, torch has {list(want.shape)}")
    scale = np.abs(want).max()
    return float(np.abs(got - want).max() / (scale if scale > 0 else 1.0))


def worst_err(got, want):
    """max over outputs of rel_err; got/want: {name: array}."""
    return max(rel_err(got[k], want[k]) for k in want)


# ---- kiln --------------------------------------------------------------------------------------
def tail(text, n=400):
    text = " ".join((text or "").strip().split())
    return text if len(text) <= n else "..." + text[-n:]


def output_file(folder, name):
    for file in (name, "".join(c if c.isalnum() or c in "_-." else "_" for c in name)):
        path = os.path.join(folder, file + ".npy")
        if os.path.exists(path):
            return path
    return None


def run_kiln(args, row, onnx_path, input_files, out_names, warmup, iterations, graph, folder):
    """One `kiln bench` run; returns a dict with cmd, rc, json (or error) and outputs."""
    tag = "graph" if graph else "nograph"
    out_dir = os.path.join(folder, f"kiln_out_{tag}")
    json_path = os.path.join(folder, f"kiln_{tag}.json")
    for stale in [json_path] + [os.path.join(out_dir, f) for f in
                                (os.listdir(out_dir) if os.path.isdir(out_dir) else [])]:
        if os.path.isfile(stale):
            os.remove(stale)
    cmd = [args.kiln, "bench", onnx_path] + (["--fp16"] if row.fp16 else [])
    cmd += ["--batch", str(row.batch), "--warmup", str(warmup), "--iterations", str(iterations)]
    for name, path in input_files.items():
        cmd += ["--input", f"{name}={path}"]
    cmd += ["--output-dir", out_dir, "--json", json_path] + (["--cuda-graph"] if graph else [])
    if not args.no_timing_cache:  # the --cuda-graph run reuses the tactics the first run timed
        cmd += ["--timing-cache", os.path.join(args.work, "kiln-timing.cache")]
    cmd += args.kiln_arg
    res = {"cmd": shlex.join(cmd), "cuda_graph": graph}
    t0 = time.perf_counter()
    timeout = max(10.0, min(args.kiln_timeout, args.deadline_at - t0))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        res["error"] = f"kiln bench{' --cuda-graph' if graph else ''} timed out after {timeout:.0f} s: {tail(err)}"
        return res
    except OSError as e:
        res["error"] = f"cannot run {args.kiln}: {e}"
        return res
    res["rc"], res["wall_s"] = p.returncode, time.perf_counter() - t0
    res["stderr_tail"] = tail(p.stderr, 2000)
    if p.returncode != 0:
        res["error"] = f"kiln bench{' --cuda-graph' if graph else ''} exit {p.returncode}: " \
                       f"{tail(p.stderr or p.stdout)}"
        return res
    try:
        with open(json_path) as f:
            res["json"] = json.load(f)
    except (OSError, ValueError) as e:
        res["error"] = f"kiln bench wrote no readable JSON ({e})"
        return res
    outs = {}
    for name in out_names:
        path = output_file(out_dir, name)
        if path is None:
            res["error"] = f"kiln bench wrote no {name}.npy in {out_dir}"
            return res
        outs[name] = np.load(path)
    res["outputs"] = outs
    return res


# ---- one row -----------------------------------------------------------------------------------
def bench_row(args, row, exports, r):
    """Fills r (which keeps what was measured when a later step throws)."""
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batch1 = row.batch == 1
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 20)
    iterations = args.iterations if args.iterations is not None else \
        ((100 if args.quick else 300) if batch1 else (30 if args.quick else 100))
    budget = args.max_measure_s * (0.5 if args.quick else 1.0)
    folder = os.path.join(args.work, row.id)
    os.makedirs(folder, exist_ok=True)
    note = r["notes"].append

    model, inputs, out_names = build(row)
    model = model.to(dev)
    x = {k: v.to(dev) for k, v in inputs.items()}
    input_files = {}
    for name, v in inputs.items():
        input_files[name] = os.path.join(folder, f"input_{name}.npy")
        np.save(input_files[name], v.numpy().astype(np.float32))

    # ONNX, once per model and batch, fp32
    onnx_path = os.path.join(args.work, "onnx", row.export_key + ".onnx")
    if row.export_key not in exports:
        if args.reuse_exports and os.path.exists(onnx_path):
            exports[row.export_key] = (list(inputs), out_names)
            log(f"  reusing {onnx_path}")
        else:
            t0 = time.perf_counter()
            os.makedirs(os.path.dirname(onnx_path), exist_ok=True)
            with torch.no_grad():
                exports[row.export_key] = export(model, x, out_names, onnx_path, args.exporter)
            log(f"  exported {onnx_path} in {time.perf_counter() - t0:.1f} s")
    onnx_inputs, onnx_outputs = exports[row.export_key]
    r["onnx"] = onnx_path
    if sorted(onnx_inputs) != sorted(inputs):
        note(f"ONNX inputs {onnx_inputs} differ from the model's {list(inputs)}")
    input_files = {o: input_files[i] for o, i in zip(onnx_inputs, inputs)}

    with torch.inference_mode():
        ref32 = {k: v.float().cpu().numpy() for k, v in zip(out_names, as_tuple(model(*x.values())))}
    for k, v in ref32.items():
        np.save(os.path.join(folder, f"torch_fp32_{k}.npy"), v)
    if row.fp16:
        if cuda:
            model = model.half()
            x = {k: v.half() for k, v in x.items()}
        else:
            note("torch has no fp16 convolution/LSTM on the CPU: torch ran fp32")
    if args.channels_last and row.model not in ("charrnn",):
        model = model.to(memory_format=torch.channels_last)
        x = {k: v.contiguous(memory_format=torch.channels_last) for k, v in x.items()}
    args_x = tuple(x.values())

    def forward():
        return model(*args_x)

    with torch.inference_mode():
        ref = {k: v.float().cpu().numpy() for k, v in zip(out_names, as_tuple(forward()))}
        for k, v in ref.items():
            np.save(os.path.join(folder, f"torch_{k}.npy"), v)
        if row.fp16 and cuda:
            r["torch_fp16_err_vs_fp32"] = worst_err(ref, ref32)

        # eager
        log(f"  torch eager: warmup {warmup}, up to {iterations} iterations")
        if cuda:
            gc.collect()
            sync()
            torch.cuda.reset_peak_memory_stats()
        r["torch_eager"] = time_calls(forward, sync, warmup, iterations, budget)
        if cuda:
            r["torch_eager_peak_bytes"] = torch.cuda.max_memory_allocated()

        # CUDA graph
        if cuda:
            log("  torch CUDA graph")
            try:
                sync()
                torch.cuda.reset_peak_memory_stats()
                g, static_out = cuda_graph(model, args_x)
                r["torch_graph"] = time_calls(g.replay, sync, warmup, iterations, budget)
                r["torch_graph_peak_bytes"] = torch.cuda.max_memory_allocated()
                r["torch_graph_vs_eager_err"] = worst_err(  # the replay computes what eager does
                    {k: v.float().cpu().numpy() for k, v in zip(out_names, as_tuple(static_out))}, ref)
                g = static_out = None
            except Exception as e:  # noqa: BLE001  (a capture failure is a result, not a crash)
                note(f"torch CUDA graph failed: {tail(str(e), 200)}")
        else:
            note("no CUDA graph on the CPU")

    # torch.compile, ResNet-50 fp16 only
    if args.compile and cuda and row.model == "resnet50" and row.fp16:
        log(f"  torch.compile(mode={args.compile_mode})")
        try:
            compiled = torch.compile(model, mode=args.compile_mode)
            with torch.inference_mode():
                t0 = time.perf_counter()
                compiled(*args_x)
                sync()
                r["torch_compile_first_call_s"] = time.perf_counter() - t0
                r["torch_compile"] = time_calls(lambda: compiled(*args_x), sync, warmup, iterations, budget)
            del compiled
        except Exception as e:  # noqa: BLE001
            note(f"torch.compile failed: {tail(str(e), 200)}")

    model = x = args_x = None  # frees torch's device memory before kiln runs
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    # kiln
    if args.skip_kiln:
        note("kiln skipped (--skip-kiln)")
        return
    # kiln's iteration count from torch's time, so that a slow kiln still fits the budget
    torch_ms = min(r[k]["median"] for k in ("torch_eager", "torch_graph") if k in r)
    k_iter = min(iterations, max(10, int(budget * 1e3 / max(torch_ms, 1e-3))))
    runs = []
    for graph in (False, True):
        log(f"  kiln bench{' --cuda-graph' if graph else ''}: warmup {warmup}, {k_iter} iterations")
        res = run_kiln(args, row, onnx_path, input_files, onnx_outputs, warmup, k_iter, graph, folder)
        if "error" in res:
            first = runs[0].get("error", "") if runs else ""
            same = first and first.split(": ", 1)[-1] == res["error"].split(": ", 1)[-1]
            note("kiln bench --cuda-graph: the same error" if same else res["error"])
        else:
            want = {o: ref[i] for o, i in zip(onnx_outputs, out_names)}
            try:
                res["max_rel_err"] = worst_err(res["outputs"], want)
                if row.fp16:
                    res["max_rel_err_vs_fp32"] = worst_err(
                        res["outputs"], {o: ref32[i] for o, i in zip(onnx_outputs, out_names)})
            except ValueError as e:
                note(f"kiln output: {e}")
        res.pop("outputs", None)
        runs.append(res)
    r["kiln_runs"] = runs
    ok = [x for x in runs if "json" in x]
    if ok:
        best = min(ok, key=lambda x: x["json"]["latency_ms"]["median"])
        j = best["json"]
        r["kiln_ms"] = j["latency_ms"]["median"]
        r["kiln_p90_ms"] = j["latency_ms"].get("p90")
        r["kiln_best_cuda_graph"] = best["cuda_graph"]
        r["kiln_peak_bytes"] = max((x["json"].get("memory_bytes") or {}).get("peak") or 0 for x in ok) or None
        errs = [x["max_rel_err"] for x in ok if "max_rel_err" in x]
        if errs:
            r["max_rel_err"] = max(errs)
        errs32 = [x["max_rel_err_vs_fp32"] for x in ok if "max_rel_err_vs_fp32" in x]
        if errs32:
            r["max_rel_err_vs_fp32"] = max(errs32)
            t16 = r.get("torch_fp16_err_vs_fp32")
            note(f"vs torch fp32: kiln {max(errs32):.2e}" + (f", torch fp16 {t16:.2e}" if t16 is not None else ""))
        if "torch_eager" in r:
            r["speedup_vs_eager"] = r["torch_eager"]["median"] / r["kiln_ms"]
        if "torch_graph" in r:
            r["speedup_vs_graph"] = r["torch_graph"]["median"] / r["kiln_ms"]


# ---- report ------------------------------------------------------------------------------------
def run_text(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(args):
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "command": shlex.join([sys.executable] + sys.argv),
           "host": platform.node(), "python": platform.python_version(),
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": args.device, "exporter": args.exporter}
    try:
        import torchvision
        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if onnx is not None:
        env["onnx"] = onnx.__version__
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["cudnn"] = torch.backends.cudnn.version()
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        env["tf32_conv"] = torch.backends.cudnn.allow_tf32
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        smi = run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                        "--format=csv,noheader"])
        env["nvidia_smi"] = smi.splitlines()[0] if smi else "nvidia-smi not available"
        parts = [p.strip() for p in env["nvidia_smi"].split(",")]
        if len(parts) >= 2:
            env["driver"] = parts[1]
    else:
        env["cpu"] = platform.processor() or platform.machine()
        env["threads"] = torch.get_num_threads()
    return env


def fmt_ms(v):
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def fmt_mib(v):
    return "-" if not v else f"{v / 2**20:.0f}" if v >= 10 * 2**20 else f"{v / 2**20:.1f}"


def fmt_x(v):
    return "-" if v is None else f"{v:.2f}x"


def fmt_err(v):
    return "-" if v is None else f"{v:.2e}"


def markdown(env, rows, targets, compile_col):
    cols = ["row", "batch", "torch eager ms", "torch graph ms"] + (["torch compile ms"] if compile_col else []) + \
           ["kiln ms", "speedup vs eager", "speedup vs graph", "torch peak MiB", "kiln peak MiB",
            "max rel err", "notes"]
    lines = ["# kiln vs PyTorch", ""]
    lines.append(f"- date: {env['date']}")
    if env["device"] == "cuda":
        lines.append(f"- GPU: {env.get('gpu')} (nvidia-smi: {env.get('nvidia_smi')})")
        lines.append(f"- driver {env.get('driver', '?')}, CUDA {env['cuda']}, cuDNN {env.get('cudnn')}, "
                     f"cudnn.benchmark {env.get('cudnn_benchmark')}, TF32 conv {env.get('tf32_conv')} "
                     f"matmul {env.get('tf32_matmul')}")
    else:
        lines.append(f"- device: CPU ({env.get('cpu')}, {env.get('threads')} threads)")
    lines.append(f"- PyTorch {env['torch']}, torchvision {env.get('torchvision', '-')}, "
                 f"onnx {env.get('onnx', '-')}, python {env['python']}, exporter {env['exporter']}")
    if env.get("kiln_device") or env.get("kiln_versions"):
        lines.append(f"- kiln: {env.get('kiln_device', '')} {json.dumps(env.get('kiln_versions', ''))}")
    lines.append(f"- command: `{env['command']}`")
    lines.append("- ms: median latency per inference (host-timed, synchronised); p90 in the JSON. "
                 "kiln ms: the better of `kiln bench` with and without --cuda-graph. "
                 "speedup = torch ms / kiln ms. max rel err = max|kiln - torch| / max|torch|.")
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        get = lambda k: (r.get(k) or {}).get("median")  # noqa: E731
        cells = [r["row"], str(r["batch"]), fmt_ms(get("torch_eager")), fmt_ms(get("torch_graph"))]
        if compile_col:
            cells.append(fmt_ms(get("torch_compile")))
        cells += [fmt_ms(r.get("kiln_ms")), fmt_x(r.get("speedup_vs_eager")), fmt_x(r.get("speedup_vs_graph")),
                  fmt_mib(r.get("torch_eager_peak_bytes")), fmt_mib(r.get("kiln_peak_bytes")),
                  fmt_err(r.get("max_rel_err")),
                  "; ".join(r["notes"]).replace("|", "\\|").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Targets:", ""] + [f"- {t['verdict']}: {t['target']} ({t['detail']})" for t in targets]
    return "\n".join(lines) + "\n"


def evaluate_targets(rows, skip_kiln):
    by_id = {r["row"]: r for r in rows}
    targets = []

    def add(target, verdict, detail):
        targets.append({"target": target, "verdict": verdict, "detail": detail})

    if skip_kiln:
        add("kiln against torch", "SKIP", "--skip-kiln")
        return targets
    if rows:
        misses, eager_only = [], []
        for r in rows:  # against torch's graph; its eager time where the capture failed
            speedup = r.get("speedup_vs_graph")
            if speedup is None and r.get("kiln_ms") and "torch_eager" in r:
                speedup = r.get("speedup_vs_eager")
                eager_only.append(r["row"])
            if speedup is None or speedup < 1.0:
                misses.append(f"{r['row']} {fmt_x(speedup)}")
        detail = ("below or unmeasured: " + ", ".join(misses)) if misses else f"all {len(rows)} rows"
        if eager_only:
            detail += "; against torch eager (no torch graph) on " + ", ".join(eager_only)
        add("kiln >= torch CUDA graph on every row", "MISS" if misses else "PASS", detail)
    r = by_id.get("resnet50-fp16-b256")
    if r is None:
        add("resnet50-fp16-b256 throughput >= 1.5x torch", "SKIP", "row not run")
    else:
        torch_ms = [r[k]["median"] for k in ("torch_eager", "torch_graph") if k in r]
        if r.get("kiln_ms") and torch_ms:
            ratio = min(torch_ms) / r["kiln_ms"]
            extra = f", vs torch.compile {r['torch_compile']['median'] / r['kiln_ms']:.2f}x" \
                if "torch_compile" in r else ""
            add("resnet50-fp16-b256 throughput >= 1.5x torch", "PASS" if ratio >= 1.5 else "MISS",
                f"{ratio:.2f}x vs the better of torch eager and graph: kiln "
                f"{256e3 / r['kiln_ms']:.0f}/s, torch {256e3 / min(torch_ms):.0f}/s{extra}")
        else:
            add("resnet50-fp16-b256 throughput >= 1.5x torch", "MISS", "kiln or torch not measured")
    r = by_id.get("resnet50-fp16-b1")
    if r is None:
        add("resnet50-fp16-b1 kiln < 0.6 ms", "SKIP", "row not run")
    elif r.get("kiln_ms") is None:
        add("resnet50-fp16-b1 kiln < 0.6 ms", "MISS", "kiln not measured")
    else:
        add("resnet50-fp16-b1 kiln < 0.6 ms", "PASS" if r["kiln_ms"] < 0.6 else "MISS",
            f"kiln {r['kiln_ms']:.3f} ms")
    return targets


def write_reports(args, env, results):
    targets = evaluate_targets(results, args.skip_kiln)
    text = markdown(env, results, targets, args.compile)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": results, "targets": targets}, f, indent=1, default=str)
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", help="comma-separated row ids (default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="print the row ids and exit")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: a smoke test of export and timing code (no CUDA graph, no memory)")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "tools", "kiln"), help="the kiln CLI")
    ap.add_argument("--skip-kiln", action="store_true", help="time torch only")
    ap.add_argument("--kiln-arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for every `kiln bench` call (repeatable)")
    ap.add_argument("--no-timing-cache", action="store_true",
                    help="do not pass `--timing-cache WORK/kiln-timing.cache` to kiln (every run times its tactics)")
    ap.add_argument("--kiln-timeout", type=float, default=180, help="seconds per kiln call (180)")
    ap.add_argument("--deadline-s", type=float, default=540,
                    help="rows not started this many seconds after the start are skipped, so that the "
                         "table is printed inside a 10-minute call (540; 0: no limit)")
    ap.add_argument("--work", default="/tmp/kiln-bench", help="ONNX files, inputs, outputs (/tmp/kiln-bench)")
    ap.add_argument("--reuse-exports", action="store_true",
                    help="use ONNX files already in --work/onnx instead of exporting again")
    ap.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"],
                    help="torchscript: torch.onnx.export(dynamo=False), opset 17 (default); "
                         "dynamo: torch >= 2.6 with onnxscript, opset 18, external data")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table here")
    ap.add_argument("--json", metavar="FILE", help="write every measurement here")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a rough run in about half the time)")
    ap.add_argument("--warmup", type=int, help="warmup iterations (20; --quick 5)")
    ap.add_argument("--iterations", type=int,
                    help="timed iterations (batch 1: 300, larger: 100; --quick 100 and 30)")
    ap.add_argument("--max-measure-s", type=float, default=4.0,
                    help="cap on the seconds of one timing loop; fewer iterations when it would take longer (4)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on the ResNet-50 fp16 rows")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode (default; max-autotune-no-cudagraphs tunes longer, minutes per row)")
    ap.add_argument("--channels-last", action="store_true", help="torch CNNs in channels_last (NHWC)")
    ap.add_argument("--no-cudnn-benchmark", action="store_true",
                    help="leave torch.backends.cudnn.benchmark off (on by default: torch picks tuned algorithms)")
    ap.add_argument("--tf32", choices=["default", "on", "off"], default="off",
                    help="torch's TF32 for fp32 rows (default off: kiln computes FP32 without TF32 unless asked, so both run the same math; \"default\" keeps torch's own: conv on, matmul off)")
    args = ap.parse_args()

    if args.list:
        for r in ROWS:
            print(f"{r.id:24} {r.model:13} {'fp16' if r.fp16 else 'fp32'} batch {r.batch}"
                  + (f", {r.steps} steps" if r.steps else ""))
        return 0
    rows = ROWS
    if args.rows:
        ids = [i for i in args.rows.split(",") if i]
        unknown = [i for i in ids if i not in ROW_BY_ID]
        if unknown:
            ap.error(f"unknown row(s) {unknown}; --list prints the ids")
        rows = [ROW_BY_ID[i] for i in ids]
        if not rows:
            ap.error("--rows names no row; --list prints the ids")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("CUDA is not available to this torch; use --device cpu for a smoke test")
    if not args.skip_kiln and not os.access(args.kiln, os.X_OK):
        ap.error(f"no kiln CLI at {args.kiln} (give --kiln PATH, or --skip-kiln)")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
        if args.tf32 != "default":
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    else:
        torch.set_num_threads(max(1, min(8, (os.cpu_count() or 2) // 2)))
    os.makedirs(args.work, exist_ok=True)
    env = environment(args)
    log(f"bench: {len(rows)} row(s) on {env.get('gpu', 'CPU')}, torch {torch.__version__}, work dir {args.work}")

    results, exports, t_start = [], {}, time.perf_counter()
    args.deadline_at = t_start + args.deadline_s if args.deadline_s > 0 else float("inf")
    for i, row in enumerate(rows):
        log(f"[{i + 1}/{len(rows)}] {row.id} ({time.perf_counter() - t_start:.0f} s elapsed)")
        t0 = time.perf_counter()
        r = {"row": row.id, "model": row.model, "precision": "fp16" if row.fp16 else "fp32",
             "batch": row.batch, "steps": row.steps or None, "notes": []}
        if t0 > args.deadline_at:
            r["notes"].append(f"not run: past --deadline-s {args.deadline_s:g}")
            results.append(r)
            log("  skipped (past --deadline-s)")
            continue
        try:
            bench_row(args, row, exports, r)
        except Exception as e:  # noqa: BLE001  (one broken row must not end the suite)
            r["notes"].append(f"row failed: {type(e).__name__}: {tail(str(e), 300)}")
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
        r["row_seconds"] = time.perf_counter() - t0
        for run in r.get("kiln_runs", []):
            j = run.get("json") or {}
            env.setdefault("kiln_device", j.get("device"))
            env.setdefault("kiln_versions", j.get("versions"))
        results.append(r)
        e, g = (r.get("torch_eager") or {}).get("median"), (r.get("torch_graph") or {}).get("median")
        log(f"  done in {r['row_seconds']:.1f} s: torch eager {fmt_ms(e)} ms, graph {fmt_ms(g)} ms, "
            f"kiln {fmt_ms(r.get('kiln_ms'))} ms, err {fmt_err(r.get('max_rel_err'))}"
            + (f"; {'; '.join(r['notes'])}" if r["notes"] else ""))
        env["total_seconds"] = time.perf_counter() - t_start
        text = write_reports(args, env, results)  # after every row: a killed run keeps its rows
    print(text, end="", flush=True)
    log(f"bench: {len(results)} row(s) in {env['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
