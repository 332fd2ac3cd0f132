#!/usr/bin/env python3
"""Per-step GPU times of one tools/bench.py row: exports the row's model as bench.py does
(tools/bench_models.py: same seed, opset and exporter) and runs `kiln profile` on it, so a slow
row's table names the steps to work on.

usage: python3 tools/profile_row.py ROW [ROW...] --kiln build/tools/kiln [--work DIR] [--top N]
       [--iterations N] [--trace]
       python3 tools/profile_row.py --list

ROW is a row id of `python3 tools/bench.py --list` (bert-fp16-b32-s128, vit-b16-fp16-b64, ...).
Needs a GPU (kiln profile says "no GPU: ..." and exits 1 without one).
"""
import argparse
import os
import subprocess
import sys

import bench_models as bm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="*", help="row ids (see --list)")
    ap.add_argument("--list", action="store_true", help="print the row ids and exit")
    ap.add_argument("--kiln", default=os.path.join(bm.ROOT, "build", "tools", "kiln"))
    ap.add_argument("--work", default="/tmp/kiln-profile", help="where the ONNX files go")
    ap.add_argument("--top", type=int, default=25, help="the N slowest steps (default 25)")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--trace", action="store_true", help="also write WORK/ROW.trace.json")
    args = ap.parse_args()
    if args.list:
        print("\n".join(r.id for r in bm.ROWS if not r.blocked))
        return 0
    unknown = [r for r in args.rows if r not in bm.ROW_BY_ID]
    if unknown or not args.rows:
        ap.error(f"unknown row(s) {unknown}; --list names them" if unknown else "name a row")
    os.makedirs(args.work, exist_ok=True)
    rc = 0
    for rid in args.rows:
        row = bm.ROW_BY_ID[rid]
        if row.blocked or row.precision not in ("fp32", "fp16"):
            print(f"== {rid}: not profiled ({row.blocked or 'kiln builds fp32 and fp16 only'})")
            continue
        path = os.path.join(args.work, row.export_key + ".onnx")
        if not os.path.exists(path):
            model, inputs, outputs = bm.build(row)
            bm.export(row, model, inputs, outputs, path, "torchscript")
        cmd = [args.kiln, "profile", path, "--top", str(args.top),
               "--iterations", str(args.iterations)]
        cmd += ["--fp16"] if row.half else ["--gpu"]
        if row.dynamic:
            cmd += ["--shapes", row.shapes_arg()]
        if args.trace:
            cmd += ["--trace", os.path.join(args.work, rid + ".trace.json")]
        print(f"== {rid}: {' '.join(cmd)}", flush=True)
        rc = subprocess.run(cmd).returncode or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
