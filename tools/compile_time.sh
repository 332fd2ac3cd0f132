#!/bin/sh
# Prints how long examples/resnet50.cpp (the DSL's largest user: 53 convolutions, 16 residual
# blocks) takes to compile to an object file at -O2, as the budget in the DSL issue asks.
# Wall time depends on what else the machine runs; the CPU time (user + sys) is the stabler figure.
#   tools/compile_time.sh [source.cpp]      (CXX overrides the compiler)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$root/examples/resnet50.cpp}
cxx=${CXX:-c++}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# bash's `times` is not in POSIX sh; measure the compiler as a child with python3 for CPU time.
python3 - "$cxx" "$root" "$src" "$out" <<'PY'
import os, resource, subprocess, sys, time
cxx, root, src, out = sys.argv[1:]
cmd = cxx.split() + ["-std=c++20", "-O2", "-I" + os.path.join(root, "include"), "-c", src,
                     "-o", os.path.join(out, "x.o")]
t0 = time.monotonic()
r = subprocess.run(cmd)
wall = time.monotonic() - t0
if r.returncode != 0:
    sys.exit("compile failed: " + " ".join(cmd))
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
load = os.getloadavg()[0]
print(f"{os.path.relpath(src, root)}: {wall:.1f} s wall, {ru.ru_utime + ru.ru_stime:.1f} s CPU "
      f"(-O2, {os.cpu_count()} cores, load average {load:.1f}, peak memory {ru.ru_maxrss // 1024} MiB)")
PY
