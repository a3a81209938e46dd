"""Experiment (not shipped): what one decode step costs, read off the dataset's slopes.

Within one trial every row shares the prefill and the static cache, so the slope of batch energy
(and time) over output length (rows at >= 100 tokens) is the energy (time) of one decode step, and
the intercept is the prefill and fixed costs. This script tabulates, per H100 trial in `graphed`
mode:

1. the decode step against its byte roofline (weights + the whole static cache at the H100's
   bandwidth) and its operators per step (`wattlens.models.decode_ops`);
2. the time per cache slot, from pairs of trials of one request shape with two cache sizes (the
   capacity tier), against the bandwidth time of one slot's K and V;
3. how well non-negative fits of step time and step energy on physics bases hold out by family
   (here finer than the predictor's: qwen2.5 and qwen3 apart), with the measured time given or not.

Usage (repo root): PYTHONPATH=src python3 results/predictor/experiments/decode_steps.py \
    > results/predictor/experiments/decode_steps.md
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from wattlens.analysis import predictor as P
from wattlens.hw.specs import gpu_spec_by_name
from wattlens.models.arithmetic import model_facts
from wattlens.models.decode_ops import decode_ops

GPU = "NVIDIA H100 80GB HBM3"
OPERATOR_S = 3.3e-6  # the order of the per-operator floor (Qwen2.5-0.5B, batch 8), only to put it in ms


def step_table(df: pd.DataFrame) -> pd.DataFrame:
    gpu = gpu_spec_by_name(GPU)
    bw, peak = gpu.memory_bandwidth_bytes_per_s, gpu.fp16_bf16_dense_flops_per_s
    rows = []
    for _, g in df.groupby("trial_id"):
        g = g[g["output_tokens"] >= 100]
        if len(g) < 3:
            continue
        n = g["output_tokens"].to_numpy(float)
        step_s = np.polyfit(n, g["time_s"].to_numpy(float), 1)[0]
        step_j = np.polyfit(n, g["energy_batch_j"].to_numpy(float), 1)[0]
        r = g.iloc[0]
        cfg = P.config_for_row(r.model, r.overrides_json, r.config_json)
        f, b, cap = model_facts(cfg), int(r.batch_size), int(r.cache_tokens)
        kv_slot = b * 2 * f.num_kv_heads * f.head_dim * 2  # K and V of one slot, one layer, bf16
        rows.append({
            "config": (r.model + r.overrides_json)[:48], "family": f.model_type, "batch": b, "input": int(r.input_tokens),
            "cache": cap, "step_ms": 1e3 * step_s, "step_j": step_j,
            "weights_ms": 1e3 * f.decode_bytes_per_step(0, b, 2) / bw,
            "kv_ms": 1e3 * kv_slot * f.kv_token_layers(cap) / bw,
            "flops_ms": 1e3 * b * (2 * f.matmul_params_active + 4 * f.num_heads * f.head_dim * f.kv_token_layers(cap)) / peak,
            "operators": decode_ops(cfg).per_step(f.num_layers), "kv_blocks": b * f.num_kv_heads,
            "slot_bandwidth_us": 1e6 * kv_slot * f.num_layers / bw,
        })
    t = pd.DataFrame(rows)
    t["roofline_ms"] = t["weights_ms"] + t["kv_ms"]
    t["operators_ms"] = t["operators"] * OPERATOR_S * 1e3
    t["power_w"] = t["step_j"] / (t["step_ms"] / 1e3)
    return t


def held_out_fit(t: pd.DataFrame, bases: list[str], target: str) -> tuple[np.ndarray, float, dict]:
    """NNLS on relative error, each family held out in turn; (theta on all, pooled MAPE %, per family)."""
    A, y = t[bases].to_numpy(float), t[target].to_numpy(float)
    w, pred = 1.0 / y, np.zeros(len(y))
    fam = t["family"].to_numpy()
    for f in np.unique(fam):
        tr = fam != f
        theta, _ = nnls(A[tr] * w[tr, None], y[tr] * w[tr])
        pred[~tr] = A[~tr] @ theta
    theta, _ = nnls(A * w[:, None], y * w)
    err = np.abs(pred / y - 1)
    return theta, 100 * err.mean(), {str(f): round(float(100 * err[fam == f].mean()), 1) for f in np.unique(fam)}


def main() -> None:
    df, _, _ = P.one_serving_mode(P.load_dataset("data/predictor/energy_v1.csv"), "graphed")
    t = step_table(df[df["gpu_name"] == GPU])
    print("# What one decode step costs (H100, graphed, slopes over output length; experiment, not shipped)\n")
    print("Random weights. Step time and energy are the slopes of each trial's rows at >= 100 output tokens; "
          "roofline = weights + whole static cache at 3.35 TB/s; operators x 3.3 us for scale.\n")
    cols = ["config", "batch", "input", "cache", "step_ms", "roofline_ms", "operators", "operators_ms", "step_j", "power_w"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in t.sort_values(["config", "batch", "input", "cache"]).itertuples():
        print(f"| {r.config} | {r.batch} | {r.input} | {r.cache} | {r.step_ms:.2f} | {r.roofline_ms:.2f} | {r.operators} "
              f"| {r.operators_ms:.2f} | {r.step_j:.3f} | {r.power_w:.0f} |")
    print("\n## Time per cache slot (same shape, two cache sizes)\n")
    print("| config | batch | input | caches | step ms | us per slot | bandwidth us per slot | ratio | (batch x KV heads) blocks |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (cfg, b, n_in), g in t.groupby(["config", "batch", "input"]):
        if g["cache"].nunique() < 2:
            continue
        g = g.sort_values("cache")
        lo, hi = g.iloc[0], g.iloc[-1]
        per_slot_us = 1e3 * (hi.step_ms - lo.step_ms) / (hi.cache - lo.cache)
        print(f"| {cfg} | {b} | {n_in} | {lo.cache} -> {hi.cache} | {lo.step_ms:.2f} -> {hi.step_ms:.2f} | "
              f"{per_slot_us:.3f} | {lo.slot_bandwidth_us:.3f} | {per_slot_us / lo.slot_bandwidth_us:.2f} | {lo.kv_blocks} |")
    print("\n## Held out by architecture (model_type), non-negative fits on relative error\n")
    print("| target | bases | theta (all rows) | MAPE % | per architecture |\n|---|---|---|---|---|")
    for target, bases in (("step_ms", ["roofline_ms", "operators_ms"]),
                          ("step_ms", ["weights_ms", "kv_ms", "operators_ms", "flops_ms"]),
                          ("step_j", ["roofline_ms", "operators_ms"]),
                          ("step_j", ["weights_ms", "kv_ms", "operators_ms", "flops_ms"]),
                          ("step_j", ["step_ms", "weights_ms", "kv_ms", "flops_ms"])):
        theta, mape, per = held_out_fit(t, bases, target)
        print(f"| {target} | {', '.join(bases)} | {', '.join(f'{v:.3g}' for v in theta)} | {mape:.1f} | {per} |")


if __name__ == "__main__":
    main()
