"""Benchmark: `compiled` decode against the HBM roofline, and the harness's own overhead.

Two targets, checked in one run on one GPU (random bf16 weights, batch 1, ctx 2048):
  1. decode throughput of the `compiled` mode >= 70% of the HBM roofline
     (roofline = HBM bandwidth / bytes read per decode step, from wattlens.models.arithmetic);
  2. the measuring harness (energy window, power sampler thread, a device sync and a hook per
     token) adds <= 2% to decode time against a bare loop replaying the same compiled step with
     no per-token sync.
Harness and bare runs alternate so drift affects both alike; medians are reported. With several
`--decode-attention` variants the model is built once and each variant is compiled and measured
in turn (about 2 minutes of compile each on an H100).

    PYTHONPATH=src python benchmarks/decode_roofline.py --out results/h100/core --profile
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOFLINE_TARGET_PCT = 70.0
OVERHEAD_TARGET_PCT = 2.0


def measure_variant(model, prompt, gen_tokens: int, pairs: int, meter, decode_attention: str,
                    decode_experts: str = "auto") -> dict:
    """Compile one decode-attention variant, then alternate harness and bare runs."""
    import torch

    from wattlens.backends.hf import HFBackend
    from wattlens.meter.sampler import PowerSampler

    backend = HFBackend(model, "compiled", decode_attention=decode_attention, decode_experts=decode_experts)
    t0 = time.perf_counter()
    backend.prepare(1, prompt.input_tokens, gen_tokens)
    backend.generate(prompt.input_ids, prompt.attention_mask, gen_tokens)
    backend.generate(prompt.input_ids, prompt.attention_mask, gen_tokens)
    compile_s = time.perf_counter() - t0
    harness_decode, bare_decode, harness_tpot, energy_j = [], [], [], []
    sampler = PowerSampler(meter.gpus, interval_s=0.05) if meter.gpus else None
    if sampler:
        meter.sampler = sampler.start()
    hook_calls: list[int] = []
    for _ in range(pairs):
        with meter.window("harness") as window:
            out = backend.generate(prompt.input_ids, prompt.attention_mask, gen_tokens,
                                   on_token=lambda i, t: hook_calls.append(t))
        energy_j.append(window.result.energy_gpu_j)
        ts = out.token_times_s()
        harness_decode.append(out.e2e_s - ts[0])
        harness_tpot.append((out.e2e_s - ts[0]) / (gen_tokens - 1))
        _, decode_s = backend._lean.bare_decode_loop_s(prompt.input_ids, gen_tokens)
        bare_decode.append(decode_s)
    if sampler:
        sampler.stop()
        meter.sampler = None
    result = {
        "decode_attention": decode_attention,
        "decode_experts": decode_experts,
        "backend": backend.describe(),
        "compile_and_capture_s": compile_s,
        "tpot_s_median": statistics.median(harness_tpot),
        "harness_decode_s": harness_decode,
        "bare_decode_s": bare_decode,
        "harness_decode_s_median": statistics.median(harness_decode),
        "bare_decode_s_median": statistics.median(bare_decode),
        "energy_gpu_j_per_generation": energy_j,
    }
    result["decode_tokens_per_s"] = 1.0 / result["tpot_s_median"]
    result["harness_overhead_pct"] = 100.0 * (result["harness_decode_s_median"] / result["bare_decode_s_median"] - 1)
    result["lean"] = backend._lean  # kept for the profile; dropped before writing JSON
    del backend
    torch.cuda.synchronize()
    return result


def print_decode_profile(lean, input_ids, steps: int = 5) -> None:
    """Kernel time per decode step, from the compiled step run outside its graph (same kernels)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), lean._own_attention():
        lean._prefill(input_ids)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                lean._pin_sliding_counters()
                lean._decode_fn()
            torch.cuda.synchronize()
    print(f"top kernels over {steps} decode steps (compiled step, no graph):")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70))


def main() -> int:
    import torch

    from wattlens.core.units import dtype_bytes
    from wattlens.hw.environment import capture_environment
    from wattlens.hw.specs import match_gpu_spec
    from wattlens.meter.energy import EnergyMeter
    from wattlens.models.arithmetic import model_facts
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model
    from wattlens.workloads.inputs import synthetic_batch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--gen", default="256",
                    help="output length(s), comma-separated: each is its own compile (cache = ctx + gen slots)")
    ap.add_argument("--pairs", type=int, default=10, help="harness/bare pairs, alternated")
    ap.add_argument("--decode-attention", default="auto",
                    help="comma-separated variants: auto, reductions, flex, grouped_sdpa, transformers")
    ap.add_argument("--decode-experts", default="auto",
                    help="MoE models: comma-separated experts kernels for decode steps: auto, batched_mm, gathered")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of 5 decode steps")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        print("this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2

    meter = EnergyMeter.for_visible_gpus(sync=torch.cuda.synchronize)
    gpu_name = torch.cuda.get_device_name(0)
    spec = match_gpu_spec(meter.gpus[0].name if meter.gpus else gpu_name)
    source = resolve_model(args.model)
    facts = model_facts(source.config)
    t0 = time.perf_counter()
    model = build_model(source, "bf16", "cuda")
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    prompt = synthetic_batch(1, args.ctx, facts.vocab_size, device="cuda")
    gens = [int(g) for g in str(args.gen).split(",")]
    # the average decode step reads the KV cache at ctx + gen/2 tokens
    bytes_by_gen = {g: facts.decode_bytes_per_step(args.ctx + g // 2, 1, dtype_bytes("bf16")) for g in gens}

    variants = []
    for gen_tokens in gens:
        bytes_per_step = bytes_by_gen[gen_tokens]
        bound = spec.memory_bandwidth_bytes_per_s / bytes_per_step if spec else None
        combos = [(a.strip(), e.strip()) for a in args.decode_attention.split(",")
                  for e in args.decode_experts.split(",")]
        for variant, experts in combos:
            try:
                r = measure_variant(model, prompt, gen_tokens, args.pairs, meter, variant, experts)
            except Exception as exc:  # one variant failing to compile must not lose the others
                print(f"== decode attention {variant}, experts {experts}, gen {gen_tokens}: FAILED: "
                      f"{type(exc).__name__}: {str(exc)[:2000]}", flush=True)
                torch.cuda.empty_cache()
                continue
            r["gen_tokens"] = gen_tokens
            r["decode_bytes_per_step"] = bytes_per_step
            if bound:
                r["roofline_tokens_per_s"] = bound
                r["roofline_pct"] = 100.0 * r["decode_tokens_per_s"] / bound
            if args.profile:
                print(f"== decode attention: {r['decode_attention']}, experts {experts}, gen {gen_tokens}")
                print_decode_profile(r["lean"], prompt.input_ids)
            del r["lean"]
            variants.append(r)
            torch.cuda.empty_cache()

    result = {
        "gpu": gpu_name,
        "gpu_spec_row": spec.name if spec else None,
        "hbm_bandwidth_bytes_per_s": spec.memory_bandwidth_bytes_per_s if spec else None,
        "model": args.model,
        "weights": "random",
        "ctx_tokens": args.ctx,
        "gen_tokens": gens,
        "build_s": build_s,
        # of the first output length (what `wattlens dvfs whatif` reads); each variant has its own
        "decode_bytes_per_step": bytes_by_gen[gens[0]],
        "variants": variants,
        "environment": capture_environment(meter.gpus),
    }
    (args.out / "decode_roofline.json").write_text(json.dumps(result, indent=1, default=str))
    lines = [
        f"# compiled decode vs HBM roofline ({gpu_name}, {args.model}, weights: random, bf16)",
        "",
        f"- ctx {args.ctx}, batch 1; {args.pairs} harness/bare pairs per (gen, variant), alternated; medians",
        "- bytes read per decode step (analytic, KV cache at ctx + gen/2 tokens) and roofline per row"
        + (f" ({spec.name}, {spec.memory_bandwidth_bytes_per_s / 1e9:.0f} GB/s)" if spec else ""),
        f"- model build {build_s:.1f} s",
        "",
        "| gen | decode attention | decode experts | GB per step | roofline tok/s | TPOT ms | tok/s | % of roofline (target >= 70) "
        "| harness overhead % (target <= 2) | compile + capture s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in variants:
        pct = f"{r['roofline_pct']:.1f}" if "roofline_pct" in r else "—"
        roof = f"{r['roofline_tokens_per_s']:.1f}" if "roofline_tokens_per_s" in r else "—"
        lines.append(f"| {r['gen_tokens']} | {r['decode_attention']} | {r['decode_experts']} | "
                     f"{r['decode_bytes_per_step'] / 1e9:.3f} | {roof} | "
                     f"{1e3 * r['tpot_s_median']:.3f} | {r['decode_tokens_per_s']:.1f} | {pct} | "
                     f"{r['harness_overhead_pct']:+.2f} | {r['compile_and_capture_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    (args.out / "decode_roofline.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
