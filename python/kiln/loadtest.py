"""A load test of a model served by Triton (kiln.serve or any Triton), with tritonclient.

    python -m kiln.loadtest --url 127.0.0.1:8001 --protocol grpc --model matmul_relu \\
        --concurrency 16 --requests 2000 [--batch 1] [--shape x:1,16] [--json]

keeps CONCURRENCY requests in flight (one client and one thread per slot, each sending its next
request when the last is answered, as perf_analyzer's concurrency mode does) until REQUESTS
requests were answered or DURATION seconds passed, then prints requests/s, inferences/s (rows),
the latency percentiles measured at the client, the error count, and from Triton's statistics
the executions the server ran in the meantime with their average batch and its queue and compute
times per request. Inputs are made from the model's metadata (names, datatypes, shapes; -1 dims
from --shape), random with a fixed --seed, one set per slot, made before the clock starts.

perf_analyzer (Triton's C++ load generator) could not be had here: tritonclient 2.73's wheel
ships no binary, and PyPI's perf-analyzer resolved only to 0.1.0, a 2 KB wheel with no program.
This is the part of it that kiln's tests and docs need. It is a Python client: on a small model
the client's own overhead (and the GIL it shares between its threads) is part of what it measures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from typing import Optional, Sequence

import numpy as np

# Triton datatype -> numpy dtype of the array handed to set_data_from_numpy (BF16 goes as FP32).
NUMPY_DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "BF16": np.float32,
                "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
                "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
                "BOOL": np.bool_}


class LoadTestError(Exception):
    pass


def _client_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as mod
    elif protocol == "http":
        import tritonclient.http as mod
    else:
        raise LoadTestError(f"protocol '{protocol}': grpc or http")
    return mod


def _make_client(mod, protocol: str, url: str, timeout: float):
    if protocol == "grpc":
        return mod.InferenceServerClient(url)
    return mod.InferenceServerClient(url, connection_timeout=timeout, network_timeout=timeout)


def model_io(client, protocol: str, model: str, version: str = "") -> tuple:
    """(max_batch_size, [(name, datatype, shape)] of the inputs, [output names]) from the model's
    metadata and configuration; shapes as the metadata gives them (-1 where they vary)."""
    if protocol == "grpc":
        meta = client.get_model_metadata(model, version, as_json=True)
        config = client.get_model_config(model, version, as_json=True)["config"]
    else:
        meta = client.get_model_metadata(model, version)
        config = client.get_model_config(model, version)
    inputs = [(i["name"], i["datatype"], [int(d) for d in i["shape"]]) for i in meta["inputs"]]
    outputs = [o["name"] for o in meta["outputs"]]
    return int(config.get("max_batch_size", 0) or 0), inputs, outputs


def parse_shapes(specs: Sequence[str]) -> dict:
    """--shape NAME:D,D,... (the dims after the batch dim when the model batches)."""
    shapes = {}
    for s in specs:
        name, sep, dims = s.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.split(",") if d]
        except ValueError:
            raise LoadTestError(f"--shape '{s}': NAME:D,D,... (e.g. x:3,224,224)") from None
    return shapes


def request_shapes(max_batch: int, inputs, batch: int, shapes: dict) -> dict:
    """{input: full request shape}: the batch dim (when the model batches) then the metadata's
    dims, with -1 dims taken from --shape."""
    if max_batch == 0 and batch != 1:
        raise LoadTestError(f"the model does not batch (max_batch_size 0): --batch {batch} must be 1")
    if max_batch > 0 and not 1 <= batch <= max_batch:
        raise LoadTestError(f"--batch {batch}: the model takes 1..{max_batch} rows per request")
    unknown = set(shapes) - {n for n, _, _ in inputs}
    if unknown:
        raise LoadTestError(f"--shape names no input of the model: {', '.join(sorted(unknown))} "
                            f"(inputs: {', '.join(n for n, _, _ in inputs)})")
    out = {}
    for name, dtype, shape in inputs:
        dims = shape[1:] if max_batch > 0 else shape
        if name in shapes:
            given = shapes[name]
            if len(given) != len(dims) or any(d != -1 and d != g for d, g in zip(dims, given)):
                raise LoadTestError(f"--shape {name}:{','.join(map(str, given))} does not fit the model's "
                                    f"dims {dims}" + (" (after the batch dim)" if max_batch > 0 else ""))
            dims = given
        elif -1 in dims:
            raise LoadTestError(f"input '{name}' has dims {dims} (-1 varies): give them with "
                                f"--shape {name}:" + ",".join("D" if d == -1 else str(d) for d in dims))
        if dtype not in NUMPY_DTYPES:
            raise LoadTestError(f"input '{name}' is {dtype}: the load test makes "
                                f"{', '.join(NUMPY_DTYPES)} inputs")
        out[name] = ([batch] if max_batch > 0 else []) + list(dims)
    return out


def random_inputs(inputs, shapes: dict, seed: int) -> dict:
    """{input: array}: floats uniform in [-1, 1), integers in [0, 16), booleans; seeded."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, dtype, _ in inputs:
        npt = NUMPY_DTYPES[dtype]
        shape = shapes[name]
        if npt == np.bool_:
            arrays[name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif np.issubdtype(npt, np.integer):
            arrays[name] = rng.integers(0, 16, shape).astype(npt)
        else:
            arrays[name] = rng.uniform(-1, 1, shape).astype(npt)
    return arrays


def _server_stats(client, protocol: str, model: str, version: str) -> dict:
    """The counters of Triton's statistics extension that the report uses (all versions summed)."""
    s = client.get_inference_statistics(model, version, as_json=True) if protocol == "grpc" else \
        client.get_inference_statistics(model, version)
    out = {"inferences": 0, "executions": 0, "success": 0, "queue_ns": 0, "compute_infer_ns": 0,
           "compute_input_ns": 0, "compute_output_ns": 0}
    for m in s.get("model_stats", []):
        out["inferences"] += int(m.get("inference_count", 0))
        out["executions"] += int(m.get("execution_count", 0))
        st = m.get("inference_stats", {})
        out["success"] += int(st.get("success", {}).get("count", 0))
        for key in ("queue", "compute_infer", "compute_input", "compute_output"):
            out[key + "_ns"] += int(st.get(key, {}).get("ns", 0))
    return out


def run(url: str, model: str, *, protocol: str = "grpc", concurrency: int = 16, requests: Optional[int] = None,
        duration: Optional[float] = None, batch: int = 1, shapes: Optional[dict] = None, seed: int = 0,
        warmup: int = 0, version: str = "", timeout: float = 60) -> dict:
    """Runs the load test and returns its report (what --json prints)."""
    if (requests is None) == (duration is None):
        raise LoadTestError("give one of --requests N and --duration S")
    if concurrency < 1 or (requests is not None and requests < 1) or (duration is not None and duration <= 0):
        raise LoadTestError("--concurrency and --requests must be at least 1, --duration above 0")
    mod = _client_module(protocol)
    from tritonclient.utils import InferenceServerException

    try:
        admin = _make_client(mod, protocol, url, timeout)
        if not admin.is_model_ready(model, version):
            raise LoadTestError(f"model '{model}' is not ready at {url} ({protocol})")
        max_batch, inputs, outputs = model_io(admin, protocol, model, version)
    except InferenceServerException as e:
        raise LoadTestError(f"{url} ({protocol}): {e}") from None
    full = request_shapes(max_batch, inputs, batch, shapes or {})

    # One client and one prepared request per slot, made in the thread that uses it (the HTTP
    # client is gevent's and must stay in its thread) before the clock starts.
    def prepare(i):
        arrays = random_inputs(inputs, full, seed + i)
        ins = []
        for name, dtype, _ in inputs:
            t = mod.InferInput(name, full[name], dtype)
            t.set_data_from_numpy(arrays[name])
            ins.append(t)
        return _make_client(mod, protocol, url, timeout), ins, [mod.InferRequestedOutput(o) for o in outputs]

    def infer(slot):
        client, ins, outs = slot
        if protocol == "grpc":
            return client.infer(model, ins, model_version=version, outputs=outs, client_timeout=timeout)
        return client.infer(model, ins, model_version=version, outputs=outs)

    tickets = itertools.count()  # next() is atomic under the GIL: each request is claimed once
    stop = threading.Event()
    prepared, go = threading.Barrier(concurrency + 1), threading.Barrier(concurrency + 1)
    lat = [[] for _ in range(concurrency)]
    errors = [[] for _ in range(concurrency)]
    setup_errors = []
    clock = {}

    def worker(i):
        slot = None
        try:
            slot = prepare(i)
            for _ in range(i, warmup, concurrency):  # not counted: first connections, first runs
                try:
                    infer(slot)
                except InferenceServerException:
                    pass
        except Exception as e:  # noqa: BLE001 - reported after the barrier
            setup_errors.append(str(e))
        try:
            prepared.wait()
            go.wait()
            if slot is None or setup_errors:
                return
            mine, errs, deadline = lat[i], errors[i], clock.get("deadline")
            while not stop.is_set():
                if requests is not None and next(tickets) >= requests:
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    infer(slot)
                    mine.append(time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                    errs.append(str(e))
        finally:
            if slot is not None:
                slot[0].close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    prepared.wait()  # every slot has its client and inputs and has sent its warm-up requests
    before = _server_stats(admin, protocol, model, version)
    start = time.perf_counter()
    if duration is not None:
        clock["deadline"] = start + duration
    go.wait()  # the clock runs from here
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - start
    after = _server_stats(admin, protocol, model, version)
    admin.close()
    if setup_errors:
        raise LoadTestError(f"preparing the clients: {setup_errors[0]}")

    ms = np.array([x for per in lat for x in per]) * 1e3
    errs = [e for per in errors for e in per]
    ok = len(ms)
    pct = (lambda p: float(np.percentile(ms, p))) if ok else (lambda p: float("nan"))
    d = {k: after[k] - before[k] for k in after}
    server_req = d["success"]
    report = {
        "model": model, "url": url, "protocol": protocol, "concurrency": concurrency, "batch": batch,
        "requests": ok + len(errs), "ok": ok, "errors": len(errs), "seconds": elapsed,
        "requests_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "inferences_per_s": ok * batch / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p95": pct(95), "p99": pct(99),
                       "mean": float(ms.mean()) if ok else float("nan"),
                       "max": float(ms.max()) if ok else float("nan")},
        # Triton's counters over the run: every client of the model counts, not only this one.
        "server": {"requests": server_req, "executions": d["executions"],
                   "avg_batch": d["inferences"] / d["executions"] if d["executions"] else 0.0,
                   "queue_us": d["queue_ns"] / server_req / 1e3 if server_req else 0.0,
                   "compute_us": (d["compute_input_ns"] + d["compute_infer_ns"] + d["compute_output_ns"])
                   / server_req / 1e3 if server_req else 0.0},
        "first_errors": sorted(set(errs))[:5],
    }
    return report


COLUMNS = [("model", "model", "{}"), ("protocol", "protocol", "{}"), ("concurrency", "concurrency", "{}"),
           ("batch", "batch", "{}"), ("requests", "requests", "{}"), ("errors", "errors", "{}"),
           ("seconds", "seconds", "{:.2f}"), ("req/s", "requests_per_s", "{:.1f}"),
           ("infer/s", "inferences_per_s", "{:.1f}"), ("p50_ms", "p50", "{:.2f}"), ("p90_ms", "p90", "{:.2f}"),
           ("p99_ms", "p99", "{:.2f}"), ("max_ms", "max", "{:.2f}")]
SERVER_COLUMNS = [("server_requests", "requests", "{}"), ("executions", "executions", "{}"),
                  ("avg_batch", "avg_batch", "{:.2f}"), ("queue_us", "queue_us", "{:.0f}"),
                  ("compute_us", "compute_us", "{:.0f}")]


def _table(rows: list) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def format_report(r: dict) -> str:
    """Two tables: the client's view, then Triton's statistics over the same time."""
    values = {**r, **r["latency_ms"]}
    client = _table([[h for h, _, _ in COLUMNS], [f.format(values[k]) for _, k, f in COLUMNS]])
    server = _table([[h for h, _, _ in SERVER_COLUMNS], [f.format(r["server"][k]) for _, k, f in SERVER_COLUMNS]])
    text = client + "\n\n" + server + "\n"
    if r["first_errors"]:
        text += "\nerrors:\n" + "\n".join(f"  {e}" for e in r["first_errors"]) + "\n"
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kiln.loadtest",
                                 description="Load-test a model served by Triton at a set concurrency; prints "
                                             "throughput, latency percentiles and errors.")
    ap.add_argument("--url", default="127.0.0.1:8001", help="host:port of Triton's gRPC or HTTP endpoint "
                                                            "(default %(default)s)")
    ap.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-version", default="", help="default: the server's choice")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (default %(default)s)")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--requests", type=int, help="stop after this many requests")
    how.add_argument("--duration", type=float, help="stop after this many seconds")
    ap.add_argument("--batch", type=int, default=1, help="rows per request when the model batches (default 1)")
    ap.add_argument("--shape", action="append", default=[], metavar="NAME:D,D,...",
                    help="dims of an input whose metadata has -1 (after the batch dim); repeat per input")
    ap.add_argument("--seed", type=int, default=0, help="of the random inputs (default 0)")
    ap.add_argument("--warmup", type=int, default=0, help="requests sent first and not counted")
    ap.add_argument("--timeout", type=float, default=60, help="seconds a request may take (default 60)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    a = ap.parse_args(argv)
    try:
        report = run(a.url, a.model, protocol=a.protocol, concurrency=a.concurrency, requests=a.requests,
                     duration=a.duration, batch=a.batch, shapes=parse_shapes(a.shape), seed=a.seed,
                     warmup=a.warmup, version=a.model_version, timeout=a.timeout)
    except LoadTestError as e:
        print(f"kiln.loadtest: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if a.json else format_report(report), end="" if not a.json else "\n")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
