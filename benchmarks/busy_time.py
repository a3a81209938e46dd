"""Measure GPU busy time vs wall time per decode step (input for `wattlens dvfs whatif`). NOT RUN YET.

Replaces the what-if's estimate of eager's GPU share (bounded by the compiled and static steps) with
a measurement: the profiler's summed CUDA kernel time per step (GPU busy) next to the wall time of
the same steps, both for one mode. Changes no clock.

    python benchmarks/busy_time.py --model llama-3.1-8b --mode eager --ctx 2048 --steps 32 --out busy-eager.json
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--mode", default="eager", choices=["eager", "static", "compiled"])
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--out", default="busy.json")
    a = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from wattlens.backends.hf import HFBackend
    from wattlens.core.spec import TrialSpec
    from wattlens.runner.trial import ModelHolder, check_spec, make_prompt

    spec = TrialSpec(model=a.model, ctx_tokens=a.ctx, gen_tokens=a.steps + 1, mode=a.mode)
    source, facts = check_spec(spec)
    backend = HFBackend(ModelHolder().get(spec, source, "cuda:0"), a.mode, spec.sampling)
    backend.prepare(1, a.ctx, a.steps + 1)
    prompt = make_prompt(spec, source, facts, "cuda:0")
    backend.generate(prompt.input_ids, prompt.attention_mask, a.steps + 1)  # warm-up / compile / capture

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = backend.generate(prompt.input_ids, prompt.attention_mask, a.steps + 1)
    torch.cuda.synchronize()
    wall_s = time.perf_counter() - t0
    times = out.token_times_s
    decode_wall_s = times[-1] - times[0]

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        out2 = backend.generate(prompt.input_ids, prompt.attention_mask, a.steps + 1)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy_us = sum(e.device_time for e in kernels)  # summed kernel time, prefill included
    t2 = out2.token_times_s
    res = {"model": a.model, "mode": a.mode, "ctx_tokens": a.ctx, "decode_steps": a.steps,
           "e2e_wall_s": wall_s, "ttft_s": times[0], "decode_wall_s": decode_wall_s,
           "tpot_s": decode_wall_s / a.steps,
           "profiled_ttft_s": t2[0], "profiled_decode_wall_s": t2[-1] - t2[0],
           "gpu_busy_s_total_profiled": busy_us / 1e6, "n_kernels": len(kernels),
           "note": "GPU busy per decode step ~= (gpu_busy_s_total_profiled - prefill kernels) / steps; "
                   "the profiler adds host overhead, so take wall times from the unprofiled run"}
    json.dump(res, open(a.out, "w"), indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
