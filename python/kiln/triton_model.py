"""The Triton Python-backend model that serves one kiln plan (copied by ``kiln.serve`` into each
model's version folder as ``1/model.py``, beside ``model.plan`` and ``kiln.json``).

initialize() loads the plan once per model instance: on a machine with a GPU and a CUDA plan, one
kiln Engine and one ExecutionContext per instance; otherwise the CPU reference (Plan.run).
execute() gets the requests Triton's dynamic batcher gathered, concatenates those whose non-batch
dims agree along dim 0, runs them as one batch (padded to the plan's batch for a static plan) and
splits the outputs back. A request that fails alone gets an error response with kiln's message;
the others are answered.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # Triton's Python stub embeds an interpreter that ignores PYTHONPATH: the server that
        # kiln.serve starts names the folder holding the kiln package in KILN_PYTHON_ROOT.
        root = os.environ.get("KILN_PYTHON_ROOT")
        if root and root not in sys.path:
            sys.path.insert(0, root)
        import kiln

        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "kiln.json")) as f:
            self.meta = json.load(f)
        self.plan = kiln.load_plan(os.path.join(here, "model.plan"))
        self.inputs = [(i["name"], i["dtype"]) for i in self.plan.inputs]
        self.outputs = [o["name"] for o in self.plan.outputs]
        self.static_batch = self.meta["static_batch"]  # 0: a dynamic plan
        self.ctx = None
        if self.plan.target.startswith("cuda") and kiln.gpu_count() > 0:
            # One ExecutionContext per model instance (Triton creates one TritonPythonModel per instance).
            self.engine = kiln.Engine(self.plan)
            self.ctx = self.engine.create_context()

    def _run(self, feeds):
        if self.ctx is None:
            return self.plan.run(feeds)
        if self.static_batch:
            self.ctx.set_batch(self.static_batch)
        else:
            for name, a in feeds.items():
                self.ctx.set_input_shape(name, a.shape)
        return self.ctx.run(feeds)

    def _run_batch(self, arrays):
        """arrays: one {input: array} per request, same non-batch dims -> one {output: array} each."""
        sizes = [next(iter(a.values())).shape[0] for a in arrays]
        total = sum(sizes)
        feeds = {}
        for name, _ in self.inputs:
            x = np.concatenate([a[name] for a in arrays], axis=0) if len(arrays) > 1 else arrays[0][name]
            if self.static_batch and total < self.static_batch:
                pad = np.zeros((self.static_batch - total,) + x.shape[1:], x.dtype)
                x = np.concatenate([x, pad], axis=0)
            feeds[name] = np.ascontiguousarray(x)
        out = self._run(feeds)
        results, start = [], 0
        for n in sizes:
            results.append({name: out[name][start:start + n] for name in self.outputs})
            start += n
        return results

    def execute(self, requests):
        arrays = []
        for r in requests:
            arrays.append({name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name, _ in self.inputs})
        groups = {}
        for i, a in enumerate(arrays):
            key = tuple(a[name].shape[1:] for name, _ in self.inputs)
            groups.setdefault(key, []).append(i)
        answers = [None] * len(requests)
        for idx in groups.values():
            try:
                for i, res in zip(idx, self._run_batch([arrays[i] for i in idx])):
                    answers[i] = res
            except Exception:
                for i in idx:  # run each alone so that only the bad request gets the error
                    try:
                        answers[i] = self._run_batch([arrays[i]])[0]
                    except Exception as e:  # kiln.Error: its message names the input and the problem
                        answers[i] = e
        responses = []
        for a in answers:
            if isinstance(a, Exception):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(a))))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(v)) for name, v in a.items()]))
        return responses

    def finalize(self):
        self.ctx = None
        self.plan = None
