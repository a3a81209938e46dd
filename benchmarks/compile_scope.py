"""Compile time of `compiled` mode by compile scope and depth (CPU or GPU).

The question: does the `layers` scope (one compiled decoder-layer body for every layer) keep its
setup time flat as the model gets deeper, where the whole-step `model` scope grows with depth?
Tiny Llama config with `num_hidden_layers` edited, fp32 on the CPU / bf16 on CUDA, random weights.
"first" = the first generation (the decode step compiles), "second" = the next one (the prefill
compiles there), both wall seconds.

    PYTHONPATH=src python benchmarks/compile_scope.py --layers 8,32 --scopes layers,model
Each (scope, depth) runs in a fresh process with its own empty inductor cache directory, so no
compile cache carries over between rows or from earlier runs (a warm on-disk cache hides most of
the cost).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def one(scope: str, layers: int, device: str) -> dict:
    import torch

    from wattlens.backends.hf import HFBackend
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    dtype = "bf16" if device == "cuda" else "fp32"
    model = build_model(resolve_model("tiny-llama", (("num_hidden_layers", layers),)), dtype, device)
    ids = torch.randint(0, model.config.vocab_size, (1, 16), device=device)
    backend = HFBackend(model, "compiled", compile_scope=scope)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        backend.generate(ids, torch.ones_like(ids), 8)
        times.append(round(time.perf_counter() - t0, 2))
    return {"scope": scope, "layers": layers, "device": device, "first_s": times[0], "second_s": times[1]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="8,32")
    p.add_argument("--scopes", default="layers,model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", nargs=2, metavar=("SCOPE", "LAYERS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.device)))
        return 0
    for scope in a.scopes.split(","):
        for layers in a.layers.split(","):
            with tempfile.TemporaryDirectory() as cache_dir:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
                out = subprocess.run([sys.executable, __file__, "--device", a.device, "--one", scope, layers],
                                     capture_output=True, text=True, check=True, env=env)
            print(out.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
