#!/usr/bin/python3
"""kiln against PyTorch's best, side by side: latency, peak device memory and accuracy per network.

    python3 tools/bench.py [--rows ID,...] [--kiln build/tools/kiln] [--work /tmp/kiln-bench]
                           [--markdown FILE] [--json FILE] [--quick] [--deadline-s 480]
                           [--no-compile] [--compile-timeout-s 150] [--memory-format auto]
    python3 tools/bench.py --list
    /usr/bin/python3 tools/bench.py --dry-run --rows ID,...   # no GPU: export, kiln build, the plan

Rows are in tools/bench_models.py. Each builds a PyTorch model (random weights from a fixed seed),
exports it ONCE to ONNX in fp32 (TorchScript exporter, opset 17; the row's fixed shape, or dynamic
dims for the dynamic-shape rows) into --work, saves a random input as .npy, then:
  torch   under inference_mode, cudnn.benchmark on, TF32 off (--tf32), fp16/bf16 rows in that
          dtype; in every memory format worth trying (--memory-format auto: contiguous and
          channels_last for 16-bit convolutional rows, contiguous otherwise):
            eager       each call timed on the host (perf_counter around call + synchronize)
            CUDA graph  torch.cuda.CUDAGraph captured once, replay() timed the same way
          each keeps its fastest memory format. Then, after every row has its table line, as
          long as --deadline-s allows (rows in the order where kiln's lead is smallest first):
            compile     torch.compile(mode=--compile-mode, max-autotune by default) in a child
                        process (killed after --compile-timeout-s), in the memory format that won
                        eager/graph; its first call is the compile time, reported; a failure or
                        timeout is a note in the row.
          best PyTorch = the fastest of the three; "vs best PyTorch" = best / kiln.
  kiln    `KILN bench MODEL.onnx [--fp16|--bf16] --batch B --warmup W --iterations N --input
          NAME=X.npy --output-dir DIR --json FILE` without and with --cuda-graph; kiln's time is
          the better median of the two, its peak memory is memory_bytes.peak. Dynamic-shape rows:
          the same for a plan built once with --min/--opt/--max-shapes (`kiln bench PLAN
          --shapes ...`) against a static engine at the row's shape (`kiln bench MODEL.onnx
          --shapes ...`).
  error   max|kiln - torch| / max|torch| over every output, on the same input, against torch in
          the row's precision (16-bit rows also against torch fp32, in the notes).
Rows that kiln cannot run (a detector whose post-processing runs on the host, BF16 without `kiln bench --bf16`) are
listed as not run with the reason. A row whose kiln run fails gets kiln's stderr tail in its
notes; the suite goes on. The table and JSON are rewritten after every row and every compile, and
each finished row is printed to stdout, so a run that is killed keeps what it measured. Rows that
miss against PyTorch get `kiln profile --top 10 --roofline` under the table. See bench/README.md.
"""
import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import bench_models as bm  # noqa: E402  (tools/bench_models.py: rows, models, export)
from bench_report import (evaluate_targets, finish_row, fmt_ms, markdown,  # noqa: E402
                          table_head, table_line)
from bench_models import ROWS, ROW_BY_ID  # noqa: E402

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
KILN_PRECISION = {"fp32": [], "fp16": ["--fp16"], "bf16": ["--bf16"]}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def tail(text, n=400):
    text = " ".join((text or "").strip().split())
    return text if len(text) <= n else "..." + text[-n:]


def run_text(cmd, timeout=30):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def set_backends(args):
    """cudnn.benchmark and TF32 as asked; the same in the torch.compile child process."""
    if args.device != "cuda":
        return
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    if args.tf32 != "default":  # the legacy switches: torch 1.13 to 2.11 honour them
        on = args.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on  # (Inductor's matmul templates read it too)


def tf32_state():
    try:
        return {"conv": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}
    except RuntimeError as e:  # torch >= 2.9 when the new fp32_precision API was used
        return {"error": str(e)}


# ---- what this kiln can do ---------------------------------------------------------------------
class KilnCaps:
    """Read from `kiln bench --help` and `kiln ops`, so that the rows follow the binary."""

    def __init__(self, kiln):
        self.bench_help = run_text([kiln, "bench", "--help"]) if kiln else ""
        self.gpu_ops = set()
        for line in (run_text([kiln, "ops"]) if kiln else "").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 4 and parts[3] == "yes":
                self.gpu_ops.add(parts[0])
        self.known = bool(self.bench_help)

    @property
    def bf16(self):
        return "--bf16" in self.bench_help

    def transformer_opset(self):
        """opset 17 writes LayerNormalization; where kiln's GPU has no step for it, opset 16
        writes its decomposed form (ReduceMean, Sub, Pow, Sqrt, Div, Mul, Add)."""
        return bm.OPSET if not self.known or "LayerNormalization" in self.gpu_ops else 16

    def not_run(self, row):
        if row.blocked:
            return row.blocked
        if row.precision == "bf16" and self.known and not self.bf16:
            return "kiln has no --bf16 yet (`kiln bench --help`; issue 15)"
        return None


# ---- torch timing ------------------------------------------------------------------------------
def summarize(times_s):
    ms = np.array(times_s) * 1e3
    return {"n": int(ms.size), "min": float(ms.min()), "mean": float(ms.mean()),
            "median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99))}


def time_calls(fn, sync, warmup, iterations, budget_s):
    """Latency per call: warmup calls, then up to `iterations` calls (fewer when the estimate
    from the warmup says they would take more than budget_s), each synchronised."""
    def timed(count):
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return times

    warm = timed(warmup)
    est = float(np.median(warm[len(warm) // 2:])) if warm else 0.0
    n = iterations if est <= 0 else min(iterations, max(10, int(budget_s / est)))
    return summarize(timed(n))


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


def as_tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def numpy_outputs(names, y):
    return {k: v.float().cpu().numpy() for k, v in zip(names, as_tuple(y))}


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


def counts(args, row):
    """(warmup, iterations, seconds one timing loop may take) for a row."""
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 20)
    iterations = args.iterations if args.iterations is not None else \
        ((100 if args.quick else 300) if row.batch == 1 else (30 if args.quick else 100))
    return warmup, iterations, args.max_measure_s * (0.5 if args.quick else 1.0)


def memory_formats(args, row):
    if not row.conv:
        return ["contiguous"]
    if args.memory_format == "auto":
        return ["contiguous", "channels_last"] if row.half else ["contiguous"]
    return ["contiguous", "channels_last"] if args.memory_format == "both" else [args.memory_format]


def to_format(model, x, fmt):
    """The model and its 4-D float inputs in memory format fmt (modules convert in place)."""
    model = model.to(memory_format=FORMATS[fmt])
    x = {k: v.contiguous(memory_format=FORMATS[fmt]) if v.dim() == 4 and v.is_floating_point() else v
         for k, v in x.items()}
    return model, x


def on_device(model, inputs, dev, dtype):
    """The model and its float inputs in dtype on dev (the model converts in place)."""
    model = model.to(dev, dtype)
    x = {k: v.to(dev, dtype) if v.is_floating_point() else v.to(dev) for k, v in inputs.items()}
    return model, x


# ---- kiln --------------------------------------------------------------------------------------
def output_file(folder, name):
    for file in (name, "".join(c if c.isalnum() or c in "_-." else "_" for c in name)):
        path = os.path.join(folder, file + ".npy")
        if os.path.exists(path):
            return path
    return None


def time_left(args, at):
    return at - time.perf_counter()


def run_proc(cmd, timeout, log_path=None):
    """Runs cmd in its own process group; on timeout kills the whole group (torch.compile's
    worker processes too). Returns (rc or None on timeout, output text)."""
    out = open(log_path, "w+") if log_path else subprocess.PIPE
    try:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.PIPE,
                             text=True, start_new_session=True)
        try:
            so, se = p.communicate(timeout=max(1.0, timeout))
            rc = p.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            so, se = p.communicate()
            rc = None
        if log_path:
            out.seek(0)
            return rc, out.read()
        return rc, (se or "") + (so or "")
    finally:
        if log_path:
            out.close()


def run_kiln(args, head, tag, input_files, out_names, warmup, iterations, graph, folder, cache):
    """One `kiln bench HEAD...` run (HEAD: the model or plan and its precision/shape flags);
    returns a dict with cmd, rc, json (or error) and outputs."""
    name = f"{tag}_{'graph' if graph else 'nograph'}"
    out_dir = os.path.join(folder, f"kiln_out_{name}")
    json_path = os.path.join(folder, f"kiln_{name}.json")
    for stale in [json_path] + [os.path.join(out_dir, f) for f in
                                (os.listdir(out_dir) if os.path.isdir(out_dir) else [])]:
        if os.path.isfile(stale):
            os.remove(stale)
    cmd = [args.kiln, "bench"] + head + ["--warmup", str(warmup), "--iterations", str(iterations)]
    for n, path in input_files.items():
        cmd += ["--input", f"{n}={path}"]
    cmd += ["--output-dir", out_dir, "--json", json_path] + (["--cuda-graph"] if graph else [])
    if cache and not args.no_timing_cache:  # the --cuda-graph run reuses the tactics the first run timed
        cmd += ["--timing-cache", os.path.join(args.work, "kiln-timing.cache")]
    cmd += args.kiln_arg
    what = f"kiln bench ({tag}){' --cuda-graph' if graph else ''}"
    res = {"cmd": shlex.join(cmd), "cuda_graph": graph, "engine": tag}
    if args.dry_run:
        return res
    t0 = time.perf_counter()
    timeout = min(args.kiln_timeout, time_left(args, args.end_at))
    if timeout < 5:
        res["error"] = f"{what} not run: past --deadline-s + --grace-s"
        return res
    try:
        rc, text = run_proc(cmd, timeout)
    except OSError as e:
        res["error"] = f"cannot run {args.kiln}: {e}"
        return res
    res["wall_s"] = time.perf_counter() - t0
    if rc is None:
        res["error"] = f"{what} timed out after {timeout:.0f} s: {tail(text)}"
        return res
    res["rc"], res["output_tail"] = rc, tail(text, 2000)
    if rc != 0:
        res["error"] = f"{what} exit {rc}: {tail(text)}"
        return res
    try:
        with open(json_path) as f:
            res["json"] = json.load(f)
    except (OSError, ValueError) as e:
        res["error"] = f"{what} wrote no readable JSON ({e})"
        return res
    outs = {}
    for n in out_names:
        path = output_file(out_dir, n)
        if path is None:
            res["error"] = f"{what} wrote no {n}.npy in {out_dir}"
            return res
        outs[n] = np.load(path)
    res["outputs"] = outs
    return res


def kiln_engine(args, row, r, head, tag, input_files, onnx_outputs, ref, ref32, k_iter, cache):
    """`kiln bench` without and with --cuda-graph for one engine; returns the better run's JSON
    (or None) and records both runs in r['kiln_runs']."""
    warmup = counts(args, row)[0]
    runs = []
    for graph in (False, True):
        log(f"  kiln bench ({tag}){' --cuda-graph' if graph else ''}: warmup {warmup}, {k_iter} iterations")
        res = run_kiln(args, head, tag, input_files, onnx_outputs, warmup, k_iter, graph,
                       os.path.join(args.work, row.id), cache)
        if "error" in res:
            first = runs[0].get("error", "") if runs else ""
            same = first and first.split(": ", 1)[-1] == res["error"].split(": ", 1)[-1]
            r["notes"].append(f"kiln bench ({tag}) --cuda-graph: the same error" if same else res["error"])
        elif "outputs" in res:
            try:  # ref, ref32: torch's outputs by the ONNX file's output names
                res["max_rel_err"] = worst_err(res["outputs"], ref)
                if row.half:
                    res["max_rel_err_vs_fp32"] = worst_err(res["outputs"], ref32)
            except ValueError as e:
                r["notes"].append(f"kiln ({tag}) output: {e}")
        res.pop("outputs", None)
        runs.append(res)
    r.setdefault("kiln_runs", []).extend(runs)
    ok = [x for x in runs if "json" in x]
    return (min(ok, key=lambda x: x["json"]["latency_ms"]["median"]) if ok else None), runs


def dynamic_plan(args, row, onnx_path, r):
    """Builds the row's dynamic plan once (every dynamic row of a model and precision shares it);
    returns its path or None (with a note)."""
    plan = os.path.join(args.work, "onnx", f"{row.export_key}-{row.precision}.plan")
    key = (onnx_path, row.precision)
    if not args.kiln or args.skip_kiln:
        r["notes"].append("no dynamic plan: no kiln CLI (or --skip-kiln)")
        return None
    if key not in args.plans:
        cmd = [args.kiln, "build", onnx_path] + KILN_PRECISION[row.precision]
        for which in ("min", "opt", "max"):
            cmd += [f"--{which}-shapes", "x:" + "x".join(str(d) for d in bm.DYNAMIC_PROFILE[which])]
        cmd += ["--save", plan]
        info = {"cmd": shlex.join(cmd)}
        if args.reuse_exports and os.path.exists(plan) and not args.dry_run:
            info["reused"] = True
        else:
            if os.path.exists(plan):
                os.remove(plan)
            log(f"  {info['cmd']}")
            t0 = time.perf_counter()
            rc, text = run_proc(cmd, min(args.kiln_timeout, time_left(args, args.end_at)))
            info.update(seconds=time.perf_counter() - t0, rc=rc, output_tail=tail(text, 600))
            if rc != 0:
                info["error"] = f"kiln build (dynamic plan) {'timed out' if rc is None else f'exit {rc}'}: {tail(text)}"
        args.plans[key] = info
    info = args.plans[key]
    r["dynamic_plan"] = info
    if "error" in info:
        r["notes"].append(info["error"])
        return None
    return plan


# ---- one row -----------------------------------------------------------------------------------
INT8_CALIBRATOR = "percentile"  # entropy clips this random-weight ResNet-50 too hard (bench/RESULTS.md)
INT8_CALIB_BATCHES = 8


QUANTIZED = ("int8", "fp8")  # rows whose plan comes from quantized_plan (calibrated by kiln)


def quantized_plan(args, row, onnx_path, onnx_inputs, inputs, r):
    """The row's INT8 (or FP8 E4M3) plan for cuda-fp16: its scales come from a calibration cache
    that kiln writes once per model (`kiln build --int8` on the CPU reference over
    INT8_CALIB_BATCHES batches of one sample drawn as the row's inputs are), through the model's
    batch-1 export (the cache holds per-tensor ranges, the same at every batch, and serves FP8 as
    well); then the row's own export is built with that cache and --int8 or --fp8. Returns the
    plan's path or None (with a note)."""
    if not args.kiln or args.skip_kiln:
        r["notes"].append(f"no {row.precision.upper()} plan: no kiln CLI (or --skip-kiln)")
        return None
    work = args.work
    cache = os.path.join(work, f"{row.model}-int8-{INT8_CALIBRATOR}.cache")
    plan = os.path.join(work, "onnx", f"{row.export_key}-{row.precision}.plan")
    info = r["int8_plan"] = {"calibrator": INT8_CALIBRATOR, "cache": cache}
    steps = []
    if not os.path.exists(cache):
        b1 = os.path.join(work, "onnx", f"{row.model}-b1.onnx")
        if not os.path.exists(b1):  # bench_row exports it for every INT8 row
            info["error"] = f"no INT8 calibration: {b1} is missing"
        calib = os.path.join(work, f"calib-{row.model}")
        os.makedirs(calib, exist_ok=True)
        gen = torch.Generator().manual_seed(bm.SEED + 100)
        (name, v), = inputs.items()
        for i in range(INT8_CALIB_BATCHES):
            np.save(os.path.join(calib, f"{i}.npy"),
                    torch.randn((1,) + tuple(v.shape[1:]), generator=gen).numpy().astype(np.float32))
        steps.append([args.kiln, "build", b1, "--int8", "--calibrator", INT8_CALIBRATOR, "--calib-data", calib,
                      "--calib-cache", cache])
    steps.append([args.kiln, "build", onnx_path, "--fp16", f"--{row.precision}", "--calib-cache", cache,
                  "--save", plan])
    for cmd in steps:
        if "error" in info:
            break
        info.setdefault("cmds", []).append(shlex.join(cmd))  # a dry run builds too (no GPU needed)
        log(f"  {shlex.join(cmd)}")
        t0 = time.perf_counter()
        rc, text = run_proc(cmd, min(args.kiln_timeout, time_left(args, args.end_at)))
        info.setdefault("seconds", []).append(time.perf_counter() - t0)
        info.setdefault("output_tails", []).append(tail(text, 1500))
        if rc != 0:
            info["error"] = (f"kiln build --{row.precision} {'timed out' if rc is None else f'exit {rc}'}: "
                             f"{tail(text)}")
    if "error" in info:
        r["notes"].append(info["error"])
        return None
    return plan


def export_row(args, row, model, inputs, out_names, exports, r):
    """The row's ONNX file (exported once per model and shape); returns (path, [input names],
    [output names]) as in the file."""
    opset = args.caps.transformer_opset() if row.model in bm.TRANSFORMERS else bm.OPSET
    name = row.export_key + (f"-opset{opset}" if opset != bm.OPSET else "")
    if opset != bm.OPSET:
        r["notes"].append(f"ONNX opset {opset}: LayerNormalization decomposed, kiln's GPU has no step for it")
    onnx_path = os.path.join(args.work, "onnx", name + ".onnx")
    if name not in exports:
        if args.reuse_exports and os.path.exists(onnx_path):
            exports[name] = (list(inputs), out_names)
            log(f"  reusing {onnx_path}")
        else:
            t0 = time.perf_counter()
            os.makedirs(os.path.dirname(onnx_path), exist_ok=True)
            if row.dynamic:  # traced at the profile's opt shape, as tools/dynamic_exports.py does
                inputs = {k: torch.randn(bm.DYNAMIC_PROFILE["opt"], generator=torch.Generator().manual_seed(bm.SEED))
                          .to(v.device) for k, v in inputs.items()}
            exports[name] = bm.export(row, model, inputs, out_names, onnx_path, args.exporter, opset)
            log(f"  exported {onnx_path} in {time.perf_counter() - t0:.1f} s")
    r["onnx"] = onnx_path
    return (onnx_path,) + tuple(exports[name])


def save_inputs(folder, inputs):
    files = {}
    for name, v in inputs.items():
        files[name] = os.path.join(folder, f"input_{name}.npy")
        a = v.numpy()
        np.save(files[name], a.astype(np.float32) if v.is_floating_point() else a.astype(np.int64))
    return files


def torch_row(args, row, model, x, out_names, r):
    """PyTorch eager and CUDA graph in each memory format; returns the row-precision outputs of
    the first format's eager run."""
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    warmup, iterations, budget = counts(args, row)
    ref = None
    r["torch_formats"] = {}
    for fmt in memory_formats(args, row):
        model, xf = to_format(model, x, fmt) if row.conv else (model, x)
        args_x = tuple(xf.values())
        per = r["torch_formats"][fmt] = {}
        with torch.inference_mode():
            y = numpy_outputs(out_names, model(*args_x))
            if ref is None:
                ref = y
            else:
                per["vs_first_format_err"] = worst_err(y, ref)
            log(f"  torch eager ({fmt}): warmup {warmup}, up to {iterations} iterations")
            if cuda:
                gc.collect()
                sync()
                torch.cuda.reset_peak_memory_stats()
            per["eager"] = time_calls(lambda: model(*args_x), sync, warmup, iterations, budget)
            if cuda:
                per["eager_peak_bytes"] = torch.cuda.max_memory_allocated()
                log(f"  torch CUDA graph ({fmt})")
                try:
                    sync()
                    torch.cuda.reset_peak_memory_stats()
                    g, static_out = cuda_graph(model, args_x)
                    per["graph"] = time_calls(g.replay, sync, warmup, iterations, budget)
                    per["graph_peak_bytes"] = torch.cuda.max_memory_allocated()
                    per["graph_vs_eager_err"] = worst_err(numpy_outputs(out_names, static_out), y)
                    g = static_out = None
                except Exception as e:  # noqa: BLE001  (a capture failure is a result, not a crash)
                    r["notes"].append(f"torch CUDA graph ({fmt}) failed: {tail(str(e), 200)}")
            elif "no CUDA graph on the CPU" not in r["notes"]:
                r["notes"].append("no CUDA graph on the CPU")
        args_x = xf = None  # the next format's copies replace these
    for mode in ("eager", "graph"):
        have = [(per[mode]["median"], fmt) for fmt, per in r["torch_formats"].items() if mode in per]
        if have:
            fmt = min(have)[1]
            r[f"torch_{mode}"] = dict(r["torch_formats"][fmt][mode], memory_format=fmt)
            r[f"torch_{mode}_peak_bytes"] = r["torch_formats"][fmt].get(f"{mode}_peak_bytes")
    modes = [(r[k]["median"], r[k]["memory_format"]) for k in ("torch_eager", "torch_graph") if k in r]
    r["torch_best_format"] = min(modes)[1] if modes else "contiguous"
    return ref


def bench_row(args, row, exports, r):
    """Phase 1 of a row: export, torch eager and graph, kiln. Fills r (which keeps what was
    measured when a later step throws)."""
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    folder = os.path.join(args.work, row.id)
    os.makedirs(folder, exist_ok=True)
    note = r["notes"].append

    model, inputs, out_names = bm.build(row)
    input_files = save_inputs(folder, inputs)
    model, x32 = on_device(model, inputs, dev, torch.float32)
    onnx_path, onnx_inputs, onnx_outputs = export_row(args, row, model, x32, out_names, exports, r)
    if sorted(onnx_inputs) != sorted(inputs):
        note(f"ONNX inputs {onnx_inputs} differ from the model's {list(inputs)}")
    input_files = {o: input_files[i] for o, i in zip(onnx_inputs, inputs)}
    if row.precision in QUANTIZED and row.batch != 1:  # quantized_plan calibrates through the b1 export
        export_row(args, dataclasses.replace(row, batch=1), model, {k: v[:1] for k, v in x32.items()},
                   out_names, exports, {"notes": []})

    with torch.inference_mode():
        ref32 = numpy_outputs(out_names, model(*x32.values()))
    for k, v in ref32.items():
        np.save(os.path.join(folder, f"torch_fp32_{k}.npy"), v)
    del x32
    if row.half and not cuda:
        note(f"torch has no {row.precision} convolution/LSTM on the CPU: torch ran fp32")
    model, x = on_device(model, inputs, dev, bm.torch_dtype(row) if cuda else torch.float32)

    ref = torch_row(args, row, model, x, out_names, r)
    for k, v in ref.items():
        np.save(os.path.join(folder, f"torch_{k}.npy"), v)
    if row.half and cuda:
        r["torch_half_err_vs_fp32"] = worst_err(ref, ref32)
    model = x = None  # frees torch's device memory before kiln runs
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    if args.skip_kiln:
        note("kiln skipped (--skip-kiln)")
        return
    # kiln's iteration count from torch's time, so that a slow kiln still fits the budget
    _, iterations, budget = counts(args, row)
    torch_ms = min(r[k]["median"] for k in ("torch_eager", "torch_graph") if k in r)
    k_iter = min(iterations, max(10, int(budget * 1e3 / max(torch_ms, 1e-3))))
    ref_by_name = {o: ref[i] for o, i in zip(onnx_outputs, out_names)}
    ref32_by_name = {o: ref32[i] for o, i in zip(onnx_outputs, out_names)}
    prec = KILN_PRECISION.get(row.precision, [])  # an INT8/FP8 row's plan comes from quantized_plan
    if row.dynamic:
        static, _ = kiln_engine(args, row, r, [onnx_path] + prec + ["--shapes", row.shapes_arg()], "static",
                                input_files, onnx_outputs, ref_by_name, ref32_by_name, k_iter, True)
        plan = dynamic_plan(args, row, onnx_path, r)
        best = None
        if plan:  # the plan decides the precision; its tactics come from the build, no cache
            best, _ = kiln_engine(args, row, r, [plan, "--shapes", row.shapes_arg()], "dynamic",
                                  input_files, onnx_outputs, ref_by_name, ref32_by_name, k_iter, False)
        if static:
            r["kiln_static_ms"] = static["json"]["latency_ms"]["median"]
    elif row.precision in QUANTIZED:
        note(f"torch ran fp16 (PyTorch has no {row.precision.upper()} CUDA convolution)")
        plan = quantized_plan(args, row, onnx_path, onnx_inputs, inputs, r)
        best = None
        if plan:
            best, _ = kiln_engine(args, row, r, [plan], row.precision, input_files, onnx_outputs,
                                  ref_by_name, ref32_by_name, k_iter, False)
    else:
        best, _ = kiln_engine(args, row, r, [onnx_path] + prec + ["--batch", str(row.batch)], "onnx",
                              input_files, onnx_outputs, ref_by_name, ref32_by_name, k_iter, True)
    ok = [x for x in r.get("kiln_runs", []) if "json" in x and x["engine"] != "static"]
    if best:
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
            t16 = r.get("torch_half_err_vs_fp32")
            note(f"vs torch fp32: kiln {max(errs32):.2e}" + (f", torch {row.precision} {t16:.2e}" if t16 is not None else ""))
    if row.dynamic and r.get("kiln_ms") and r.get("kiln_static_ms"):
        r["dynamic_vs_static"] = r["kiln_ms"] / r["kiln_static_ms"]
        note(f"static engine {fmt_ms(r['kiln_static_ms'])} ms, dynamic/static {r['dynamic_vs_static']:.2f}")


# ---- torch.compile, in a child process ----------------------------------------------------------
def compile_worker(args):
    """`bench.py --compile-worker ROW`: compiles the row's model, times it, writes --result."""
    row = ROW_BY_ID[args.compile_worker]
    set_backends(args)
    res = {"mode": args.compile_mode, "memory_format": args.memory_format, "torch": torch.__version__}
    try:
        model, inputs, out_names = bm.build(row)
        cuda = args.device == "cuda"
        model, x = on_device(model, inputs, torch.device(args.device),
                             bm.torch_dtype(row) if cuda else torch.float32)
        if row.conv:
            model, x = to_format(model, x, args.memory_format)
        args_x = tuple(x.values())
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        warmup, iterations, budget = counts(args, row)
        compiled = torch.compile(model, mode=args.compile_mode)
        with torch.no_grad():  # cudagraph trees and inference_mode do not mix in every version
            sync()
            t0 = time.perf_counter()
            y = compiled(*args_x)
            sync()
            res["compile_s"] = time.perf_counter() - t0
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            res["stats"] = time_calls(lambda: compiled(*args_x), sync, warmup, iterations, budget)
            if cuda:
                res["peak_bytes"] = torch.cuda.max_memory_allocated()
            y = numpy_outputs(out_names, compiled(*args_x))
        folder = os.path.join(args.work, row.id)
        want = {k: np.load(os.path.join(folder, f"torch_{k}.npy")) for k in out_names
                if os.path.exists(os.path.join(folder, f"torch_{k}.npy"))}
        if want:
            res["vs_eager_err"] = worst_err({k: y[k] for k in want}, want)
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {tail(str(e), 600)}"
    with open(args.result, "w") as f:
        json.dump(res, f)
    return 0


def compile_row(args, row, r):
    """Phase 2 of a row: torch.compile in a child process with a time limit."""
    folder = os.path.join(args.work, row.id)
    fmt = r.get("torch_best_format", "contiguous")
    timeout = min(args.compile_timeout_s, time_left(args, args.end_at))
    label = f"torch.compile({args.compile_mode})"
    if time_left(args, args.end_at) < 10:
        r["torch_compile_status"] = "not run"
        r["notes"].append(f"{label} not run: past --deadline-s + --grace-s")
        return
    result = os.path.join(folder, "torch_compile.json")
    if os.path.exists(result):
        os.remove(result)
    warmup, iterations, _ = counts(args, row)
    cmd = [sys.executable, os.path.abspath(__file__), "--compile-worker", row.id, "--result", result,
           "--work", args.work, "--compile-mode", args.compile_mode, "--memory-format", fmt,
           "--warmup", str(warmup), "--iterations", str(iterations),
           "--max-measure-s", str(args.max_measure_s), "--tf32", args.tf32, "--device", args.device]
    cmd += (["--quick"] if args.quick else []) + (["--no-cudnn-benchmark"] if args.no_cudnn_benchmark else [])
    log(f"  torch.compile(mode={args.compile_mode}, {fmt}), at most {timeout:.0f} s")
    t0 = time.perf_counter()
    rc, text = run_proc(cmd, timeout, os.path.join(folder, "torch_compile.log"))
    r["torch_compile_wall_s"] = time.perf_counter() - t0
    if rc is None:
        r["torch_compile_status"] = "timeout"
        r["notes"].append(f"{label} timed out after {timeout:.0f} s (--compile-timeout-s)")
        return
    try:
        with open(result) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {"error": f"exit {rc}: {tail(text)}"}
    r["torch_compile_result"] = {k: v for k, v in res.items() if k != "stats"}
    if "error" in res:
        r["torch_compile_status"] = "failed"
        r["notes"].append(f"{label} failed: {tail(res['error'], 300)}")
        return
    r["torch_compile_status"] = "ok"
    r["torch_compile"] = dict(res["stats"], memory_format=fmt)
    r["torch_compile_s"] = res.get("compile_s")
    r["torch_compile_peak_bytes"] = res.get("peak_bytes")
    if res.get("vs_eager_err") is not None:
        r["torch_compile_vs_eager_err"] = res["vs_eager_err"]


def compile_order(results, rows):
    """Rows that kiln leads by the least first (where torch.compile can change a verdict), then
    those kiln already trails, then the rest."""
    def key(pair):
        r = pair[0]
        v = r.get("vs_best")
        return (0, v) if v is not None and v >= 1 else (1, v) if v is not None else (2, 0)
    return [p for p in sorted(zip(results, rows), key=key)]


# ---- report ------------------------------------------------------------------------------------
def environment(args):
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "command": shlex.join([sys.executable] + sys.argv),
           "host": platform.node(), "python": platform.python_version(),
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": args.device, "exporter": args.exporter,
           "compile": "off" if args.no_compile else f"mode={args.compile_mode}, at most {args.compile_timeout_s:g} s a row",
           "torch_compile_available": hasattr(torch, "compile"),
           "memory_format": args.memory_format,
           "kiln_bf16": args.caps.bf16, "kiln_gpu_layernorm": "LayerNormalization" in args.caps.gpu_ops}
    try:
        import torchvision
        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if bm.onnx is not None:
        env["onnx"] = bm.onnx.__version__
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["cudnn"] = torch.backends.cudnn.version()
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        env["tf32"] = tf32_state()
        smi = run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                        "--format=csv,noheader"], 20)
        env["nvidia_smi"] = smi.splitlines()[0] if smi else "nvidia-smi not available"
        parts = [p.strip() for p in env["nvidia_smi"].split(",")]
        if len(parts) >= 2:
            env["driver"] = parts[1]
    else:
        env["cpu"] = platform.processor() or platform.machine()
        env["threads"] = torch.get_num_threads()
    return env


def write_reports(args, env, results):
    targets = evaluate_targets(results, args.skip_kiln)
    text = markdown(env, results, targets)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": results, "targets": targets}, f, indent=1, default=str)
    return text


def profile_row(args, row, r):
    """`kiln profile ... --top 10 --roofline` for a row that misses (its best engine's head)."""
    run = next((x for x in r.get("kiln_runs", []) if "json" in x and x["engine"] != "static"), None)
    if run is None:
        return
    head = shlex.split(run["cmd"])[2:]
    keep, i = [], 0
    while i < len(head):  # keep the model and its precision, batch and shape flags
        a = head[i]
        if a in ("--batch", "--shapes", "--timing-cache"):
            keep += head[i:i + 2]
            i += 2
        elif a in ("--warmup", "--iterations", "--output-dir", "--json", "--input"):
            i += 2
        elif a == "--cuda-graph":
            i += 1
        else:
            keep.append(a)
            i += 1
    cmd = [args.kiln, "profile"] + keep + ["--top", "10", "--roofline"]
    r["kiln_profile_cmd"] = shlex.join(cmd)
    log(f"  {r['kiln_profile_cmd']}")
    rc, text = run_proc(cmd, min(args.kiln_timeout, time_left(args, args.end_at)))
    r["kiln_profile"] = text if rc == 0 else f"kiln profile {'timed out' if rc is None else f'exit {rc}'}:\n{text[-2000:]}"


# ---- dry run: exports and kiln's build on the CPU, and the plan ----------------------------------
def dry_run_row(args, row, exports, r):
    folder = os.path.join(args.work, row.id)
    os.makedirs(folder, exist_ok=True)
    model, inputs, out_names = bm.build(row)
    input_files = save_inputs(folder, inputs)
    t0 = time.perf_counter()
    onnx_path, onnx_inputs, onnx_outputs = export_row(args, row, model, inputs, out_names, exports, r)
    r["export_s"] = time.perf_counter() - t0
    input_files = {o: input_files[i] for o, i in zip(onnx_inputs, inputs)}
    if row.precision in QUANTIZED and row.batch != 1:
        export_row(args, dataclasses.replace(row, batch=1), model, {k: v[:1] for k, v in inputs.items()},
                   out_names, exports, {"notes": []})
    fmts = memory_formats(args, row)
    print(f"  torch: eager and CUDA graph in {', '.join(fmts)}; "
          + ("torch.compile off" if args.no_compile else
             f"torch.compile(mode={args.compile_mode}) in the faster format, at most {args.compile_timeout_s:g} s"
             + ("" if hasattr(torch, "compile") else
                f" (this torch {torch.__version__} has no torch.compile: the row would note it)")))
    if row.precision in QUANTIZED:
        plan = quantized_plan(args, row, onnx_path, onnx_inputs, inputs, r)
        what = row.precision.upper()
        for cmd in r["int8_plan"].get("cmds", []):
            print(f"  kiln: {cmd}")
        print(f"  kiln: {what} plan " + ("built" if plan else r["int8_plan"].get("error", "")))
        if not plan:
            r["notes"].append(f"kiln build check failed: {r['int8_plan'].get('error', '')}")
        heads = [([plan or f"{what}.plan"], row.precision, False)]
    else:
        prec = KILN_PRECISION[row.precision]
        heads = [([onnx_path] + prec + (["--shapes", row.shapes_arg()] if row.dynamic else ["--batch", str(row.batch)]),
                  "static" if row.dynamic else "onnx", True)]
    if row.dynamic:
        plan = dynamic_plan(args, row, onnx_path, r)
        print(f"  kiln: {r['dynamic_plan']['cmd']}: "
              + ("ok" if plan else r["dynamic_plan"].get("error", "")) +
              (f" ({r['dynamic_plan'].get('seconds', 0):.1f} s)" if "seconds" in r["dynamic_plan"] else ""))
        heads.append(([plan or "DYNAMIC.plan", "--shapes", row.shapes_arg()], "dynamic", False))
    for head, tag, cache in heads:
        for graph in (False, True):
            res = run_kiln(args, head, tag, input_files, onnx_outputs, 5, 100, graph, folder, cache)
            print(f"  kiln: {res['cmd']}")
            if args.kiln and not args.skip_kiln:  # kiln parses every flag before it looks for a GPU
                rc, text = run_proc(shlex.split(res["cmd"]), 60)
                if "no GPU" not in text:
                    r["notes"].append(f"kiln bench ({tag}) refuses its arguments: {tail(text, 300)}")
                    print(f"    FAILED: {tail(text, 300)}")
    if args.kiln and not args.skip_kiln and row.precision not in QUANTIZED:  # the GPU build's refusals show here too
        cmd = [args.kiln, "build", onnx_path] + (prec or ["--gpu"]) + \
            (["--shape", "x=" + "x".join(str(d) for d in row.shape)] if row.dynamic else [])
        t0 = time.perf_counter()
        rc, text = run_proc(cmd, args.kiln_timeout)
        last = [ln for ln in text.splitlines() if ln.startswith(("plan ", "error", "no GPU", "kiln"))]
        r["kiln_build_check"] = {"cmd": shlex.join(cmd), "rc": rc, "seconds": time.perf_counter() - t0,
                                 "tail": tail(text, 600)}
        verdict = "ok" if rc == 0 else f"FAILED ({'timeout' if rc is None else f'exit {rc}'})"
        print(f"  check: {shlex.join(cmd)}: {verdict} in {r['kiln_build_check']['seconds']:.1f} s; "
              + (tail(last[-1], 300) if last else tail(text, 300)))
        if rc != 0:
            r["notes"].append(f"kiln build check failed: {tail(text, 300)}")


# ---- main --------------------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", help="comma-separated row ids (default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="print the row ids and exit")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU needed: build and export each row, check that `kiln build` accepts it for "
                         "its GPU target (on the CPU), build dynamic plans, print the commands; nothing is timed")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: a smoke test of export and timing code (no CUDA graph, no memory figures)")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "tools", "kiln"), help="the kiln CLI")
    ap.add_argument("--skip-kiln", action="store_true", help="time torch only")
    ap.add_argument("--kiln-arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for every `kiln bench` call (repeatable)")
    ap.add_argument("--no-timing-cache", action="store_true",
                    help="do not pass `--timing-cache WORK/kiln-timing.cache` to kiln (every run times its tactics)")
    ap.add_argument("--kiln-timeout", type=float, default=180, help="seconds per kiln call (180)")
    ap.add_argument("--deadline-s", type=float, default=480,
                    help="no row, torch.compile or profile starts this many seconds after the start (480; "
                         "0: no limit); rows not started are listed as not run")
    ap.add_argument("--grace-s", type=float, default=45,
                    help="every child process (kiln, torch.compile) is stopped by --deadline-s plus this (45), "
                         "so a run with the defaults ends inside a 540 s call")
    ap.add_argument("--work", default="/tmp/kiln-bench", help="ONNX files, inputs, outputs (/tmp/kiln-bench)")
    ap.add_argument("--reuse-exports", action="store_true",
                    help="use ONNX files (and dynamic plans) already in --work/onnx instead of making them again")
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
                    help="cap on the seconds of one timing loop; fewer iterations when it would take longer "
                         "(4; --quick halves it)")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    ap.add_argument("--compile-mode", default="max-autotune",
                    help="torch.compile mode (max-autotune: Triton templates tuned and CUDA graphs; "
                         "'default' compiles in seconds)")
    ap.add_argument("--compile-timeout-s", type=float, default=150,
                    help="a row's torch.compile (compile, autotune and timing) is stopped after this (150)")
    ap.add_argument("--compile-rows", help="comma-separated rows to compile, in this order (default: every "
                                           "measured row, those kiln leads by the least first)")
    ap.add_argument("--memory-format", default="auto", choices=["auto", "both", "contiguous", "channels_last"],
                    help="PyTorch memory formats for convolutional rows: auto = contiguous and channels_last "
                         "for fp16/bf16, contiguous for fp32 (each column keeps the faster)")
    ap.add_argument("--channels-last", action="store_const", dest="memory_format", const="channels_last",
                    help="the same as --memory-format channels_last")
    ap.add_argument("--no-profile", action="store_true",
                    help="no `kiln profile --top 10 --roofline` for the rows that miss")
    ap.add_argument("--no-cudnn-benchmark", action="store_true",
                    help="leave torch.backends.cudnn.benchmark off (on by default: torch picks tuned algorithms)")
    ap.add_argument("--tf32", choices=["default", "on", "off"], default="off",
                    help="torch's TF32 for fp32 rows (default off: kiln computes FP32 without TF32 unless asked, "
                         "so both run the same math; \"default\" keeps torch's own)")
    ap.add_argument("--compile-worker", metavar="ROW", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    return ap, ap.parse_args()


def main():
    ap, args = parse_args()
    if args.compile_worker:
        return compile_worker(args)
    if args.list:
        for r in ROWS:
            print(f"{r.id:26} {r.model:13} {r.precision} batch {r.batch}"
                  + (f", {r.steps} step{'s' if r.steps > 1 else ''}" if r.steps and r.model == "charrnn" else "")
                  + (f", sequence {r.steps}" if r.model == "bert" else "")
                  + (f", dynamic plan at {r.shapes_arg()}" if r.dynamic else "")
                  + (f"; not run: {r.blocked}" if r.blocked else ""))
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
    if args.compile_rows:
        unknown = [i for i in args.compile_rows.split(",") if i and i not in ROW_BY_ID]
        if unknown:
            ap.error(f"--compile-rows: unknown row(s) {unknown}; --list prints the ids")
    if args.dry_run:
        args.device = "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("CUDA is not available to this torch; use --device cpu for a smoke test, or --dry-run")
    if not args.skip_kiln and not os.access(args.kiln, os.X_OK):
        if not args.dry_run:
            ap.error(f"no kiln CLI at {args.kiln} (give --kiln PATH, or --skip-kiln)")
        args.kiln = None
    args.caps = KilnCaps(None if args.skip_kiln else args.kiln)
    set_backends(args)
    if args.device == "cpu":
        torch.set_num_threads(max(1, min(8, os.cpu_count() or 2)))
    os.makedirs(args.work, exist_ok=True)
    env = environment(args)
    log(f"bench: {len(rows)} row(s) on {env.get('gpu', 'CPU')}, torch {torch.__version__}, work dir {args.work}"
        + (" (dry run)" if args.dry_run else ""))

    results, exports, args.plans, t_start = [], {}, {}, time.perf_counter()
    args.deadline_at = t_start + args.deadline_s if args.deadline_s > 0 and not args.dry_run else float("inf")
    args.end_at = args.deadline_at + args.grace_s
    if not args.dry_run:
        print("\n".join(table_head()), flush=True)
    text = ""
    for i, row in enumerate(rows):
        log(f"[{i + 1}/{len(rows)}] {row.id} ({time.perf_counter() - t_start:.0f} s elapsed)")
        t0 = time.perf_counter()
        r = {"row": row.id, "model": row.model, "precision": row.precision, "batch": row.batch,
             "steps": row.steps or None, "shape": list(row.shape) or None, "notes": []}
        results.append(r)
        why = args.caps.not_run(row)
        if why:
            r["notes"].append(f"not run: {why}")
        elif t0 > args.deadline_at:
            r["notes"].append(f"not run: past --deadline-s {args.deadline_s:g}")
        else:
            try:
                if args.dry_run:
                    print(f"{row.id}:", flush=True)
                    dry_run_row(args, row, exports, r)
                else:
                    bench_row(args, row, exports, r)
            except Exception as e:  # noqa: BLE001  (one broken row must not end the suite)
                r["notes"].append(f"row failed: {type(e).__name__}: {tail(str(e), 300)}")
                gc.collect()
                if args.device == "cuda":
                    torch.cuda.empty_cache()
        r["row_seconds"] = time.perf_counter() - t0
        for run in r.get("kiln_runs", []):
            j = run.get("json") or {}
            if j.get("device"):
                env.setdefault("kiln_device", j.get("device"))
                env.setdefault("kiln_versions", j.get("versions"))
        finish_row(r)
        env["total_seconds"] = time.perf_counter() - t_start
        if args.dry_run:
            if why:
                print(f"{row.id}: not run: {why}", flush=True)
            continue
        print(table_line(r), flush=True)
        text = write_reports(args, env, results)  # after every row: a killed run keeps its rows

    if args.dry_run:
        bad = [r["row"] for r in results if any(n.startswith(("row failed", "kiln build check failed", "kiln bench ("))
                                                   for n in r["notes"])]
        print(f"dry run: {len(results)} row(s), {len(bad)} with a problem{': ' + ', '.join(bad) if bad else ''}")
        return 1 if bad else 0

    # phase 2: torch.compile, budgeted
    measured = [(r, row) for r, row in zip(results, rows) if "torch_eager" in r]
    if args.compile_rows:
        order = [i for i in args.compile_rows.split(",") if i]
        measured = [p for i in order for p in measured if p[1].id == i]
    else:
        measured = compile_order(*zip(*measured)) if measured else []
    for r, row in measured:
        if args.no_compile:
            r["torch_compile_status"] = "off"
            continue
        if not hasattr(torch, "compile"):
            r["torch_compile_status"] = "n/a"
            r["notes"].append(f"torch.compile: not in torch {torch.__version__}")
            continue
        if time.perf_counter() > args.deadline_at:
            r["torch_compile_status"] = "not run"
            r["notes"].append(f"torch.compile not run: past --deadline-s {args.deadline_s:g}")
            continue
        log(f"[compile] {row.id} ({time.perf_counter() - t_start:.0f} s elapsed)")
        try:
            compile_row(args, row, r)
        except Exception as e:  # noqa: BLE001
            r["torch_compile_status"] = "failed"
            r["notes"].append(f"torch.compile failed: {type(e).__name__}: {tail(str(e), 300)}")
        finish_row(r)
        env["total_seconds"] = time.perf_counter() - t_start
        print(table_line(r) + " (with torch.compile)", flush=True)
        text = write_reports(args, env, results)

    # phase 3: where kiln is behind, its slowest steps
    if not args.no_profile and not args.skip_kiln:
        for r, row in zip(results, rows):
            if r.get("vs_best") is not None and r["vs_best"] < 1.0 and time.perf_counter() < args.deadline_at:
                try:
                    profile_row(args, row, r)
                except Exception as e:  # noqa: BLE001
                    r["kiln_profile"] = f"kiln profile failed: {e}"
                env["total_seconds"] = time.perf_counter() - t_start
                text = write_reports(args, env, results)

    env["total_seconds"] = time.perf_counter() - t_start
    text = write_reports(args, env, results)
    print(text, end="", flush=True)
    log(f"bench: {len(results)} row(s) in {env['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
