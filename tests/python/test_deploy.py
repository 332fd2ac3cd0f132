"""The scale-out files of issue 17 item 4, checked offline (no cluster, no Docker daemon here):
deploy/kserve/*.yaml validate against deploy/kserve/schema/*.schema.json (KServe 0.21's SDK types
and Kubernetes 1.37's strict schemas, made by tools/kserve_schema.py) with the jsonschema
package; the schema rejects what the API server would (an unknown field, a wrong type, a missing
required field); the manifests agree with each other, with deploy/Dockerfile and with
docs/serving.md; and the plan-building Job's commands run here (on the CPU: the plan is built,
its tactics are timed where a GPU is)."""

import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (tools/setup.sh)")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (tools/setup.sh)")

ROOT = pathlib.Path(__file__).resolve().parents[2]
KSERVE = ROOT / "deploy" / "kserve"
SCHEMA = KSERVE / "schema" / "kserve-0.21.0-k8s-1.37.schema.json"
DOC = ROOT / "docs" / "serving.md"


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def manifests():
    """{(apiVersion, kind): [(file name, document)]} of every manifest in deploy/kserve."""
    out = {}
    for path in sorted(KSERVE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.setdefault((doc["apiVersion"], doc["kind"]), []).append((path.name, doc))
    return out


def _one(manifests, api_version, kind):
    docs = manifests[(api_version, kind)]
    assert len(docs) == 1, docs
    return docs[0][1]


def _errors(schema, doc, like=None):
    """The schema's complaints about doc, validated as its kind (or as the kind of `like`)."""
    like = like or doc
    root = schema["x-kiln-roots"].get(f"{like['apiVersion']} {like['kind']}")
    assert root, f"no schema for {doc['apiVersion']} {doc['kind']}: add it to tools/kserve_schema.py ROOTS"
    validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{root}", "$defs": schema["$defs"]})
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_schema_says_where_it_comes_from(schema):
    assert "tools/kserve_schema.py" in schema["$comment"] and "kserve 0.21.0" in schema["$comment"]
    assert schema["$schema"].endswith("2020-12/schema")
    jsonschema.Draft202012Validator.check_schema({"$defs": schema["$defs"]})


def test_every_manifest_validates(schema, manifests):
    kinds = set(manifests)
    assert kinds == {("serving.kserve.io/v1beta1", "InferenceService"), ("serving.kserve.io/v1alpha1", "ServingRuntime"),
                     ("batch/v1", "Job"), ("v1", "PersistentVolumeClaim")}, kinds
    for docs in manifests.values():
        for name, doc in docs:
            assert _errors(schema, doc) == [], name


def _mutated(doc, path, value=None, delete=False):
    doc = json.loads(json.dumps(doc))
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("kind,path,value,delete,message", [
    ("InferenceService", ["spec", "predictor", "minReplica"], 2, False, "'minReplica' was unexpected"),
    ("InferenceService", ["spec", "predictor", "maxReplicas"], "4", False, "is not of type 'integer'"),
    ("InferenceService", ["spec", "predictor", "model", "storageURI"], "pvc://x", False, "'storageURI' was unexpected"),
    ("InferenceService", ["spec", "predictor", "model", "resources", "limits"], ["nvidia.com/gpu"], False,
     "is not of type 'object', 'null'"),
    ("InferenceService", ["kind"], "InferenceServices", False, "'InferenceService' was expected"),
    ("InferenceService", ["spec"], None, True, "'spec' is a required property"),
    ("ServingRuntime", ["spec", "containers", 0, "args"], "tritonserver", False, "is not of type 'array'"),
    ("Job", ["spec", "template", "spec", "containers", 0, "name"], None, True, "'name' is a required property"),
    ("Job", ["spec", "template", "spec", "nodeSelectors"], {}, False, "'nodeSelectors' was unexpected"),
])
def test_the_schema_rejects_what_the_api_server_would(schema, manifests, kind, path, value, delete, message):
    doc = next(d for (_, k), docs in manifests.items() if k == kind for _, d in docs)
    errors = _errors(schema, _mutated(doc, path, value, delete), like=doc)
    assert any(message in e for e in errors), errors


def test_the_manifests_agree(manifests):
    isvc = _one(manifests, "serving.kserve.io/v1beta1", "InferenceService")
    runtime = _one(manifests, "serving.kserve.io/v1alpha1", "ServingRuntime")
    job = _one(manifests, "batch/v1", "Job")
    pvc = _one(manifests, "v1", "PersistentVolumeClaim")
    pred = isvc["spec"]["predictor"]
    model = pred["model"]
    # Several replicas, each with a GPU, on the GPU type the plans were built on.
    assert pred["minReplicas"] >= 2 and pred["maxReplicas"] >= pred["minReplicas"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    job_pod = job["spec"]["template"]["spec"]
    assert pred["nodeSelector"] == job_pod["nodeSelector"]
    assert job_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # The Triton predictor: the runtime by name, a model format it serves, the image it runs.
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    container = runtime["spec"]["containers"][0]
    assert container["args"][0] == "tritonserver" and "--model-repository=/mnt/models" in container["args"]
    assert container["image"] == job_pod["containers"][0]["image"]
    assert container["image"].rsplit("/", 1)[-1] == "kiln-tritonserver:25.09"  # deploy/Dockerfile's tag
    # The repository the Job writes is the one the replicas read.
    m = re.fullmatch(r"pvc://([^/]+)/(.+)", model["storageUri"])
    assert m and m.group(1) == pvc["metadata"]["name"]
    assert job_pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    mount = job_pod["containers"][0]["volumeMounts"][0]["mountPath"]
    assert f"--repo {mount}/{m.group(2)} --write-only" in job_pod["containers"][0]["args"][0]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_the_plan_building_job_runs_here(manifests, tmp_path):
    """The Job's commands with /models in a temporary folder and this Python: the plan is built
    for cuda-fp16 (tactics are timed only where there is a GPU) and the repository written."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    job = _one(manifests, "batch/v1", "Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["bash", "-ec"]
    mount = c["volumeMounts"][0]["mountPath"]
    script = c["args"][0].replace(mount + "/", str(tmp_path) + "/").replace("python3 ", shlex.quote(sys.executable) + " ")
    # src/matmul_relu.onnx: x[N,16] -> MatMul -> Relu -> y[N,8], as test_triton serves.
    w = np.random.default_rng(3).standard_normal((16, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], [numpy_helper.from_array(w, "w")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    (tmp_path / "src").mkdir()
    onnx.save(m, str(tmp_path / "src" / "matmul_relu.onnx"))
    p = subprocess.run(["bash", "-ec", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    repo = tmp_path / "h100" / "kiln-repo" / "matmul_relu"
    assert sorted(f.name for f in (repo / "1").iterdir() if f.name != "__pycache__") == ["kiln.json", "model.plan", "model.py"]
    cfg = (repo / "config.pbtxt").read_text()
    assert "max_batch_size: 64" in cfg and "dims: [ 16 ]" in cfg and 'backend: "python"' in cfg
    import kiln
    assert kiln.load_plan(str(repo / "1" / "model.plan")).target == "cuda-fp16"


def test_the_docs_show_these_files_and_commands():
    doc = DOC.read_text()
    for path in sorted(KSERVE.glob("*.yaml")):
        assert f"deploy/kserve/{path.name}" in doc, path.name
    assert "docker build -f deploy/Dockerfile -t kiln-tritonserver:25.09" in doc
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3" in dockerfile
    assert "docker build -f deploy/Dockerfile -t kiln-tritonserver:25.09" in dockerfile
    assert "python3 tools/kserve_schema.py" in doc
