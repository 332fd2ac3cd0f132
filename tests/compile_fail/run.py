#!/usr/bin/env python3
"""Compile-fail tests for the typed DSL, in the manner of fmt's compile-error-test.

Each case is a tiny .cpp file. A case with `// must-compile` must compile; any other case must
NOT compile, and its diagnostic must contain every `// expect: <text>` line of the case (the layer
kind and the expected and actual numbers). A case's `// first-line: <text>` lines must all be in
the first line of its diagnostic that says "error:" or "note:" (the layer kind, the rule and the
numbers), and such a diagnostic has at most --max-lines lines. Every case is checked with --cxx and
with each --also compiler that is installed (clang++-16, say). Cases compile with -fsyntax-only,
in parallel.

usage: run.py --cxx "<compiler and flags>" [--also clang++-16] -I <include dir> ...
              <case.cpp or folder of cases> ...
"""
import argparse
import concurrent.futures
import os
import re
import shlex
import shutil
import subprocess
import sys


def parse_case(path):
    expects, firsts, must_compile = [], [], False
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*//\s*expect:\s?(.*\S)\s*$", line)
            if m:
                expects.append(m.group(1))
            m = re.match(r"\s*//\s*first-line:\s?(.*\S)\s*$", line)
            if m:
                firsts.append(m.group(1))
            if re.match(r"\s*//\s*must-compile\b", line):
                must_compile = True
    return expects, firsts, must_compile


def norm(text):
    return re.sub(r">\s+>", ">>", re.sub(r">\s+>", ">>", text))


def run_case(cxx, includes, path, max_lines):
    expects, firsts, must_compile = parse_case(path)
    cmd = cxx + ["-std=c++20", "-fsyntax-only", "-fdiagnostics-color=never"]
    cmd += ["-I" + i for i in includes] + [path]
    p = subprocess.run(cmd, capture_output=True, text=True)
    diag = p.stdout + p.stderr
    name = os.path.basename(path) + " [" + os.path.basename(cxx[0]) + "]"
    if must_compile:
        if p.returncode != 0:
            return False, f"FAIL {name}: must compile, but did not:\n{diag[:4000]}"
        return True, f"ok   {name} (compiles)"
    if p.returncode == 0:
        return False, f"FAIL {name}: compiled, but must not"
    if not expects and not firsts:
        return False, f"FAIL {name}: a failing case needs at least one '// expect:' or '// first-line:' line"
    # g++ writes "a<b<1> >", clang "a<b<1>>"; an expectation "X || Y" holds when either does.
    def found(e, text):
        return any(norm(alt.strip()) in norm(text) for alt in e.split(" || "))
    missing = [e for e in expects if not found(e, diag)]
    if missing:
        return False, (f"FAIL {name}: the diagnostic lacks {missing}:\n" + diag[:6000])
    lines = diag.splitlines()
    first = next((l for l in lines if re.search(r"\b(error|note):", l)), "")
    if firsts:
        missing = [e for e in firsts if not found(e, first)]
        if missing:
            return False, f"FAIL {name}: its first error/note line lacks {missing}:\n{first}\n" + diag[:6000]
        if len(lines) > max_lines:
            return False, f"FAIL {name}: {len(lines)} lines of diagnostic, more than {max_lines}:\n" + diag[:6000]
    return True, f"ok   {name} ({len(lines)} lines): {first.strip()[:200]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cxx", required=True, help="compiler command (shell words)")
    ap.add_argument("--also", action="append", default=[],
                    help="another compiler to check every case with, where installed")
    ap.add_argument("--max-lines", type=int, default=20,
                    help="most lines of a diagnostic with '// first-line:' expectations")
    ap.add_argument("-I", dest="includes", action="append", default=[])
    ap.add_argument("-j", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("cases", nargs="+")
    a = ap.parse_args()
    compilers = [shlex.split(a.cxx)]
    for other in a.also:
        if shutil.which(shlex.split(other)[0]):
            compilers.append(shlex.split(other))
        else:
            print(f"note: {other} is not installed: its checks are skipped")
    cases = []
    for c in a.cases:
        if os.path.isdir(c):
            cases += [os.path.join(c, f) for f in os.listdir(c) if f.endswith(".cpp")]
        else:
            cases.append(c)
    a.cases = cases
    jobs = [(cxx, c) for c in sorted(a.cases) for cxx in compilers]
    with concurrent.futures.ThreadPoolExecutor(a.j) as ex:
        results = list(ex.map(lambda j: run_case(j[0], a.includes, j[1], a.max_lines), jobs))
    for _, msg in results:
        print(msg)
    failed = sum(1 for ok, _ in results if not ok)
    fail_cases = sum(1 for c in a.cases if not parse_case(c)[2])
    print(f"{len(results) - failed}/{len(results)} checks passed: {len(a.cases)} cases ({fail_cases} must fail, "
          f"{len(a.cases) - fail_cases} must compile) x {len(compilers)} compiler(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
