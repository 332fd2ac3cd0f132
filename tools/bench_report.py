"""The report of tools/bench.py: a row's ratios against the best PyTorch configuration, the
markdown table, and issue 20's targets as PASS/MISS/SKIP lines. Imported by tools/bench.py."""
import json

from bench_models import ROW_BY_ID

FORMAT_TAG = {"contiguous": "", "channels_last": " cl"}


def finish_row(r):
    """The ratios: best PyTorch over eager, graph and compile; kiln against it."""
    peers = [(r[k]["median"], k[6:] + FORMAT_TAG.get(r[k].get("memory_format", "contiguous"), ""))
             for k in ("torch_eager", "torch_graph", "torch_compile") if k in r]
    if peers:
        r["torch_best_ms"], r["torch_best"] = min(peers)
    if r.get("kiln_ms"):
        for k, out in (("torch_eager", "speedup_vs_eager"), ("torch_graph", "speedup_vs_graph"),
                       ("torch_compile", "speedup_vs_compile")):
            if k in r:
                r[out] = r[k]["median"] / r["kiln_ms"]
        if peers:
            r["vs_best"] = r["torch_best_ms"] / r["kiln_ms"]


def fmt_ms(v):
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def fmt_mib(v):
    return "-" if not v else f"{v / 2**20:.0f}" if v >= 10 * 2**20 else f"{v / 2**20:.1f}"


def fmt_x(v):
    return "-" if v is None else f"{v:.2f}x"


def fmt_err(v):
    return "-" if v is None else f"{v:.2e}"


COLUMNS = ["row", "batch", "torch eager ms", "torch graph ms", "torch compile ms", "compile s", "kiln ms",
           "vs best PyTorch", "vs eager", "torch peak MiB", "kiln peak MiB", "max rel err", "notes"]


def table_head():
    return ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]


def table_line(r):
    def timed(k):
        v = r.get(k)
        return "-" if not v else fmt_ms(v["median"]) + FORMAT_TAG.get(v.get("memory_format", "contiguous"), "")
    compile_cell = timed("torch_compile") if "torch_compile" in r else r.get("torch_compile_status", "-")
    cells = [r["row"], str(r["batch"]), timed("torch_eager"), timed("torch_graph"), compile_cell,
             "-" if r.get("torch_compile_s") is None else f"{r['torch_compile_s']:.0f}",
             fmt_ms(r.get("kiln_ms")), fmt_x(r.get("vs_best")), fmt_x(r.get("speedup_vs_eager")),
             fmt_mib(r.get("torch_eager_peak_bytes")), fmt_mib(r.get("kiln_peak_bytes")),
             fmt_err(r.get("max_rel_err")), "; ".join(r["notes"]).replace("|", "\\|").replace("\n", " ")]
    return "| " + " | ".join(cells) + " |"


def markdown(env, rows, targets):
    lines = ["# kiln vs PyTorch's best", ""]
    lines.append(f"- date: {env['date']}")
    if env["device"] == "cuda":
        tf = env.get("tf32") or {}
        lines.append(f"- GPU: {env.get('gpu')} (nvidia-smi: {env.get('nvidia_smi')})")
        lines.append(f"- driver {env.get('driver', '?')}, CUDA {env['cuda']}, cuDNN {env.get('cudnn')}, "
                     f"cudnn.benchmark {env.get('cudnn_benchmark')}, TF32 conv {tf.get('conv')} matmul {tf.get('matmul')}")
    else:
        lines.append(f"- device: CPU ({env.get('cpu')}, {env.get('threads')} threads)")
    lines.append(f"- PyTorch {env['torch']}, torchvision {env.get('torchvision', '-')}, "
                 f"onnx {env.get('onnx', '-')}, python {env['python']}, exporter {env['exporter']}; "
                 f"torch.compile: {env['compile']}; memory formats: {env['memory_format']}")
    if env.get("kiln_device") or env.get("kiln_versions"):
        lines.append(f"- kiln: {env.get('kiln_device', '')} {json.dumps(env.get('kiln_versions', ''))}")
    lines.append(f"- command: `{env['command']}`" + (f" ({env['total_seconds']:.0f} s)" if "total_seconds" in env else ""))
    lines.append("- ms: median latency per inference (host-timed, synchronised); p90 in the JSON. "
                 "\"cl\": PyTorch's fastest memory format for that column was channels_last. "
                 "compile s: torch.compile's first call. kiln ms: the better of `kiln bench` with and "
                 "without --cuda-graph. vs best PyTorch = the fastest of eager, graph and compile / kiln ms "
                 "(vs eager likewise). max rel err = max|kiln - torch| / max|torch|.")
    lines += [""] + table_head() + [table_line(r) for r in rows]
    lines += ["", "Targets:", ""] + [f"- {t['verdict']}: {t['target']} ({t['detail']})" for t in targets]
    profiles = [r for r in rows if r.get("kiln_profile")]
    if profiles:
        lines += ["", "## Where kiln is behind: its ten slowest steps beside their roofline", ""]
        for r in profiles:
            lines += [f"### {r['row']} ({fmt_x(r.get('vs_best'))} against {r.get('torch_best')})", "",
                      f"`{r['kiln_profile_cmd']}`", "", "```", r["kiln_profile"].rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def evaluate_targets(rows, skip_kiln):
    by_id = {r["row"]: r for r in rows}
    targets = []

    def add(target, verdict, detail):
        targets.append({"target": target, "verdict": verdict, "detail": detail})

    if skip_kiln:
        add("kiln against torch", "SKIP", "--skip-kiln")
        return targets
    misses, unmeasured, no_compile = [], [], []
    for r in rows:
        v = r.get("vs_best")
        if v is None:
            unmeasured.append(r["row"])
        elif v < 1.0:
            misses.append(f"{r['row']} {fmt_x(v)} vs {r.get('torch_best')}")
        if v is not None and "torch_compile" not in r:
            no_compile.append(r["row"])
    detail = ("behind: " + ", ".join(misses)) if misses else "no measured row behind"
    if unmeasured:
        detail += f"; not measured ({len(unmeasured)}): " + ", ".join(unmeasured)
    if no_compile:
        detail += "; best of eager and graph only (no torch.compile) on " + ", ".join(no_compile)
    add("kiln at least as fast as the best PyTorch configuration on every row",
        "MISS" if misses or unmeasured or not rows else "PASS", detail)

    def kiln_ms_target(row_id, limit):
        r = by_id.get(row_id)
        name = f"{row_id} kiln at most {limit} ms"
        if r is None:
            add(name, "SKIP", "row not in this run")
        elif r.get("kiln_ms") is None:
            add(name, "MISS", "kiln not measured: " + ("; ".join(r["notes"])[:200] or "-"))
        else:
            add(name, "PASS" if r["kiln_ms"] <= limit else "MISS", f"kiln {r['kiln_ms']:.3f} ms")

    kiln_ms_target("resnet50-fp16-b256", 6.5)
    kiln_ms_target("resnet50-fp16-b1", 0.35)

    for batch, name, better in ((256, "resnet50-int8-b256 throughput at least 1.6x kiln's FP16", "throughput"),
                                (1, "resnet50-int8-b1 latency below kiln's FP16", "latency")):
        r8, r16 = by_id.get(f"resnet50-int8-b{batch}"), by_id.get(f"resnet50-fp16-b{batch}")
        if r8 is None:
            add(name, "SKIP", "row not in this run")
        elif r8.get("kiln_ms") is None or r16 is None or r16.get("kiln_ms") is None:
            add(name, "MISS", "; ".join(r8["notes"])[:200] or "not measured")
        elif better == "throughput":
            ratio = r16["kiln_ms"] / r8["kiln_ms"]
            add(name, "PASS" if ratio >= 1.6 else "MISS", f"{ratio:.2f}x")
        else:
            add(name, "PASS" if r8["kiln_ms"] < r16["kiln_ms"] else "MISS",
                f"INT8 {r8['kiln_ms']:.3f} ms, FP16 {r16['kiln_ms']:.3f} ms")

    dyn = [r for r in rows if ROW_BY_ID.get(r["row"]) and ROW_BY_ID[r["row"]].dynamic]
    if dyn:
        over = [f"{r['row']} {r['dynamic_vs_static']:.2f}" for r in dyn
                if r.get("dynamic_vs_static") is not None and r["dynamic_vs_static"] > 1.10]
        missing = [r["row"] for r in dyn if r.get("dynamic_vs_static") is None]
        ratios = ", ".join(f"{r['row']} {r['dynamic_vs_static']:.2f}" for r in dyn if r.get("dynamic_vs_static"))
        detail = "dynamic/static: " + (ratios or "-") + (f"; not measured: {', '.join(missing)}" if missing else "")
        add("dynamic-shape engine within 10% of the static engine at each shape",
            "MISS" if over or missing else "PASS", detail)
    return targets
