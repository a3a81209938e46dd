"""GPU busy time vs wall time per prefill and per decode step, per serving mode (input for `wattlens dvfs whatif --busy`).

The what-if model needs to know how much of a step the GPU is actually working: a step whose GPU
sits idle while Python prepares the next kernel barely slows down at a lower SM clock. Here the
profiler's summed CUDA kernel time (GPU busy) is set beside the wall time of the same work:
prefill = a 1-token generation; decode = (an N+1-token generation - prefill) / N. Wall times come
from unprofiled runs (the profiler adds host time); kernel times from profiled ones. Changes no clock.

    PYTHONPATH=src python benchmarks/busy_time.py --model llama-3.1-8b --modes eager,static --out busy.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def kernel_time_s(backend, prompt, gen_tokens: int) -> tuple[float, int]:
    """Summed CUDA kernel time of one generation, and the kernel count."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        backend.generate(prompt.input_ids, prompt.attention_mask, gen_tokens)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    return sum(e.device_time for e in kernels) / 1e6, len(kernels)


def wall_time_s(backend, prompt, gen_tokens: int, repeats: int) -> float:
    """Median wall time of unprofiled generations."""
    import torch

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        backend.generate(prompt.input_ids, prompt.attention_mask, gen_tokens)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_mode(model, spec_kwargs: dict, mode: str, steps: int, repeats: int, device: str = "cuda:0") -> dict:
    from wattlens.backends.hf import HFBackend
    from wattlens.core.spec import TrialSpec
    from wattlens.runner.trial import check_spec, make_prompt

    spec = TrialSpec(gen_tokens=steps + 1, mode=mode, **spec_kwargs)
    source, facts = check_spec(spec)
    backend = HFBackend(model, mode, spec.sampling)
    backend.prepare(1, spec.ctx_tokens, steps + 1)
    prompt = make_prompt(spec, source, facts, device)
    for gen in (1, steps + 1, steps + 1):  # warm-up, compile, capture
        backend.generate(prompt.input_ids, prompt.attention_mask, gen)
    prefill_wall = wall_time_s(backend, prompt, 1, repeats)
    full_wall = wall_time_s(backend, prompt, steps + 1, repeats)
    prefill_busy, prefill_kernels = kernel_time_s(backend, prompt, 1)
    full_busy, full_kernels = kernel_time_s(backend, prompt, steps + 1)
    step_wall = (full_wall - prefill_wall) / steps
    step_busy = (full_busy - prefill_busy) / steps
    return {
        "mode": mode,
        "prefill_wall_s": prefill_wall,
        "prefill_gpu_busy_s": prefill_busy,
        "decode_step_wall_s": step_wall,
        "decode_step_gpu_busy_s": step_busy,
        "decode_busy_share": step_busy / step_wall,
        "prefill_busy_share": prefill_busy / prefill_wall,
        "kernels_per_decode_step": (full_kernels - prefill_kernels) / steps,
        "backend": backend.describe(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--modes", default="eager,static,compiled")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="busy.json")
    a = ap.parse_args()

    import torch

    from wattlens.core.spec import TrialSpec
    from wattlens.hw.environment import capture_environment
    from wattlens.runner.trial import ModelHolder, check_spec

    if not torch.cuda.is_available():
        print("this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    spec_kwargs = {"model": a.model, "ctx_tokens": a.ctx}
    probe = TrialSpec(gen_tokens=a.steps + 1, **spec_kwargs)
    source, _ = check_spec(probe)
    model = ModelHolder().get(probe, source, "cuda:0")
    rows = []
    environment = capture_environment([])
    for mode in a.modes.split(","):
        row = measure_mode(model, spec_kwargs, mode.strip(), a.steps, a.repeats)
        rows.append(row)
        print(f"{row['mode']:9s} decode step {row['decode_step_wall_s'] * 1e3:7.2f} ms wall, "
              f"{row['decode_step_gpu_busy_s'] * 1e3:7.2f} ms GPU busy ({100 * row['decode_busy_share']:.0f}%); "
              f"prefill {row['prefill_wall_s'] * 1e3:.1f} ms wall, {row['prefill_gpu_busy_s'] * 1e3:.1f} ms busy",
              flush=True)
        torch.cuda.empty_cache()
        result = {"model": a.model, "weights": "random", "dtype": "bf16", "batch": 1, "ctx_tokens": a.ctx,
                  "decode_steps": a.steps, "repeats": a.repeats, "modes": rows,
                  "gpu": torch.cuda.get_device_name(0), "environment": environment}
        with open(a.out, "w") as f:  # rewritten after every mode: a time limit keeps the modes done
            json.dump(result, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
