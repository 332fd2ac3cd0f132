"""Shared helpers of the end-to-end tests (run with /usr/bin/python3)."""
import subprocess
import sys
import time

SKIP = 77


def require(*modules):
    """Imports the modules or exits 77 (a skip for Meson) with a clear message."""
    for m in modules:
        try:
            __import__(m)
        except ImportError as e:
            print(f"SKIP: {sys.executable} cannot import {m} ({e}); install Debian's python3-{m} "
                  f"to run this end-to-end check")
            sys.exit(SKIP)


def run(cmd):
    """Runs a command, echoing it and its output; raises on failure. Returns seconds taken."""
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    t0 = time.time()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    seconds = time.time() - t0
    out = (r.stdout + r.stderr).strip()
    if out:
        print("  " + out.replace("\n", "\n  "), flush=True)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {r.returncode}")
    return seconds


def rel_err(got, want):
    """max|got - want| / max|want|, in float64."""
    import numpy as np
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise RuntimeError(f"shape {list(got.shape)} != expected {list(want.shape)}")
    return float(np.abs(got - want).max() / np.abs(want).max())
