"""Experiment (not shipped): figures the README derives from committed measurements (sessions 8-9).

1. TTFT against the prefill's FLOP roofline, per H100 `graphed` trial with a 1000-token prompt (the
   store exports' median TTFT; roofline = prefill FLOPs at the H100's dense bf16 peak).
2. The same request on the two GPUs: Yi-34B's trials at batch 8, batch energy per prompt H100 / H200.
3. Achieved bandwidth from the decode profiles: Mixtral-8x7B's grouped expert GEMM on the H200 (the
   expected distinct experts' bytes over its profiled time) and Yi-34B's whole decode step on each
   GPU (weights + the whole static cache over the step time of (2)'s trials).
4. The decode step on the two GPUs: median time per output token, H100 / H200, for every
   configuration, prompt and batch measured on both (session 9: GPT-OSS-20B barely speeds up).

Random weights throughout. Usage (repo root):
    PYTHONPATH=src python3 results/predictor/experiments/derived_figures.py \
        > results/predictor/experiments/derived_figures.md
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

from wattlens.hw.specs import gpu_spec_by_name
from wattlens.models.arithmetic import model_facts
from wattlens.models.catalog import resolve_model

HERE = Path(__file__).resolve().parent
STORES = HERE.parent / "campaign" / "store"


def ok_trials():
    for path in sorted(STORES.glob("*.json.gz")):
        with gzip.open(path) as f:
            runs = json.loads(f.read())["runs"]
        for run in runs:
            for t in run["trials"]:
                if t["status"] == "ok" and t["mode"] == "graphed" and t["spec"].get("prompt") == "synthetic":
                    yield t


def config_name(t) -> str:
    """Model name, with its one-field edit when it is a variant (e.g. llama-3.2-1b{"hidden_size": 1536})."""
    overrides = t["spec"].get("overrides")
    return t["model"] + (json.dumps(overrides, sort_keys=True) if overrides else "")


def facts_of(t):
    return model_facts(resolve_model(t["model"], (t["spec"].get("overrides") or {}).items()).config)


def ttft_table(trials) -> list[str]:
    peak = gpu_spec_by_name("H100").fp16_bf16_dense_flops_per_s
    ratios = defaultdict(list)
    for t in trials:
        if "H100" in t["gpu_name"] and t["ctx_tokens"] == 1000 and t["batch_size"] >= 8:
            roofline_s = facts_of(t).prefill_flops(1000, t["batch_size"]) / peak
            name = config_name(t)
            ratios[name].append(t["ttft_s_median"] / roofline_s)
    lines = ["## 1. TTFT / prefill FLOP roofline (H100, prompt 1000 tokens, batch >= 8)", "",
             "| configuration | trials | min | max |", "|---|---|---|---|"]
    for name, r in sorted(ratios.items()):
        lines.append(f"| {name} | {len(r)} | {min(r):.2f} | {max(r):.2f} |")
    return lines


def yi_tables(trials) -> list[str]:
    yi = [t for t in trials if t["model"] == "yi-34b" and t["batch_size"] == 8]
    by_ctx = defaultdict(dict)
    for t in yi:
        by_ctx[t["ctx_tokens"]]["H200" if "H200" in t["gpu_name"] else "H100"] = t
    f = model_facts(resolve_model("yi-34b").config)
    lines = ["", "## 2-3. Yi-34B at batch 8 on both GPUs", "",
             "| prompt | GPU | J per prompt | H100 / H200 | step ms | GB per step | achieved TB/s | of nominal |",
             "|---|---|---|---|---|---|---|---|"]
    for ctx, pair in sorted(by_ctx.items()):
        if len(pair) < 2:
            continue
        for gpu in ("H100", "H200"):
            t = pair[gpu]
            spec = gpu_spec_by_name(gpu)
            slots = (t["model_facts"].get("backend") or {}).get("static_cache_tokens") or ctx + t["gen_tokens"]
            step_bytes = f.decode_bytes_per_step(slots, 8, 2)  # weights + the whole static cache, bf16
            tpot = t["tpot_s_median"]
            ratio = pair["H100"]["energy_gpu_j_median"] / pair["H200"]["energy_gpu_j_median"]
            lines.append(f"| {ctx} | {gpu} | {t['energy_gpu_j_median'] / 8:.0f} | {ratio:.2f} | {1e3 * tpot:.1f} | "
                         f"{step_bytes / 1e9:.1f} | {step_bytes / tpot / 1e12:.2f} | "
                         f"{step_bytes / tpot / spec.memory_bandwidth_bytes_per_s:.2f} |")
    return lines


def mixtral_table() -> list[str]:
    prof = json.loads((HERE / "step_profile-h200-mixtral.json").read_text())
    f = model_facts(resolve_model("mixtral-8x7b").config)
    bw = gpu_spec_by_name("H200").memory_bandwidth_bytes_per_s
    lines = ["", "## 3. Mixtral-8x7B's grouped expert GEMM, H200 (step_profile-h200-mixtral.json)", "",
             "| batch | experts touched per layer | GB read | grouped GEMM ms per step | achieved TB/s | of nominal |",
             "|---|---|---|---|---|---|"]
    for case in prof["cases"]:
        gemm_us = sum(o["us_per_step"] for o in case["top_ops"] if o["name"] == "aten::_grouped_mm")
        touched = f.expected_experts_touched(case["batch"])
        gb = f.n_moe_layers * touched * f.params_per_expert * 2 / 1e9
        tb_s = gb / (gemm_us / 1e6) / 1e3
        lines.append(f"| {case['batch']} | {touched:.1f} | {gb:.1f} | {gemm_us / 1e3:.1f} | {tb_s:.2f} | "
                     f"{tb_s * 1e12 / bw:.2f} |")
    return lines


def step_ratio_table(trials) -> list[str]:
    tpot = defaultdict(dict)  # (configuration, prompt, batch) -> GPU -> median s per output token
    for t in trials:
        if t["gen_tokens"] != 1000:  # the capacity tier's shorter caches have no H200 twin
            continue
        name = config_name(t)
        tpot[(name, t["ctx_tokens"], t["batch_size"])]["H200" if "H200" in t["gpu_name"] else "H100"] = t["tpot_s_median"]
    lines = ["", "## 4. Decode step time on both GPUs (median time per output token, generations of 1000)", "",
             "| configuration | prompt | batch | H100 ms | H200 ms | H100 / H200 |", "|---|---|---|---|---|---|"]
    for (name, ctx, batch), pair in sorted(tpot.items()):
        if len(pair) == 2:
            lines.append(f"| {name} | {ctx} | {batch} | {1e3 * pair['H100']:.2f} | {1e3 * pair['H200']:.2f} | "
                         f"{pair['H100'] / pair['H200']:.2f} |")
    return lines


def main() -> None:
    trials = list(ok_trials())
    print("# Figures derived from the committed stores and profiles (random weights)\n")
    print("\n".join(ttft_table(trials) + yi_tables(trials) + mixtral_table() + step_ratio_table(trials)))


if __name__ == "__main__":
    main()
