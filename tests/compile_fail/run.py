#!/usr/bin/env python3
"""Compile-fail tests for the typed DSL, in the manner of fmt's compile-error-test.

Each case is a tiny .cpp file. A case with `// must-compile` must compile; any other case must
NOT compile, and its diagnostic must contain every `// expect: <text>` line of the case (the layer
kind and the expected and actual numbers). Cases compile with -fsyntax-only, in parallel.

usage: run.py --cxx "<compiler and flags>" -I <include dir> ... <case.cpp or folder of cases> ...
"""
import argparse
import concurrent.futures
import os
import re
import shlex
import subprocess
import sys


def parse_case(path):
    expects, must_compile = [], False
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*//\s*expect:\s?(.*\S)\s*$", line)
            if m:
                expects.append(m.group(1))
            if re.match(r"\s*//\s*must-compile\b", line):
                must_compile = True
    return expects, must_compile


def run_case(cxx, includes, path):
    expects, must_compile = parse_case(path)
    cmd = cxx + ["-std=c++20", "-fsyntax-only", "-fdiagnostics-color=never"]
    cmd += ["-I" + i for i in includes] + [path]
    p = subprocess.run(cmd, capture_output=True, text=True)
    diag = p.stdout + p.stderr
    name = os.path.basename(path)
    if must_compile:
        if p.returncode != 0:
            return False, f"FAIL {name}: must compile, but did not:\n{diag[:4000]}"
        return True, f"ok   {name} (compiles)"
    if p.returncode == 0:
        return False, f"FAIL {name}: compiled, but must not"
    if not expects:
        return False, f"FAIL {name}: a failing case needs at least one '// expect:' line"
    missing = [e for e in expects if e not in diag]
    if missing:
        return False, (f"FAIL {name}: the diagnostic lacks {missing}:\n" + diag[:6000])
    first = next((l for l in diag.splitlines() if "error" in l), "")
    return True, f"ok   {name}: {first.strip()[:160]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cxx", required=True, help="compiler command (shell words)")
    ap.add_argument("-I", dest="includes", action="append", default=[])
    ap.add_argument("-j", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("cases", nargs="+")
    a = ap.parse_args()
    cxx = shlex.split(a.cxx)
    cases = []
    for c in a.cases:
        if os.path.isdir(c):
            cases += [os.path.join(c, f) for f in os.listdir(c) if f.endswith(".cpp")]
        else:
            cases.append(c)
    a.cases = cases
    with concurrent.futures.ThreadPoolExecutor(a.j) as ex:
        results = list(ex.map(lambda c: run_case(cxx, a.includes, c), sorted(a.cases)))
    for _, msg in results:
        print(msg)
    failed = sum(1 for ok, _ in results if not ok)
    fail_cases = sum(1 for c in a.cases if not parse_case(c)[1])
    print(f"{len(results) - failed}/{len(results)} cases passed "
          f"({fail_cases} must fail, {len(results) - fail_cases} must compile)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
