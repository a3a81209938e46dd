"""Generate the predictor dataset campaign: sweep specs split into parts < 9 min on one GPU.

Usage (repo root, no GPU needed):  PYTHONPATH=src python3 results/predictor/campaign/make_campaign.py
Writes parts-<tier>/pNN-*.yaml, plan.md (every sweep with its time estimate) and parts.txt.
Tiers: core and extended (uniform batches, the training rows) and mixed (ragged batches of prompts
of varied lengths, the study's Fig. 12 validation: measured batch energy vs the sum of per-prompt
predictions; results/predictor/analyse.py writes mixed_size.md from them).

Method (From Prompts to Power's): catalog models (dense MHA, GQA, MoE) plus variants that edit ONE
config field at a time. Each trial generates GEN_MAX tokens once; with counter reads at selected
tokens (`--token-energy-reads`, meter/token_reads.py) one repetition gives the energy of every
shorter output, so the output-length axis costs no extra runs.

Time estimate per repetition (H100 SXM, static mode, bf16), from the physics features:
  prefill: prefill roofline / 0.5;  decode: max(decode roofline / 0.6, layer_steps x 0.32 ms)
0.32 ms per layer-step is the launch-bound floor measured for Llama-3.1-8B static mode
(TPOT 10.3 ms over 32 layers, results/h100/core). Per trial: (repeats + warmups) x repetition
+ 5 s cooldown + 3 s + transformers' compile of the static decode step for the trial's shape,
1.4 s per layer (measured on the H100: a static Llama-3.1-8B trial spent ~52 s outside its
repetitions, results/h100/core/store-8b.json; GPT-OSS-20B and Qwen3-32B compiled steps scale
with layer count too); per sweep: 30 s process/CUDA start + idle calibration, 15 s + 1 s/GB model
build per variant. Parts are packed to <= 420 s estimated (x1.25 margin under 9 min). H200 uses
the same specs (the estimate is an upper bound there: more bandwidth).
"""

from __future__ import annotations

import json
from pathlib import Path

from wattlens.analysis.predict_features import Request, request_features
from wattlens.hw.specs import gpu_spec_by_name
from wattlens.models.arithmetic import model_facts
from wattlens.models.catalog import resolve_model
from wattlens.workloads.mixed import mixed_batches

HERE = Path(__file__).resolve().parent
GEN_MAX = 1000
CTX = [128, 1000]
BATCH = [8, 64]  # the targets are at batch >= 8; batch 1 for the catalog models in the extended tier
REPEATS, WARMUPS = 2, 1
PART_BUDGET_S = 420.0
LAUNCH_S_PER_LAYER_STEP = 0.32e-3
STATIC_COMPILE_S_PER_LAYER = 1.4

# (base model, variants: one field edited per entry, {} = the model itself, batch list override)
CORE = [
    ("llama-3.2-1b", [{}, {"num_hidden_layers": 8}, {"num_hidden_layers": 24}, {"hidden_size": 1536},
                      {"hidden_size": 3072}, {"intermediate_size": 4096}, {"intermediate_size": 16384},
                      {"num_attention_heads": 16}, {"num_attention_heads": 64}, {"num_key_value_heads": 2},
                      {"num_key_value_heads": 32}], None),
    ("qwen2.5-0.5b", [{}], None),
    ("phi-2", [{}], None),
    ("opt-1.3b", [{}], None),
    ("llama-3.1-8b", [{}], None),
    ("qwen3-30b-a3b", [{"num_hidden_layers": 12}, {"num_hidden_layers": 12, "num_experts": 32},
                       {"num_hidden_layers": 12, "num_experts": 64}, {"num_hidden_layers": 12, "num_experts_per_tok": 2},
                       {"num_hidden_layers": 12, "num_experts_per_tok": 4}], None),
]
EXTENDED = [
    ("llama-3.2-3b", [{}], [1, 8, 64]),
    ("qwen2.5-7b", [{}], [1, 8, 64]),
    ("mistral-7b-v0.3", [{}], [1, 8, 64]),
    ("gemma-2-9b", [{}], [1, 8, 64]),
    ("llama-3.2-1b", [{}], [1]),
    ("llama-3.1-8b", [{}], [1]),
    ("qwen3-30b-a3b", [{"num_hidden_layers": 24}], None),
    ("qwen3-30b-a3b", [{}], [1, 8, 16]),  # 61 GB of bf16 weights: batch 64 x 2k tokens would not fit on 80 GB
]

# Mixed tier: the same ragged batches for every model, static mode (compiled cannot pad), one output
# length. Each batch is its own (ctx, batch) shape, so the estimate includes a compile per batch.
MIXED_MODELS = ["llama-3.2-1b", "qwen2.5-0.5b", "llama-3.1-8b"]
MIXED_GEN = 256
MIXED_BATCH_SIZES = [8, 16, 32]
MIXED_BATCHES_PER_MODEL = 4
MIXED_MIN_TOKENS, MIXED_MAX_TOKENS, MIXED_SEED = 32, 1000, 0


def estimate_trial_s(cfg: dict, ctx: int, gen: int, batch: int) -> float:
    f = request_features(cfg, Request(ctx, gen, batch), gpu_spec_by_name("H100"))
    rep = f["prefill_roofline_s"] / 0.5 + max(f["decode_roofline_s"] / 0.6, f["layer_steps"] * LAUNCH_S_PER_LAYER_STEP)
    compile_s = STATIC_COMPILE_S_PER_LAYER * cfg.get("num_hidden_layers", 32)
    return (REPEATS + WARMUPS) * rep + 5.0 + 3.0 + compile_s


def sweeps(plan, gens: list[int]):
    """(name, yaml dict, estimated seconds) per (model, variant), split by point when too long."""
    out = []
    for model, variants, batches in plan:
        for ov in variants:
            cfg = resolve_model(model, tuple(sorted(ov.items()))).config
            facts = model_facts(cfg)
            b_list = batches or BATCH
            build_s = 15.0 + facts.weights_bytes(2) / 1e9
            tag = "-".join(f"{k.replace('num_', '').replace('_', '')}{v}" for k, v in ov.items()) or "base"
            whole = build_s + sum(estimate_trial_s(cfg, c, g, b) for c in CTX for g in gens for b in b_list)
            groups = [(CTX, b_list)] if whole + 30 <= PART_BUDGET_S else [([c], [b]) for c in CTX for b in b_list]
            for ctxs, bs in groups:
                est = build_s + sum(estimate_trial_s(cfg, c, g, b) for c in ctxs for g in gens for b in bs)
                doc = {"models": [model], "ctx": ctxs, "gen": gens, "batch": bs, "dtype": "bf16", "mode": "static",
                       "repeats": REPEATS, "warmups": WARMUPS}
                if ov:
                    doc["set"] = [ov]
                suffix = "" if len(groups) == 1 else f"-c{ctxs[0]}-b{bs[0]}"
                out.append((f"{model}-{tag}{suffix}", doc, est))
    return out


def mixed_sweeps():
    """(name, yaml dict, estimated seconds) per model of the mixed tier, split per batch when too long.

    Rows of a ragged batch are computed at the padded (longest) length, so each is estimated as a
    uniform batch of that length.
    """
    batches = mixed_batches(MIXED_BATCHES_PER_MODEL, MIXED_BATCH_SIZES, MIXED_MIN_TOKENS, MIXED_MAX_TOKENS,
                            MIXED_SEED)
    out = []
    for model in MIXED_MODELS:
        cfg = resolve_model(model).config
        build_s = 15.0 + model_facts(cfg).weights_bytes(2) / 1e9
        per_batch = [estimate_trial_s(cfg, max(b), MIXED_GEN, len(b)) for b in batches]
        whole = build_s + sum(per_batch)
        every = list(range(len(batches)))
        groups = [every] if whole + 30 <= PART_BUDGET_S else [[i] for i in every]
        for idx in groups:
            doc = {"models": [model], "prompt_lengths": [list(batches[i]) for i in idx], "gen": [MIXED_GEN],
                   "dtype": "bf16", "mode": "static", "repeats": REPEATS, "warmups": WARMUPS}
            suffix = "" if len(groups) == 1 else f"-m{idx[0]}-b{len(batches[idx[0]])}"
            out.append((f"{model}-mixed{suffix}", doc, build_s + sum(per_batch[i] for i in idx)))
    return out


def pack(items, budget=PART_BUDGET_S, start_s=30.0):
    parts, cur, cur_s = [], [], start_s
    for it in sorted(items, key=lambda x: -x[2]):
        need = it[2] + start_s
        placed = False
        for p in parts:
            if p[1] + need <= budget:
                p[0].append(it)
                p[1] += need
                placed = True
                break
        if not placed:
            parts.append([[it], need])
    return parts


def main() -> None:
    import yaml

    lines = ["# Predictor campaign plan (generated by make_campaign.py; estimates, not measurements)", ""]
    listing = []
    gens = [GEN_MAX]
    tiers = [("core", sweeps(CORE, gens), f"gen {gens}"), ("extended", sweeps(EXTENDED, gens), f"gen {gens}"),
             ("mixed", mixed_sweeps(), f"gen [{MIXED_GEN}], ragged batches of {MIXED_BATCH_SIZES} prompts of "
              f"{MIXED_MIN_TOKENS}-{MIXED_MAX_TOKENS} tokens, log-uniform, seed {MIXED_SEED}")]
    for variant, items, what in tiers:
        flow = None if variant == "mixed" else False  # one ragged batch per line; other tiers as before
        d = HERE / f"parts-{variant}"
        d.mkdir(exist_ok=True)
        for old in d.glob("*.yaml"):
            old.unlink()
        over = [i for i in items if i[2] + 30 > PART_BUDGET_S]
        parts = pack(items)
        total = sum(p[1] for p in parts)
        lines += [f"## `{variant}` tier ({what}): {len(items)} sweeps, {len(parts)} parts, "
                  f"~{total / 60:.0f} GPU-minutes per GPU kind", ""]
        if over:
            lines.append(f"WARNING: {len(over)} sweep(s) exceed one part alone: {[o[0] for o in over]}")
        lines += ["| part | sweeps | estimated s |", "|---|---|---|"]
        for i, (its, secs) in enumerate(parts):
            names = []
            for name, doc, est in its:
                fn = f"p{i:02d}-{name}.yaml"
                (d / fn).write_text(f"# {name}: estimated {est:.0f} s on one H100 (see make_campaign.py)\n"
                                    + yaml.safe_dump(doc, sort_keys=False, default_flow_style=flow))
                names.append(f"{name} ({est:.0f} s)")
                listing.append(f"{variant} p{i:02d} {fn}")
            lines.append(f"| {i:02d} | {', '.join(names)} | {secs:.0f} |")
        lines.append("")
    (HERE / "plan.md").write_text("\n".join(lines) + "\n")
    (HERE / "parts.txt").write_text("\n".join(listing) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
