#!/usr/bin/env python3
"""Write a WTS weights file from a PyTorch state_dict or checkpoint.

    gen_wts.py MODEL.pth OUT.wts [--dialect trt-hex|trt-binary|tensorrtx] [--dtype float32|float16]
                                 [--key KEY]

MODEL.pth may hold a state_dict, a whole nn.Module, or a dict with the state_dict (or module)
under 'state_dict', 'model' or KEY. Every entry is written under its state_dict name, BatchNorm
buffers (running_mean, running_var, num_batches_tracked) included.

Dialects (kiln reads all three and detects which one a file is in):
  trt-hex     (default) "COUNT\\n" then per weight "name type size" and `size` unpadded hex words
              holding bit patterns; type 0 float32, 1 float16, 2 int8, 3 int32.
  trt-binary  "COUNT\\n" then per weight "name type (d0, d1, ...) " + raw little-endian bytes + "\\n";
              keeps the shape.
  tensorrtx   "COUNT\\n" then per weight "name count" and `count` float32 words of 8 hex digits
              (what tensorrtx's gen_wts.py writes); every weight becomes float32.
Floats are written as --dtype (float32 by default); integer tensors as int32 (int8 stays int8),
except in tensorrtx, which only holds float32.

Also importable: write_wts(state_dict, path, dialect="trt-hex", dtype="float32").
Runs with Debian's python3-torch (/usr/bin/python3).
"""
import argparse
import sys

import numpy as np

DIALECTS = ("trt-hex", "trt-binary", "tensorrtx")
_TRT_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2,
              np.dtype(np.int32): 3}


def _as_numpy(name, value, dialect, dtype):
    """A tensor as the numpy array that is written."""
    try:
        import torch
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            value = value.numpy()
    except ImportError:
        pass
    a = np.asarray(value)
    if dialect == "tensorrtx":
        return a.astype(np.float32)
    if a.dtype.kind == "f":
        return a.astype(np.float16 if dtype == "float16" else np.float32)
    if a.dtype == np.int8:
        return a
    if a.dtype.kind in "iub":
        if a.size and (a.min() < -2**31 or a.max() >= 2**31):
            raise ValueError(f"weight '{name}' holds integers outside int32, which {dialect} cannot hold")
        return a.astype(np.int32)
    raise ValueError(f"weight '{name}' has dtype {a.dtype}, which {dialect} cannot hold")


def _words(a, padded):
    bits = a.reshape(-1).view({4: np.uint32, 2: np.uint16, 1: np.uint8}[a.dtype.itemsize])
    fmt = "{:08x}" if padded else "{:x}"
    return "".join(" " + fmt.format(int(w)) for w in bits.tolist())


def write_wts(state_dict, path, dialect="trt-hex", dtype="float32"):
    """Writes the (name -> tensor) mapping `state_dict` to `path` in `dialect`."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect '{dialect}' (expected one of {', '.join(DIALECTS)})")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"unknown dtype '{dtype}' (expected float32 or float16)")
    if dtype == "float16" and dialect == "tensorrtx":
        raise ValueError("tensorrtx files hold float32 only; use trt-hex or trt-binary for float16")
    items = list(state_dict.items())
    with open(path, "wb") as f:
        f.write(f"{len(items)}\n".encode())
        for name, value in items:
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"weight name '{name}' is empty or holds whitespace")
            a = np.ascontiguousarray(_as_numpy(name, value, dialect, dtype))
            if dialect == "tensorrtx":
                f.write(f"{name} {a.size}{_words(a, True)}\n".encode())
            elif dialect == "trt-hex":
                f.write(f"{name} {_TRT_TYPES[a.dtype]} {a.size}{_words(a, False)}\n".encode())
            else:
                shape = str(tuple(int(d) for d in a.shape))
                f.write(f"{name} {_TRT_TYPES[a.dtype]} {shape} ".encode())
                f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
                f.write(b"\n")


def load_state_dict(path, key=None):
    """The state_dict in a checkpoint file (see the module doc)."""
    import torch
    obj = torch.load(path, map_location="cpu")
    for k in ([key] if key else []) + ["state_dict", "model"]:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
            break
    else:
        if key:
            raise KeyError(f"{path} has no entry '{key}'")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds no state_dict (a mapping of names to tensors); pass --key")
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(description="Write a WTS weights file from a PyTorch checkpoint.")
    p.add_argument("model", help="a .pth/.pt file: state_dict, nn.Module or checkpoint dict")
    p.add_argument("output", help="the .wts file to write")
    p.add_argument("--dialect", choices=DIALECTS, default="trt-hex")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--key", help="the checkpoint entry holding the state_dict")
    args = p.parse_args(argv)
    try:
        sd = load_state_dict(args.model, args.key)
        write_wts(sd, args.output, args.dialect, args.dtype)
    except (OSError, ValueError, KeyError) as e:
        print(f"gen_wts.py: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(sd)} weights to {args.output} ({args.dialect}, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
