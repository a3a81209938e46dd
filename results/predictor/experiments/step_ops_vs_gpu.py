"""Experiment (session 17): operators per decode step counted on the CPU against the kernels an H100 ran.

The predictor's launch-bound feature (`decode_kernels`) is the CPU count of one decode step's operators
(`wattlens.models.decode_ops`' table) plus the reduce kernels cuBLAS adds to split GEMMs (the per-GPU
GEMM table). Until session 16 the table counted a plain `model(...)` call with a dynamic cache; since
session 17 it counts the `graphed` loop's own step (`wattlens.backends.step_ops`). This compares both
with the kernels per decode step profiled on an H100 (step_profile.py; session 13's and session 17's
files, the latest per config: batch 8, prompt 128, base configs, random weights).

A second table asks how far a decode step's energy follows where its time goes. For each base config
profiled at batch 8 it puts the step's time and energy (slopes of the dataset's rows over output length,
H100, prompt 128, 1128 cache slots: `decode_steps.step_table`) beside the profiled kernel time in GEMMs
(cuBLAS / nvjet), in the attention (cuDNN SDPA) and in every other kernel, and fits (non-negative, relative
error, in sample) energy = P x step time + a power for each phase x its time, then the same with the
weight and KV bytes at an energy per GB. (GPT-OSS's sink attention runs as matmuls and reductions, so
its attention time counts as GEMM and other kernels.)

Usage (repo root): PYTHONPATH=src python3 results/predictor/experiments/step_ops_vs_gpu.py OLD_TABLE.json \
    > results/predictor/experiments/step_ops_vs_gpu.md
(OLD_TABLE.json: `git show a8ce911:src/wattlens/models/data/decode_ops.json`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from wattlens.analysis import predictor as P
from wattlens.analysis.predict_features import Request, step_gemms
from wattlens.hw.specs import gpu_spec_by_name
from wattlens.models.arithmetic import model_facts
from wattlens.models.catalog import resolve_model
from wattlens.models.decode_ops import _table

HERE = Path(__file__).parent
PROFILES = [HERE / f"step_profile-h100-{s}.json" for s in ("session17-c", "session17-b", "session17-a", "session13")]


def main() -> int:
    old = json.loads(Path(sys.argv[1]).read_text())["model_types"]
    new = _table()["model_types"]
    cases = [c for p in PROFILES for c in json.loads(p.read_text())["cases"]]
    gpu = gpu_spec_by_name("H100")
    print("# Operators per decode step: CPU counts against the kernels an H100 ran (session 17; experiment)\n")
    print("Random weights, `graphed` mode, batch 8, prompt 128, 1128 cache slots. GPU: kernels per step in "
          f"{', '.join(f'`{p.name}`' for p in PROFILES)} (torch profiler, 5 steps; the first file naming a "
          "config counts). Counts: the operator table + the split-GEMM reduce "
          "kernels of the H100's GEMM table. Old: a plain forward with a dynamic cache (table until session 16); "
          "new: the graphed loop's step (`wattlens.backends.step_ops`).\n")
    print("| config | GPU kernels | old count | old / GPU | new count | new / GPU |")
    print("|---|---|---|---|---|---|")
    seen, old_err, new_err, rows = set(), [], [], []
    for case in cases:
        if case.get("overrides") or case.get("batch") != 8 or "kernels_per_step" not in case or case["model"] in seen:
            continue
        seen.add(case["model"])
        config = resolve_model(case["model"]).config
        facts = model_facts(config)
        req = Request(case["ctx"], 1000, case["batch"], "bf16", "graphed", cache_tokens=case["cache_slots"])
        reduces = step_gemms(config, facts, req, gpu).extra_kernels
        row_old, row_new = old[facts.model_type], new[facts.model_type]
        n_old = round(row_old["per_layer"] * facts.num_layers + row_old["outside"] + reduces)
        n_new = round(row_new["per_layer"] * facts.num_layers + row_new["outside"] + reduces)
        gpu_n = case["kernels_per_step"]
        old_err.append(abs(n_old / gpu_n - 1))
        new_err.append(abs(n_new / gpu_n - 1))
        rows.append((facts.model_type, f"| {case['model']} | {gpu_n:.0f} | {n_old} | {n_old / gpu_n:.3f} | {n_new} | {n_new / gpu_n:.3f} |"))
    for _, line in sorted(rows):
        print(line)
    print(f"\nMean absolute difference from the GPU's count: old {100 * sum(old_err) / len(old_err):.1f}%, "
          f"new {100 * sum(new_err) / len(new_err):.1f}% ({len(new_err)} architectures).")
    phase_power(cases)
    return 0


def _phases(case: dict) -> dict[str, float]:
    """Profiled kernel time per decode step (ms) in GEMMs, attention and everything else."""
    kernels = case["top_kernels"]
    gemm = sum(k["us_per_step"] for k in kernels
               if any(tag in k["name"].lower() for tag in ("nvjet", "gemm", "splitk", "cutlass")))
    attention = sum(k["us_per_step"] for k in kernels if "sdpa" in k["name"] or "flash" in k["name"].lower())
    return {"gemm_ms": gemm / 1e3, "attention_ms": attention / 1e3,
            "other_ms": case["kernel_ms_per_step"] - (gemm + attention) / 1e3}


def phase_table(rows: pd.DataFrame, cases: list[dict]) -> pd.DataFrame:
    """One row per base config profiled at batch 8: its step time and energy (slopes of `rows`, the dataset's
    H100 rows at batch 8 and prompt 128; 1128 cache slots), the profiled kernel time in each phase, in s
    (`step_s`, `gemm_s`, `attention_s`, `other_s`), and the GB the step moves (`gb`)."""
    sys.path.insert(0, str(HERE))
    from decode_steps import step_table

    steps = step_table(rows)
    steps = steps[steps["cache"] == 1128].set_index("config")
    profiled = {}
    for case in cases:
        if not case.get("overrides") and case.get("batch") == 8 and "top_kernels" in case:
            profiled.setdefault(case["model"], _phases(case))
    t = pd.DataFrame([{"config": m, **profiled[m], **steps.loc[m, ["step_ms", "step_j", "weights_ms", "kv_ms"]].to_dict()}
                      for m in sorted(profiled) if m in steps.index])
    t["step_s"], t["gemm_s"], t["attention_s"], t["other_s"] = (t[c] / 1e3 for c in
                                                               ("step_ms", "gemm_ms", "attention_ms", "other_ms"))
    t["gb"] = (t["weights_ms"] + t["kv_ms"]) / 1e3 * gpu_spec_by_name("H100").memory_bandwidth_bytes_per_s / 1e9
    return t


def h100_batch8_rows(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """The dataset's rows the phase table is made from: H100, batch 8, prompt 128, base configs, as fitted.
    `df`: the fitted rows already loaded (`one_serving_mode`, `kv_heads_read_once`); else read here."""
    sys.path.insert(0, str(HERE))
    from decode_steps import GPU

    if df is None:
        df, _, _ = P.one_serving_mode(P.load_dataset(HERE.parents[2] / "data/predictor/energy_v1.csv"))
        df, _ = P.kv_heads_read_once(df)  # DiffLlama's rows: its attention copies the cache, as in every fit
    return df[(df["gpu_name"] == GPU) & (df["batch_size"] == 8) & (df["input_tokens"] == 128)
              & (df["overrides_json"].fillna("") == "")]


def phase_power(cases: list[dict]) -> None:
    t = phase_table(h100_batch8_rows(), cases)
    y = t["step_j"].to_numpy()
    print("\n## Where a decode step's energy goes (H100, batch 8, prompt 128)\n")
    fits = {"phase times": ["step_s", "gemm_s", "attention_s", "other_s"],
            "phase times + GB moved": ["step_s", "gemm_s", "attention_s", "other_s", "gb"]}
    for name, bases in fits.items():
        A = t[bases].to_numpy(float)
        theta, _ = nnls(A / y[:, None], np.ones(len(y)))
        t[name] = 100 * (A @ theta / y - 1)
        units = ", ".join(f"{v:.3f} J per GB moved" if b == "gb" else f"{b} x {v:.0f} W" for b, v in zip(bases, theta))
        print(f"- {name}: {units}; in sample, mean absolute error {t[name].abs().mean():.1f}%, "
              f"largest {t[name].abs().max():.1f}%")
    print("\n| config | step ms | step J | W | GEMM ms | attention ms | other kernels ms | fit on phase times | "
          "+ GB moved |")
    print("|---|---|---|---|---|---|---|---|---|")
    for _, r in t.iterrows():
        print(f"| {r.config} | {r.step_ms:.2f} | {r.step_j:.3f} | {r.step_j / r.step_s:.0f} | {r.gemm_ms:.2f} | "
              f"{r.attention_ms:.2f} | {r.other_ms:.2f} | {r['phase times']:+.1f}% | {r['phase times + GB moved']:+.1f}% |")


if __name__ == "__main__":
    sys.exit(main())
