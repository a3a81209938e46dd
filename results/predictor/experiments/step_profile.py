"""Experiment (not shipped): where one `graphed` decode step's time goes, per operator and kernel.

For each case (model, config edits, batch, prompt, cache slots) the model is built with random bf16
weights, a `graphed` generation of a few tokens runs (cache sized as in the campaign: prompt + 1000
slots), then 5 decode steps of the same step function are profiled outside the CUDA graph (the same
kernels). Writes one JSON per call: per case the graph-replay step time, the profiled kernel time
per step, and device time per aten operator and per kernel (top entries).

    PYTHONPATH=src python results/predictor/experiments/step_profile.py --out $OUT/profile.json \
        "gpt-oss-20b|{}|8|128" "gpt-oss-20b|{}|64|128" ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

PROFILED_STEPS = 5
TIMED_TOKENS = 40


def profile_case(model, facts, batch: int, ctx: int, cache_slots: int, prefill: bool = False) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from wattlens.backends.hf import HFBackend
    from wattlens.workloads.inputs import synthetic_batch

    backend = HFBackend(model, "graphed")
    backend.prepare(batch, ctx, cache_slots - ctx)
    prompt = synthetic_batch(batch, ctx, facts.vocab_size, device="cuda")
    backend.generate(prompt.input_ids, prompt.attention_mask, TIMED_TOKENS)  # captures the graph
    out = backend.generate(prompt.input_ids, prompt.attention_mask, TIMED_TOKENS)
    ts = out.token_times_s()
    step_s = statistics.median(b - a for a, b in zip(ts[1:], ts[2:]))
    lean = backend._lean
    with torch.inference_mode(), lean._own_attention():
        lean._prefill(prompt.input_ids)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            if prefill:
                lean._prefill(prompt.input_ids)
            for _ in range(0 if prefill else PROFILED_STEPS):
                lean._pin_sliding_counters()
                lean._decode_fn()
            torch.cuda.synchronize()
        lean._use_decode_experts(False)
    ops, kernels = [], []
    per = 1 if prefill else PROFILED_STEPS
    for e in prof.key_averages():
        dev_us = getattr(e, "device_time_total", None)
        self_dev_us = getattr(e, "self_device_time_total", None)
        is_kernel = "cuda" in str(getattr(e, "device_type", "")).lower()
        row = {"name": e.key, "count_per_step": e.count / per}
        if is_kernel:
            kernels.append({**row, "us_per_step": (self_dev_us or 0) / per})
        elif e.key.startswith("aten::") and dev_us:
            ops.append({**row, "us_per_step": dev_us / per})
    kernels.sort(key=lambda r: -r["us_per_step"])
    ops.sort(key=lambda r: -r["us_per_step"])
    desc = backend.describe()
    del backend, lean, out
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return {
        "profiled": "one prefill" if prefill else f"{PROFILED_STEPS} decode steps (values per step)",
        "ttft_ms": 1e3 * ts[0],
        "graph_step_ms": 1e3 * step_s,
        "kernel_ms_per_step": sum(k["us_per_step"] for k in kernels) / 1e3,
        "kernels_per_step": sum(k["count_per_step"] for k in kernels),
        "attention": desc.get("decode_attention"), "attn_implementation": desc.get("attn_implementation"),
        "experts_implementation": desc.get("experts_implementation"),
        "top_ops": ops[:40], "top_kernels": kernels[:40],
    }


def main() -> int:
    import torch

    from wattlens.hw.environment import capture_environment
    from wattlens.models.arithmetic import model_facts
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+",
                    help="model|overrides-json|batch|prompt[|cache slots] (cache default prompt + 1000)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prefill", action="store_true", help="profile one prefill instead of decode steps")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("this experiment needs a CUDA GPU", file=sys.stderr)
        return 2
    results = {"gpu": torch.cuda.get_device_name(0), "weights": "random", "dtype": "bf16", "cases": []}
    built = None
    for case in args.cases:
        parts = case.split("|")
        name, edits, batch, ctx = parts[0], json.loads(parts[1] or "{}"), int(parts[2]), int(parts[3])
        cache_slots = int(parts[4]) if len(parts) > 4 else ctx + 1000
        key = (name, json.dumps(edits, sort_keys=True))
        try:
            if built is None or built[0] != key:
                built = None
                torch.cuda.empty_cache()
                source = resolve_model(name, edits.items())
                t0 = time.perf_counter()
                built = (key, build_model(source, "bf16", "cuda"), model_facts(source.config))
                print(f"built {name} {edits} in {time.perf_counter() - t0:.1f} s", flush=True)
            r = profile_case(built[1], built[2], batch, ctx, cache_slots, args.prefill)
        except Exception as exc:  # one case failing must not lose the others
            r = {"error": f"{type(exc).__name__}: {str(exc)[:1500]}"}
            torch.cuda.empty_cache()
        r.update(model=name, overrides=edits, batch=batch, ctx=ctx, cache_slots=cache_slots)
        results["cases"].append(r)
        print(json.dumps({k: v for k, v in r.items() if not k.startswith("top_")}), flush=True)
        for k in r.get("top_ops", [])[:12]:
            print(f"   {k['us_per_step']:9.1f} us  x{k['count_per_step']:6.1f}  {k['name']}")
        args.out.write_text(json.dumps(results, indent=1))
    results["environment"] = capture_environment()
    args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
