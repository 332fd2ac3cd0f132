"""Serving a kiln plan with Triton Inference Server (kiln.serve, issue 17 items 2 and 3): a
MatMul+Relu ONNX model with a dynamic batch, served on loopback through Triton's Python backend
on the CPU reference, with tritonclient over HTTP and gRPC, and the load test (kiln.loadtest) run
as docs/serving.md shows it. Skips when nvidia-pytriton (the
bundled tritonserver) or tritonclient is missing (tools/setup.sh installs both)."""

import concurrent.futures
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[all] is not installed (tools/setup.sh)")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[all] is not installed (tools/setup.sh)")
from tritonclient.utils import InferenceServerException  # noqa: E402

import kiln  # noqa: E402
import kiln.serve  # noqa: E402

MODEL = "matmul_relu"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _matmul_relu(path):
    """x[N,16] @ w[16,8] -> Relu -> y[N,8], N symbolic."""
    w = np.random.default_rng(3).standard_normal((16, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        import pytriton  # noqa: F401
    except ImportError:
        import shutil
        if not shutil.which("tritonserver"):
            pytest.skip("no Triton server: nvidia-pytriton is not installed and no tritonserver on PATH "
                        "(tools/setup.sh installs nvidia-pytriton)")
    d = tmp_path_factory.mktemp("triton")
    onnx_path = d / f"{MODEL}.onnx"
    _matmul_relu(onnx_path)
    repo = d / "repo"
    # The same as: python -m kiln.serve matmul_relu.onnx --repo repo --max-batch 64 --http-port P --grpc-port Q
    assert kiln.serve.write_repository([onnx_path], repo, max_batch=64) == [MODEL]
    srv = kiln.serve.Server(repo, http_port=_free_port(), grpc_port=_free_port(), log=str(d / "tritonserver.log"))
    srv.start()
    try:
        srv.wait_ready(50)
    except kiln.Error:
        srv.stop()
        raise
    srv.plan = kiln.load_plan(str(repo / MODEL / "1" / "model.plan"))
    srv.repo_dir = repo
    srv.clients = []
    yield srv
    _close_clients(srv)
    srv.stop()


def _http(srv):
    c = httpclient.InferenceServerClient(f"127.0.0.1:{srv.http_port}", network_timeout=30)
    srv.clients.append(c)
    return c


def _grpc(srv):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
    srv.clients.append(c)
    return c


def _close_clients(srv):
    """Triton waits (up to --exit-timeout-secs) for open HTTP connections when it stops."""
    while srv.clients:
        srv.clients.pop().close()


def _infer(client, mod, x, name="x", dtype="FP32"):
    inp = mod.InferInput(name, list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    return client.infer(MODEL, [inp], outputs=[mod.InferRequestedOutput("y")]).as_numpy("y")


def test_repository_layout_and_config(server):
    repo = server.repo_dir
    assert sorted(p.name for p in (repo / MODEL).iterdir()) == ["1", "config.pbtxt"]
    assert sorted(p.name for p in (repo / MODEL / "1").iterdir() if p.name != "__pycache__") == ["kiln.json", "model.plan", "model.py"]
    cfg = (repo / MODEL / "config.pbtxt").read_text()
    assert 'backend: "python"' in cfg and "max_batch_size: 64" in cfg and "dynamic_batching" in cfg
    assert "dims: [ 16 ]" in cfg and "dims: [ 8 ]" in cfg and "TYPE_FP32" in cfg


def test_server_ready(server):
    c = _http(server)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(MODEL)
    assert _grpc(server).is_model_ready(MODEL)
    meta = c.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 8]}]


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_http_and_grpc_equal_the_cpu_reference(server, batch):
    x = np.random.default_rng(batch).uniform(-1, 1, (batch, 16)).astype(np.float32)
    want = server.plan.run({"x": x})["y"]
    np.testing.assert_array_equal(_infer(_http(server), httpclient, x), want)
    np.testing.assert_array_equal(_infer(_grpc(server), grpcclient, x), want)


def test_concurrent_clients_are_batched(server):
    clients, per_client = 16, 200
    xs = [np.random.default_rng(100 + i).uniform(-1, 1, (1, 16)).astype(np.float32) for i in range(clients)]
    wants = [server.plan.run({"x": x})["y"] for x in xs]

    def work(i):
        c = _grpc(server)
        for _ in range(per_client):
            np.testing.assert_array_equal(_infer(c, grpcclient, xs[i]), wants[i])
        return per_client

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(work, range(clients)))
    elapsed = time.monotonic() - t0
    assert done == clients * per_client
    stats = _http(server).get_inference_statistics(MODEL)["model_stats"][0]
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
    print(f"\n{done} requests from {clients} clients in {elapsed:.1f} s ({done / elapsed:.0f}/s); "
          f"executions by batch size: {dict(sorted(sizes.items()))}")
    assert max(sizes) > 1, f"no batch larger than 1: {sizes}"
    assert int(stats["inference_count"]) >= done


def test_bad_requests_get_errors_and_the_server_keeps_serving(server):
    x = np.ones((2, 16), np.float32)
    for mod, client in ((httpclient, _http(server)), (grpcclient, _grpc(server))):
        with pytest.raises(InferenceServerException, match="unexpected inference input 'z'"):
            _infer(client, mod, x, name="z")
        with pytest.raises(InferenceServerException, match="FP64"):
            _infer(client, mod, x.astype(np.float64), dtype="FP64")
        with pytest.raises(InferenceServerException, match=r"input 'x'.*shape|shape.*input 'x'"):
            _infer(client, mod, np.ones((2, 15), np.float32))
        with pytest.raises(InferenceServerException, match="batch"):
            _infer(client, mod, np.ones((65, 16), np.float32))
        np.testing.assert_array_equal(_infer(client, mod, x), server.plan.run({"x": x})["y"])
    assert _http(server).is_server_ready()


# The load test as docs/serving.md shows it, on the server's gRPC port (8001 in the docs).
LOADTEST = ("python -m kiln.loadtest --url 127.0.0.1:{port} --protocol grpc --model matmul_relu "
            "--concurrency 16 --requests 400")


def _loadtest(args, timeout=120):
    argv = [sys.executable] + args.split()[1:] if args.startswith("python ") else args
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _table_rows(text):
    """The load test's tables: {column: value} per table (a header line, then a value line)."""
    blocks = [b.splitlines() for b in text.strip().split("\n\n")]
    return [dict(zip(b[0].split(), b[1].split())) for b in blocks if len(b) >= 2]


def test_loadtest_prints_throughput_and_latency(server):
    p = _loadtest(LOADTEST.format(port=server.grpc_port))
    print("\n" + p.stdout + p.stderr)
    assert p.returncode == 0, p.stderr
    client, stats = _table_rows(p.stdout)[:2]
    assert client["model"] == MODEL and client["protocol"] == "grpc" and client["concurrency"] == "16"
    assert int(client["requests"]) == 400 and int(client["errors"]) == 0
    p50, p90, p99, mx = (float(client[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
    assert 0 < p50 <= p90 <= p99 <= mx < 30_000
    assert float(client["req/s"]) > 0 and float(client["req/s"]) == float(client["infer/s"])
    # Triton's counters over the run: this client's requests (the last may be counted after its answer).
    assert 400 - 16 <= int(stats["server_requests"]) <= 400
    assert 1 <= int(stats["executions"]) <= int(stats["server_requests"]) and float(stats["avg_batch"]) >= 1


def test_loadtest_http_json_and_errors(server):
    p = _loadtest(f"python -m kiln.loadtest --url 127.0.0.1:{server.http_port} --protocol http --model {MODEL} "
                  "--concurrency 4 --requests 100 --batch 8 --warmup 4 --json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert (r["requests"], r["ok"], r["errors"], r["batch"]) == (100, 100, 0, 8)
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["inferences_per_s"] == pytest.approx(8 * r["requests_per_s"])
    for args, message in (("--model nope --requests 5", "model 'nope' is not ready"),
                          (f"--model {MODEL} --requests 5 --batch 65", "1..64 rows"),
                          (f"--model {MODEL} --requests 5 --shape x:15", "does not fit the model's dims [16]"),
                          (f"--model {MODEL} --requests 5 --shape z:16", "names no input")):
        p = _loadtest(f"python -m kiln.loadtest --url 127.0.0.1:{server.grpc_port} " + args)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)


# docs/serving.md's serve command, with free ports for 8000 and 8001.
SERVE = "python -m kiln.serve matmul_relu.onnx --repo kiln-repo --http-port {http} --grpc-port {grpc}"


def test_the_serve_command_serves_and_stops_on_sigterm(tmp_path):
    """The command as the docs give it, then the docs' load test against it, then SIGTERM."""
    _matmul_relu(tmp_path / "matmul_relu.onnx")
    http, grpc = _free_port(), _free_port()
    argv = [sys.executable] + SERVE.format(http=http, grpc=grpc).split()[1:]
    env = dict(os.environ)  # the kiln under test, from any folder (a relative PYTHONPATH would not do)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pathlib.Path(kiln.__file__).resolve().parents[1]),
                                                    env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("kiln.serve: ready:"):
                break
        assert lines and lines[-1].startswith("kiln.serve: ready:"), "".join(lines[-20:])
        p = _loadtest(LOADTEST.format(port=grpc).replace("--requests 400", "--requests 100"))
        assert p.returncode == 0, p.stdout + p.stderr
        assert _table_rows(p.stdout)[0]["errors"] == "0"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", http), timeout=1).close()


def test_server_stops_cleanly(server):
    _close_clients(server)
    t0 = time.monotonic()
    assert server.stop(30) == 0
    assert time.monotonic() - t0 < 15
    assert not server.ready()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.http_port), timeout=1).close()
