#!/usr/bin/env python3
"""Writes deploy/kserve/schema/kserve-0.21.0-k8s-1.37.schema.json: one JSON Schema (draft 2020-12)
for the manifests in deploy/kserve, which tests/python/test_deploy.py validates them against,
offline, with the jsonschema package.

    pip download --no-deps kserve==0.21.0 kubernetes-validate==1.37.0 -d /tmp/wheels
    python3 tools/kserve_schema.py /tmp/wheels/kserve-0.21.0-py3-none-any.whl \
        /tmp/wheels/kubernetes_validate-1.37.0-py3-none-any.whl

Where its parts come from (both PyPI wheels, Apache-2.0, read as zip files; nothing is imported):
- The KServe types (InferenceService, ServingRuntime and every KServe type under them): the
  model classes of KServe's Python SDK 0.21.0 (kserve/models/*.py), which KServe generates
  from the OpenAPI spec of its Go API types, the same types its CRDs are generated from. Each
  class gives its fields (attribute_map: Python name -> JSON name), their types (openapi_types)
  and which must not be null (the setters that raise "must not be `None`"). A field that is not
  in the SDK is an error (additionalProperties: false), as the API server's strict field
  validation makes it.
- The Kubernetes types they use (ObjectMeta, Container, ResourceRequirements, Toleration, ...)
  and the core kinds deploy/ uses (Job, PersistentVolumeClaim): kubernetes-validate 1.37.0's
  strict JSON schemas of Kubernetes 1.37 (additionalProperties: false), copied without their
  descriptions.

Two types the SDK names but does not define (V1beta1MetricQuantity, a resource.Quantity in KServe's
Go API, taken as one; V1alpha1WorkerSpec, left as any object) are listed in the file's
x-kiln-unchecked, and the roots' status (the controller's) is not checked.

What it does not check: the CRD's own enums, defaults and CEL rules (the SDK does not carry
them) and the KServe webhook's checks (one predictor framework, a runtime that supports the model
format); test_deploy.py checks the few of those the manifests rely on.
"""

import ast
import json
import pathlib
import re
import sys
import zipfile

KSERVE_VERSION = "0.21.0"
K8S_VERSION = "1.37.0"
OUT = pathlib.Path(__file__).resolve().parents[1] / "deploy" / "kserve" / "schema" / \
    f"kserve-{KSERVE_VERSION}-k8s-{K8S_VERSION.rsplit('.', 1)[0]}.schema.json"

# (apiVersion, kind) -> the $defs entry it is validated against.
ROOTS = {
    "serving.kserve.io/v1beta1 InferenceService": "kserve.V1beta1InferenceService",
    "serving.kserve.io/v1alpha1 ServingRuntime": "kserve.V1alpha1ServingRuntime",
    "batch/v1 Job": "io.k8s.api.batch.v1.Job",
    "v1 PersistentVolumeClaim": "io.k8s.api.core.v1.PersistentVolumeClaim",
}
ROOT_CLASSES = {r[len("kserve."):] for r in ROOTS.values() if r.startswith("kserve.")}
K8S_PREFERENCE = ["io.k8s.api.core.v1.", "io.k8s.apimachinery.pkg.apis.meta.v1.", "io.k8s.api.apps.v1.",
                  "io.k8s.apimachinery.pkg.api.resource."]
PRIMITIVES = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
              "bool": {"type": "boolean"}, "object": {}, "datetime": {"type": "string"},
              "date": {"type": "string"}}


def sdk_classes(wheel):
    """{class name: (openapi_types, attribute_map, required python names)} of kserve/models."""
    classes = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not re.match(r"kserve/models/[a-z0-9_]+\.py$", name) or name.endswith("__init__.py"):
                continue
            src = z.read(name).decode()
            for node in ast.parse(src).body:
                if not isinstance(node, ast.ClassDef):
                    continue
                found = {}
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                            isinstance(stmt.targets[0], ast.Name) and \
                            stmt.targets[0].id in ("openapi_types", "attribute_map"):
                        found[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                if "openapi_types" in found:
                    required = set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", src))
                    classes[node.name] = (found["openapi_types"], found["attribute_map"], required)
    return classes


def k8s_definitions(wheel):
    base = f"kubernetes_validate/kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json"
    with zipfile.ZipFile(wheel) as z:
        return json.loads(z.read(base))["$defs"]


def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k != "description"}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    sdk = sdk_classes(argv[1])
    k8s = k8s_definitions(argv[2])
    defs, k8s_used, unchecked = {}, set(), set()

    def k8s_name(t):
        m = re.match(r"K8sIoApi([A-Z][a-z]+)(V\d+(?:alpha\d+|beta\d+)?)(\w+)$", t)
        if m:
            name = f"io.k8s.api.{m.group(1).lower()}.{m.group(2).lower()}.{m.group(3)}"
            if name in k8s:
                return name
        m = re.match(r"V1(\w+)$", t)
        if m:
            for prefix in K8S_PREFERENCE:
                if prefix + m.group(1) in k8s:
                    return prefix + m.group(1)
        if t in ("ResourceQuantity", "V1beta1MetricQuantity"):
            # V1beta1MetricQuantity is named by V1beta1MetricTarget but has no class in the SDK;
            # in KServe's Go API it is a resource.Quantity.
            return "io.k8s.apimachinery.pkg.api.resource.Quantity"
        raise SystemExit(f"kserve_schema: no Kubernetes schema for the SDK type '{t}'")

    def schema_of(t):
        t = t.strip()
        if t in PRIMITIVES:
            return dict(PRIMITIVES[t])
        m = re.match(r"list\[(.+)\]$", t)
        if m:
            return {"type": "array", "items": schema_of(m.group(1))}
        m = re.match(r"dict\(str, (.+)\)$", t)
        if m:
            return {"type": "object", "additionalProperties": schema_of(m.group(1))}
        if t in sdk:
            add_sdk(t)
            return {"$ref": f"#/$defs/kserve.{t}"}
        if re.match(r"V1(alpha|beta)\d", t) and t != "V1beta1MetricQuantity":
            # A KServe type the SDK names but does not define: any object, listed in the file.
            unchecked.add(t)
            return {"type": "object"}
        name = k8s_name(t)
        k8s_used.add(name)
        return {"$ref": f"#/$defs/{name}"}

    def add_sdk(cls):
        key = f"kserve.{cls}"
        if key in defs:
            return
        defs[key] = {}  # placed first: recursive types end here
        types, names, required = sdk[cls]
        # status is the controller's to write (its Knative types are not in the SDK): not checked.
        props = {names[p]: {"type": "object"} if p == "status" and cls in ROOT_CLASSES else schema_of(t)
                 for p, t in sorted(types.items())}
        d = {"type": "object", "properties": props, "additionalProperties": False}
        req = sorted(names[p] for p in required if p in names)
        if req:
            d["required"] = req
        defs[key] = d

    for gv_kind, root in ROOTS.items():
        if root.startswith("kserve."):
            add_sdk(root[len("kserve."):])
            api_version, kind = gv_kind.split()
            d = defs[root]
            d["properties"]["apiVersion"] = {"const": api_version}
            d["properties"]["kind"] = {"const": kind}
            d["required"] = sorted(set(d.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
        else:
            k8s_used.add(root)
    # The Kubernetes definitions reachable from those used.
    todo = list(k8s_used)
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        defs[name] = strip(k8s[name])
        for ref in re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(defs[name])):
            if ref not in defs:
                todo.append(ref)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (f"Generated by tools/kserve_schema.py from the PyPI wheels kserve {KSERVE_VERSION} (KServe's "
                     f"Python SDK model classes: fields, types, non-null fields) and kubernetes-validate "
                     f"{K8S_VERSION} (Kubernetes {K8S_VERSION.rsplit('.', 1)[0]} strict schemas, descriptions "
                     "removed); both Apache-2.0. Regenerate with that script; do not edit."),
        "x-kiln-roots": ROOTS,
        "x-kiln-unchecked": sorted(unchecked),
        "$defs": dict(sorted(defs.items())),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")
    print(f"kserve_schema: wrote {OUT} ({len(defs)} definitions, {OUT.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
