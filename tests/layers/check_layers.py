#!/usr/bin/env python3
"""The layering of DESIGN.md ("Which part may include which"), checked against the build.

1. Each layer's library: a probe file that includes one header of every layer is preprocessed
   with the include flags the build really uses for that library (compile_commands.json). A
   header of a layer it may use must be found; any other must fail with "No such file". So an
   upward include (the IR including the plan, the reference including the runtime) cannot build.
2. Each public header (include/kiln/<layer>/, and the header-only DSL) preprocesses alone with
   the include views of its own layer and those below it (build/layers/), never the kernels: a
   public header includes no kernel header and nothing above its layer.
3. No source reaches around the include paths with "../" or a path into src/ of another layer.

usage: check_layers.py --build-dir BUILD --source-dir SRC --cxx "<c++ compiler>"
"""
import argparse
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

# The rule (DESIGN.md): the layers each layer may include, itself included. The passes' public
# headers are kiln/build; "ir" also covers the IR's internal headers (src/ir, as "ir/ops/...").
MAY_USE = {
    "ir": {"ir"},
    "dsl": {"dsl", "ir"},
    "import": {"import", "ir"},
    "plan": {"plan", "ir"},
    "passes": {"passes", "plan", "ir"},
    "reference": {"reference", "plan", "ir"},
    "runtime": {"runtime", "plan", "ir", "kernels"},
    "kernels": {"kernels"},
}
# One header of each layer to probe with (public headers, the IR's internal ones, a kernel).
PROBE = {
    "ir": ["kiln/ir/graph.hpp", "ir/ops/infer_util.hpp"],
    "dsl": ["kiln/dsl/dsl.hpp"],
    "import": ["kiln/import/onnx.hpp"],
    "plan": ["kiln/plan/plan.hpp"],
    "passes": ["kiln/build/builder.hpp"],
    "reference": ["kiln/reference/executor.hpp"],
    "runtime": ["kiln/runtime/engine.hpp"],
    "kernels": ["pointwise.cuh"],
}
# Private headers of a layer's own folder (a layer reaches its own by the quoted include's
# same-folder rule) and the header the import generates: no other layer may reach them.
PRIVATE = {"passes/pass_util.hpp": "passes", "reference/kernel_util.hpp": "reference",
           "runtime/check.hpp": "runtime", "onnx.pb.h": "import"}
# The folder of include/kiln each header-owning layer has.
PUBLIC_FOLDER = {"ir": "ir", "dsl": "dsl", "import": "import", "plan": "plan", "passes": "build",
                 "reference": "reference", "runtime": "runtime"}
LIBRARY_LAYERS = ["ir", "import", "plan", "passes", "reference", "runtime", "kernels"]


def layer_of_source(path, src):
    rel = os.path.relpath(path, src)
    parts = rel.split(os.sep)
    if parts[0] == "kernels":
        return "kernels"
    if parts[0] == "src" and len(parts) > 2 and parts[1] in MAY_USE:
        return parts[1]
    return None


def include_flags(args):
    """The flags of a compile command that decide where includes are found."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a in ("-I", "-isystem", "-iquote", "-idirafter"):
            out += [a, args[i + 1]]
            i += 2
            continue
        if a.startswith(("-I", "-isystem", "-iquote", "-idirafter", "-std=", "-D")):
            out.append(a)
        i += 1
    return out


def preprocess_all(cxx, jobs, cwd):
    """{(flags, header): (found, diagnostic)} for every (flags, header) in jobs, in parallel."""
    jobs = list(dict.fromkeys(jobs))
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda j: preprocess(cxx, list(j[0]), j[1], cwd), jobs)
        return dict(zip(jobs, results))


def preprocess(cxx, flags, header, cwd):
    """(found, diagnostic) for a translation unit that includes only `header`."""
    with tempfile.NamedTemporaryFile("w", suffix=".cpp", delete=False) as f:
        f.write(f'#include "{header}"\n')
        probe = f.name
    try:
        p = subprocess.run(cxx + ["-E", "-o", os.devnull] + flags + [probe], cwd=cwd,
                           capture_output=True, text=True)
    finally:
        os.unlink(probe)
    return p.returncode == 0, p.stderr


def not_found(diag, header):
    return re.search(re.escape(header) + r":? No such file or directory", diag) is not None


def check_libraries(args, cxx, problems):
    with open(os.path.join(args.build_dir, "compile_commands.json")) as f:
        commands = json.load(f)
    flags_of = {}
    for c in commands:
        path = c["file"] if os.path.isabs(c["file"]) else os.path.join(c["directory"], c["file"])
        layer = layer_of_source(os.path.normpath(path), args.source_dir)
        if layer is None:
            continue
        argv = c["arguments"] if "arguments" in c else shlex.split(c["command"])
        flags = include_flags(argv[1:])
        if layer == "kernels":  # nvcc finds the CUDA headers without a flag
            cuda = os.path.dirname(os.path.dirname(os.path.realpath(shutil.which(argv[0]) or argv[0])))
            flags = flags + ["-isystem", os.path.join(cuda, "include")]
        flags_of.setdefault(layer, flags)
    headers = [h for hs in PROBE.values() for h in hs] + list(PRIVATE)
    done = preprocess_all(cxx, [(tuple(f), h) for f in flags_of.values() for h in headers],
                          args.build_dir)
    for layer in LIBRARY_LAYERS:
        if layer not in flags_of:
            problems.append(f"{layer}: no compile command in compile_commands.json")
            continue
        key = tuple(flags_of[layer])
        row = []
        for other, headers in PROBE.items():
            for h in headers:
                found, diag = done[key, h]
                allowed = other in MAY_USE[layer]
                row.append(f"{h}:{'ok' if found else 'refused'}")
                if allowed and not found:
                    problems.append(f"{layer} may include {h} ({other}), but its build cannot:\n"
                                    f"{diag[:1500]}")
                elif not allowed and (found or not not_found(diag, h)):
                    problems.append(f"{layer} must not include {h} ({other}), but "
                                    + ("its build finds it" if found else
                                       f"it failed for another reason:\n{diag[:1500]}"))
        for h, owner in PRIVATE.items():
            if owner == layer:
                continue
            found, diag = done[key, h]
            if found or not not_found(diag, h):
                problems.append(f"{layer} reaches another layer's private header {h}")
        print(f"{layer:10} " + " ".join(row))


def check_public_headers(args, cxx, problems):
    views = os.path.join(args.build_dir, "layers")
    jobs = []
    for layer, folder in PUBLIC_FOLDER.items():
        flags = ["-std=c++20", "-I" + os.path.join(args.build_dir, "include")]
        flags += ["-I" + os.path.join(views, l) for l in sorted(MAY_USE[layer]) if l != "kernels"]
        root = os.path.join(args.source_dir, "include", "kiln", folder)
        jobs += [(tuple(flags), f"kiln/{folder}/{name}") for name in sorted(os.listdir(root))
                 if name.endswith(".hpp")]
    for (_, h), (found, diag) in preprocess_all(cxx, jobs, args.build_dir).items():
        if not found:
            problems.append(f"public header {h} includes what its layer may not:\n{diag[:1500]}")
    print(f"{len(jobs)} public headers preprocess with their own layer's views")


def check_sources(args, problems):
    pattern = re.compile(r'^\s*#\s*include\s*"(\.\./[^"]*)"', re.M)
    for top in ("include", "src", "kernels"):
        for dirpath, _, names in os.walk(os.path.join(args.source_dir, top)):
            for name in names:
                if not name.endswith((".hpp", ".cpp", ".cuh", ".cu", ".inc", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, errors="replace") as f:
                    for m in pattern.finditer(f.read()):
                        problems.append(f"{os.path.relpath(path, args.source_dir)}: "
                                        f'#include "{m.group(1)}" reaches around the layers')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--cxx", required=True)
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    args.source_dir = os.path.abspath(args.source_dir)
    cxx = shlex.split(args.cxx)
    problems = []
    check_libraries(args, cxx, problems)
    check_public_headers(args, cxx, problems)
    check_sources(args, problems)
    for p in problems:
        print("FAIL " + p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
