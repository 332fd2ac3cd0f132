"""Serve kiln plans with Triton Inference Server through its Python backend.

    python -m kiln.serve model.plan other.onnx --repo /tmp/kiln-repo --http-port 8000 --grpc-port 8001

writes a Triton model repository (one model per plan or ONNX model; see docs/serving.md):

    REPO/NAME/config.pbtxt     inputs, outputs, dtypes, max_batch_size, dims (-1 where dynamic),
                               dynamic batching on, the Python backend
    REPO/NAME/1/model.py       kiln.triton_model: loads the plan once per instance, runs per batch
    REPO/NAME/1/model.plan     the plan (an ONNX model is built into one: dim 0 dynamic, 1..max batch)
    REPO/NAME/1/kiln.json      what model.py needs besides the plan

then starts Triton on it: the ``tritonserver`` bundled in PyPI's nvidia-pytriton (with its Python
backend and the stub for this Python), else one found on PATH. The server gets this process's
environment plus the folder that holds the kiln package (as KILN_PYTHON_ROOT, which model.py puts
first on its sys.path, and on PYTHONPATH), so that model.py imports the same kiln.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Optional, Sequence

import kiln

# kiln dtype -> Triton data type (config.pbtxt)
TRITON_DTYPES = {"f32": "TYPE_FP32", "f16": "TYPE_FP16", "bf16": "TYPE_BF16", "f64": "TYPE_FP64",
                 "i8": "TYPE_INT8", "i16": "TYPE_INT16", "i32": "TYPE_INT32", "i64": "TYPE_INT64",
                 "u8": "TYPE_UINT8", "u16": "TYPE_UINT16", "u32": "TYPE_UINT32", "u64": "TYPE_UINT64",
                 "bool": "TYPE_BOOL"}


def _profile_ranges(plan) -> dict:
    """{input: (min dims, max dims)} of a dynamic plan's first profile ('x: [1,4] .. [8,4] .. [64,4]')."""
    ranges = {}
    text = plan.profiles[0] if plan.profiles else ""
    for line in text.splitlines():
        m = re.match(r"\s*(\S+):\s*\[([\d,]*)\]\s*\.\.\s*\[([\d,]*)\]\s*\.\.\s*\[([\d,]*)\]", line)
        if m:
            dims = [tuple(int(d) for d in g.split(",") if d) for g in (m.group(2), m.group(4))]
            ranges[m.group(1)] = (dims[0], dims[1])
    return ranges


def describe(plan) -> dict:
    """What config.pbtxt says about a plan: max batch, and per input/output its dtype and non-batch
    dims (-1 where the plan's profile lets the dim vary). A dynamic plan batches when every input's
    dim 0 spans 1..N (max_batch_size N); a static plan's dim 0 is the batch it runs (requests of
    fewer rows are padded to it)."""
    ins = plan.inputs
    if plan.is_dynamic:
        ranges = _profile_ranges(plan)
        lo = [ranges[i["name"]][0] for i in ins]
        hi = [ranges[i["name"]][1] for i in ins]
        batched = all(len(a) > 0 and a[0] == 1 for a in lo) and len({b[0] for b in hi}) == 1
        max_batch = hi[0][0] if batched else 0
        skip = 1 if batched else 0
        inputs = []
        for i, l, h in zip(ins, lo, hi):
            inputs.append((i["name"], i["dtype"], [b if a == b else -1 for a, b in zip(l[skip:], h[skip:])]))
        varying = any(-1 in d for _, _, d in inputs)
        outputs = [(o["name"], o["dtype"], [-1] * (len(o["shape"]) - skip) if varying else list(o["shape"][skip:]))
                   for o in plan.outputs]
        static_batch = 0
    else:
        firsts = {i["shape"][0] for i in ins if len(i["shape"]) > 0} | \
                 {o["shape"][0] for o in plan.outputs if len(o["shape"]) > 0}
        batched = len(firsts) == 1 and all(len(t["shape"]) > 0 for t in list(ins) + list(plan.outputs))
        max_batch = next(iter(firsts)) if batched else 0
        skip = 1 if batched else 0
        inputs = [(i["name"], i["dtype"], list(i["shape"][skip:])) for i in ins]
        outputs = [(o["name"], o["dtype"], list(o["shape"][skip:])) for o in plan.outputs]
        static_batch = max_batch
    for name, dtype, _ in inputs + outputs:
        if dtype not in TRITON_DTYPES:
            raise kiln.Error(f"'{name}': kiln dtype {dtype} has no Triton data type")
    return {"max_batch": max_batch, "static_batch": static_batch, "inputs": inputs, "outputs": outputs}


def config_pbtxt(name: str, desc: dict, *, instances: int = 1, gpu: bool = False,
                 max_queue_delay_us: int = 2000) -> str:
    def tensors(key, items):
        parts = []
        for n, dtype, dims in items:
            shown = dims if dims else [1]  # Triton wants at least one dim; [1] stands for a scalar row
            parts.append(f'  {{\n    name: "{n}"\n    data_type: {TRITON_DTYPES[dtype]}\n'
                         f'    dims: [ {", ".join(str(d) for d in shown)} ]\n'
                         + ('    reshape: { shape: [ ] }\n' if not dims else '') + '  }')
        return f"{key} [\n" + ",\n".join(parts) + "\n]\n"

    text = f'name: "{name}"\nbackend: "python"\nmax_batch_size: {desc["max_batch"]}\n'
    text += tensors("input", desc["inputs"]) + tensors("output", desc["outputs"])
    text += (f"instance_group [\n  {{ count: {instances} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }}\n]\n")
    if desc["max_batch"] > 0:
        text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
    return text


def _model_name(path: pathlib.Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    return name or "model"


def load_or_build(path, max_batch: int = 64):
    """A plan file as it is; an ONNX model built on the CPU reference with dim 0 dynamic
    (1..max_batch) where the model leaves it symbolic, else as the model fixes it."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        if f.read(8) == b"KILNPLAN":
            return kiln.load_plan(str(path))
    model = kiln.load_onnx(str(path))
    symbolic = [i for i in model.inputs if any(not isinstance(d, int) for d in i["shape"])]
    if not symbolic:
        return kiln.build(model)
    lo, hi = {}, {}
    for i in model.inputs:
        dims = list(i["shape"])
        others = [d for d in dims[1:] if not isinstance(d, int)]
        if others:
            raise kiln.Error(f"input '{i['name']}' of {path} has symbolic dims besides dim 0 ({dims}): build a "
                             "plan with the dims you serve (kiln.build(..., min_shapes=..., max_shapes=...)) "
                             "and serve the plan file")
        lo[i["name"]] = [1 if not isinstance(d, int) else d for d in dims]
        hi[i["name"]] = [max_batch if not isinstance(d, int) else d for d in dims]
    return kiln.build(model, min_shapes=lo, max_shapes=hi)


def write_repository(models: Sequence, repo, *, max_batch: int = 64, instances: int = 1,
                     max_queue_delay_us: int = 2000) -> list:
    """Writes a Triton model repository for plan files or ONNX models into `repo`; returns the
    model names. The plans are saved beside the model.py that serves them."""
    repo = pathlib.Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    names = []
    for m in models:
        path = pathlib.Path(m)
        name = _model_name(path)
        if name in names:
            raise kiln.Error(f"two models named '{name}' ({path}): rename one")
        plan = load_or_build(path, max_batch)
        desc = describe(plan)
        gpu = plan.target.startswith("cuda") and kiln.gpu_count() > 0
        version = repo / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        plan.save(str(version / "model.plan"))
        shutil.copyfile(pathlib.Path(__file__).with_name("triton_model.py"), version / "model.py")
        (version / "kiln.json").write_text(json.dumps({"source": str(path.resolve()), **desc}, indent=1) + "\n")
        (repo / name / "config.pbtxt").write_text(
            config_pbtxt(name, desc, instances=instances, gpu=gpu, max_queue_delay_us=max_queue_delay_us))
        names.append(name)
    return names


def find_tritonserver(workdir) -> tuple:
    """(tritonserver path, backend dir, extra LD_LIBRARY_PATH): nvidia-pytriton's bundled server,
    with its Python backend copied to workdir/backends plus the stub built for this Python, else a
    tritonserver on PATH (with its own backends). Raises kiln.Error naming both when neither exists."""
    try:
        import pytriton
        dist = pathlib.Path(pytriton.__file__).parent / "tritonserver"
        binary = dist / "bin" / "tritonserver"
        stub = dist / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / \
            "triton_python_backend_stub"
        if binary.exists() and stub.exists():
            backends = pathlib.Path(workdir) / "backends"
            if backends.exists():
                shutil.rmtree(backends)
            shutil.copytree(dist / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
            libs = pathlib.Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
            return str(binary), str(backends), str(libs)
    except ImportError:
        pass
    found = shutil.which("tritonserver")
    if found:
        return found, None, None
    raise kiln.Error("no Triton server: pip install nvidia-pytriton (it bundles tritonserver and its Python "
                     "backend) or put a tritonserver on PATH")


class Server:
    """A tritonserver process on a model repository (a context manager: stops it on exit)."""

    def __init__(self, repo, *, http_port: int = 8000, grpc_port: int = 8001, metrics_port: Optional[int] = None,
                 log=None, verbose: bool = False, host: str = "127.0.0.1", exit_timeout: int = 10):
        self.repo = pathlib.Path(repo).resolve()
        self.http_port, self.grpc_port = http_port, grpc_port
        # The backend folder lives outside the repository (Triton takes every folder there for a model).
        self.workdir = tempfile.mkdtemp(prefix="kiln-triton-")
        workdir = self.workdir
        binary, backends, libs = find_tritonserver(workdir)
        self.argv = [binary, f"--model-repository={self.repo}", f"--http-port={http_port}",
                     f"--grpc-port={grpc_port}", f"--http-address={host}", f"--grpc-address={host}",
                     "--disable-auto-complete-config", "--strict-readiness=true",
                     f"--exit-timeout-secs={exit_timeout}"]
        if backends:
            self.argv.append(f"--backend-directory={backends}")
        if metrics_port:
            self.argv += [f"--metrics-port={metrics_port}", f"--metrics-address={host}"]
        else:
            self.argv.append("--allow-metrics=false")
        if verbose:
            self.argv.append("--log-verbose=1")
        env = os.environ.copy()
        if libs:
            env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), libs) if p)
        # model.py imports the kiln that serves: the folder above this package, first on its
        # sys.path (the stub's embedded interpreter ignores PYTHONPATH; model.py reads
        # KILN_PYTHON_ROOT; PYTHONPATH still serves a tritonserver whose stub honours it).
        pkg_root = str(pathlib.Path(kiln.__file__).resolve().parent.parent)
        env["KILN_PYTHON_ROOT"] = pkg_root
        env["PYTHONPATH"] = ":".join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        # The stub links libpython; a Python built with --enable-shared keeps it in its prefix's lib.
        pylib = os.path.join(sys.base_prefix, "lib")
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), pylib) if p)
        env["PATH"] = os.path.dirname(sys.executable) + ":" + env.get("PATH", "")
        self.env = env
        self.log = log
        self.proc = None

    def start(self) -> "Server":
        out = open(self.log, "ab") if self.log else None
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out or None, stderr=subprocess.STDOUT if out else None,
                                     start_new_session=True)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise kiln.Error(f"tritonserver exited with status {self.proc.returncode} before it was ready"
                                 + (f" (its log: {self.log})" if self.log else ""))
            if self.ready():
                return
            time.sleep(0.2)
        raise kiln.Error(f"tritonserver not ready after {timeout:g} s" + (f" (its log: {self.log})" if self.log else ""))

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as Triton expects (it drains requests and unloads models); SIGKILL after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            self.cleanup()
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Server":
        if self.proc is None:
            self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kiln.serve",
                                 description="Serve kiln plans (or ONNX models) with Triton Inference Server.")
    ap.add_argument("models", nargs="+", metavar="PLAN_OR_MODEL", help="kiln plan files or ONNX models")
    ap.add_argument("--repo", default="kiln-triton-repo", help="the model repository to write (default %(default)s)")
    ap.add_argument("--http-port", type=int, default=8000)
    ap.add_argument("--grpc-port", type=int, default=8001)
    ap.add_argument("--metrics-port", type=int, default=0, help="Prometheus metrics port (default: off)")
    ap.add_argument("--max-batch", type=int, default=64,
                    help="dim 0 of an ONNX model with a symbolic batch: served as 1..N (default %(default)s)")
    ap.add_argument("--instances", type=int, default=1, help="model instances (each loads the plan once)")
    ap.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batcher's wait for a fuller batch")
    ap.add_argument("--write-only", action="store_true", help="write the repository and stop")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    try:
        names = write_repository(a.models, a.repo, max_batch=a.max_batch, instances=a.instances,
                                 max_queue_delay_us=a.max_queue_delay_us)
    except (kiln.Error, OSError) as e:
        print(f"kiln.serve: {e}", file=sys.stderr)
        return 1
    print(f"kiln.serve: wrote {a.repo}: {', '.join(names)}", flush=True)
    if a.write_only:
        return 0
    server = Server(a.repo, http_port=a.http_port, grpc_port=a.grpc_port, metrics_port=a.metrics_port or None,
                    verbose=a.verbose, host=a.host)
    # SIGTERM to this process stops the server too (it runs in its own session, away from Ctrl-C).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    server.start()
    try:
        server.wait_ready(120)
        print(f"kiln.serve: ready: HTTP {a.host}:{a.http_port}, gRPC {a.host}:{a.grpc_port}", flush=True)
        return server.proc.wait()
    except KeyboardInterrupt:
        server.stop()
        return 0
    except kiln.Error as e:
        print(f"kiln.serve: {e}", file=sys.stderr)
        server.stop()
        return 1


if __name__ == "__main__":
    sys.exit(main())
