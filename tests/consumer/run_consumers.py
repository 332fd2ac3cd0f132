#!/usr/bin/env python3
"""kiln as an installed library: `meson install --destdir` into a temporary folder, then two
products outside the tree build lenet_consumer.cpp against it and run it on the CPU reference:
one with CMake (find_package(kiln), kiln::kiln), one with pkg-config (shared and static libkiln).
A third, a Meson project with kiln as its subproject, is configured and its build planned:
dependency('kiln') must come from kiln's meson.override_dependency and link libkiln.a.

usage: run_consumers.py --build-dir B --source-dir S --meson M --cxx CXX --version V
                        [--cmake CMAKE]
Exits 77 (skip) when pkg-config is missing; a consumer whose tool is missing is skipped by name.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, **kw):
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.stdout.write(p.stdout[-6000:] + p.stderr[-6000:])
        raise SystemExit(f"FAIL: exit {p.returncode}: {' '.join(cmd)}")
    return p.stdout


def check_output(exe, version, env):
    out = run([exe, version], env=env)
    print(out.strip())
    if "consumer ok" not in out:
        raise SystemExit(f"FAIL: {exe} did not print 'consumer ok'")


def check_needs(exe, libkiln_so):
    """Whether exe names libkiln.so among the shared libraries it needs is what it should."""
    if not shutil.which("readelf"):
        return
    needed = run(["readelf", "-d", exe])
    if ("libkiln.so" in needed) != libkiln_so:
        raise SystemExit(f"FAIL: {exe} should {'' if libkiln_so else 'not '}need libkiln.so:\n{needed}")


def find_prefix(destdir):
    """The install prefix inside destdir: the folder that holds include/kiln."""
    for dirpath, dirnames, _ in os.walk(destdir):
        if os.path.basename(dirpath) == "include" and "kiln" in dirnames:
            return os.path.dirname(dirpath)
    raise SystemExit(f"FAIL: no include/kiln under {destdir}")


def find_file(root, name):
    for dirpath, _, names in os.walk(root):
        if name in names:
            return os.path.join(dirpath, name)
    raise SystemExit(f"FAIL: {name} was not installed under {root}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--meson", required=True)
    ap.add_argument("--cxx", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--cmake")
    ap.add_argument("--skip", help="skip, saying why")
    args = ap.parse_args()
    args.source_dir = os.path.abspath(args.source_dir)
    if args.skip:
        print("SKIP: " + args.skip)
        return 77
    if not shutil.which("pkg-config"):
        print("SKIP: pkg-config is not installed")
        return 77
    meson = shlex.split(args.meson)

    with tempfile.TemporaryDirectory(prefix="kiln-consumer-") as tmp:
        destdir = os.path.join(tmp, "root")
        run(meson + ["install", "-C", args.build_dir, "--no-rebuild", "--quiet", "--destdir", destdir])
        prefix = find_prefix(destdir)
        libdir = os.path.dirname(find_file(prefix, "kiln.pc"))  # .../lib*/pkgconfig
        libdir = os.path.dirname(libdir)
        installed = sorted(os.path.relpath(os.path.join(d, f), prefix)
                           for d, _, fs in os.walk(prefix) for f in fs)
        print(f"installed {len(installed)} files under {prefix}, among them:")
        for f in installed:
            if not f.startswith("include/"):
                print("  " + f)
        # The consumers live outside the tree: a copy of tests/consumer in the temporary folder.
        consumers = os.path.join(tmp, "consumer")
        shutil.copytree(HERE, consumers, ignore=shutil.ignore_patterns("__pycache__"))
        env = dict(os.environ, LD_LIBRARY_PATH=libdir)

        # pkg-config: the .pc file names the real prefix; the sysroot maps it into destdir.
        pc_env = dict(env, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"),
                      PKG_CONFIG_SYSROOT_DIR=destdir)
        print(run(["pkg-config", "--modversion", "kiln"], env=pc_env).strip())
        if run(["pkg-config", "--modversion", "kiln"], env=pc_env).strip() != args.version:
            raise SystemExit("FAIL: kiln.pc has another version")
        out = os.path.join(tmp, "pkgconfig-build")
        os.makedirs(out)
        run(["sh", os.path.join(consumers, "pkgconfig", "build.sh"), args.cxx, out], env=pc_env)
        check_needs(os.path.join(out, "lenet_consumer_shared"), True)
        check_needs(os.path.join(out, "lenet_consumer_static"), False)
        check_output(os.path.join(out, "lenet_consumer_shared"), args.version, env)
        # The static one must run without libkiln.so in sight.
        check_output(os.path.join(out, "lenet_consumer_static"), args.version,
                     {k: v for k, v in env.items() if k != "LD_LIBRARY_PATH"})

        if args.cmake and shutil.which(args.cmake):
            cxx = shlex.split(args.cxx)  # "[launcher...] compiler", e.g. "ccache c++"
            # kiln::kiln as libkiln.so, then as libkiln.a (kiln_USE_STATIC_LIBS).
            for static in ("OFF", "ON"):
                out = os.path.join(tmp, "cmake-build-static-" + static)
                run([args.cmake, "-S", os.path.join(consumers, "cmake"), "-B", out,
                     f"-DCMAKE_PREFIX_PATH={prefix}", f"-DKILN_VERSION={args.version}",
                     f"-Dkiln_USE_STATIC_LIBS={static}",
                     f"-DCMAKE_CXX_COMPILER={cxx[-1]}", "-DCMAKE_BUILD_TYPE=Release"]
                    + ([f"-DCMAKE_CXX_COMPILER_LAUNCHER={';'.join(cxx[:-1])}"] if cxx[:-1] else []),
                    env=env)
                run([args.cmake, "--build", out], env=env)
                check_needs(os.path.join(out, "lenet_consumer"), static == "OFF")
                check_output(os.path.join(out, "lenet_consumer"), args.version,
                             env if static == "OFF" else
                             {k: v for k, v in env.items() if k != "LD_LIBRARY_PATH"})
        else:
            print("SKIP (cmake consumer): cmake is not installed")

        # kiln as a Meson subproject (a link to this tree in the consumer's subprojects/): the
        # parent's dependency('kiln') must resolve to kiln's override, and the consumer must link
        # libkiln.a. Configured and planned only: building it would compile libkiln again.
        proj = os.path.join(consumers, "subproject")
        os.makedirs(os.path.join(proj, "subprojects"))
        os.symlink(args.source_dir, os.path.join(proj, "subprojects", "kiln"))
        out = os.path.join(tmp, "subproject-build")
        log = run(meson + ["setup", out, proj], env=env)
        if not re.search(r"Dependency kiln (for host machine )?found: YES.*\(overridden\)", log):
            sys.stdout.write(log[-3000:])
            raise SystemExit("FAIL: dependency('kiln') did not come from the subproject")
        plan = run(["ninja", "-C", out, "-n", "-v", "lenet_consumer"], env=env)
        if not re.search(r"subprojects/kiln/src/libkiln\.a(\s|$)", plan, re.M):
            raise SystemExit("FAIL: the subproject consumer does not link libkiln.a:\n" + plan[-3000:])
        print("subproject consumer: dependency('kiln') resolved to the subproject's libkiln.a")
    print("all consumers built and ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
