"""Generate the predictor dataset campaign: sweep specs split into parts < 9 min on one GPU.

Usage (repo root, no GPU needed):  PYTHONPATH=src python3 results/predictor/campaign/make_campaign.py
Writes parts-<tier>/pNN-*.yaml, plan.md (every sweep with its time estimate) and parts.txt.
Tiers: core and extended (uniform batches, the training rows), capacity (the same requests from
100- and 300-token generations: smaller static caches), families and families-2 (architectures and
models no other tier has; families-3 and -4: seven architectures from transformers' config defaults)
and mixed (ragged batches of prompts of varied lengths, the study's Fig. 12 validation: measured
batch energy vs the sum of per-prompt predictions; results/predictor/analyse.py writes
mixed_size.md from them).

Method (From Prompts to Power's): catalog models (dense MHA, GQA, MoE) plus variants that edit ONE
config field at a time. Each trial generates GEN_MAX tokens once; with counter reads at selected
tokens (`--token-energy-reads`, meter/token_reads.py) one repetition gives the energy of every
shorter output, so the output-length axis costs no extra runs.

Serving mode: `graphed` (static cache, the model's own kernels captured in a CUDA graph): decode
is GPU-bound, so the energy is the GPU's and not the host's, and a new (ctx, batch) shape costs a
capture of 2-9 s instead of transformers' ~1.4 s-per-layer static compile (results/h100/lean-modes/).
Models whose sliding window is longer than the shortest context (gemma-2) cannot run the lean loop
there and use `static`. Mixed (ragged) batches: tiers `mixed-graphed` (graphed, left-padded rows
masked in the lean loop) and `mixed` (static).

Time estimate per repetition (H100 SXM, bf16), from the physics features:
  prefill: prefill roofline / 0.5
  decode, graphed: max(decode roofline / 0.45, layer_steps x floor) -- measured on the H100:
    Llama-3.1-8B 48-53% of the roofline at batch 1-64; a 12-layer Qwen3-30B-A3B at batch 1
    0.30 ms per layer-step (the MoE floor); dense floor 0.05 ms per layer-step (assumed: ~15
    kernels per layer replayed from a graph at a few us each; not measured)
  decode, static: max(decode roofline / 0.6, layer_steps x 0.32 ms) (Llama-3.1-8B static mode,
    TPOT 10.3 ms over 32 layers, results/h100/core)
Per trial: (repeats + warmups) x repetition + 5 s cooldown + 3 s, plus the shape's setup: graphed
6 s (capture), static 1.4 s per layer (transformers' compile; a static Llama-3.1-8B trial spent ~52 s
outside its repetitions, results/h100/core/store-8b.json). Per sweep process: 30 s (CUDA start,
idle calibration); per variant 15 s + 1 s/GB model build. All variants of one base model share a
sweep (its `set` axis) while they fit a part. Parts are packed to <= 420 s estimated (x1.25 margin
under 9 min). H200 uses the same specs (the estimate is an upper bound there: more bandwidth).
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
SWEEP_START_S = 30.0
LAUNCH_S_PER_LAYER_STEP = {"static": 0.32e-3, "graphed": 0.05e-3, "graphed-moe": 0.30e-3}
DECODE_ROOFLINE_FRACTION = {"static": 0.6, "graphed": 0.45}
STATIC_COMPILE_S_PER_LAYER = 1.4
GRAPH_CAPTURE_S = 6.0

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

# Capacity tier: the same request cut from generations of different lengths. In a static cache every
# decode step attends over all the slots allocated for the longest output (the core and extended rows
# come from 1000-token generations); these shorter generations tell that cost apart from the output
# length, and they are what `wattlens predict` assumes (cache = input + output).
CAPACITY = [("llama-3.2-1b", [{}], None), ("qwen2.5-0.5b", [{}], None), ("phi-2", [{}], None),
            ("opt-1.3b", [{}], None), ("llama-3.1-8b", [{}], None),
            ("qwen3-30b-a3b", [{"num_hidden_layers": 12}], None)]
CAPACITY_GENS = [100, 300]

# Families tier: architectures no other tier has, in `graphed` mode (GPT-OSS-20B: MoE with
# attention sinks and a 128-token window, which the shortest context fills; Gemma-7B: GeGLU,
# 256-wide heads, a 256k vocabulary), so leave-one-architecture-out has more to hold out and
# Qwen3-MoE is no longer the only MoE family.
FAMILIES = [("gpt-oss-20b", [{}], None), ("gemma-7b", [{}], None)]
# Families-2 tier (session 8): the catalog's remaining single-GPU models. Yi-34B is an eighth family
# (dense, Llama's architecture at 34B); Mixtral-8x7B is a second MoE architecture, in the Mistral
# family; Qwen3-32B is dense Qwen3; OPT-6.7B a larger OPT. Yi-34B, Mixtral-8x7B (93 GB of bf16
# weights) and Qwen3-32B at batch 64 need an H200's memory.
FAMILIES_2 = [("yi-34b", [{}], None), ("mixtral-8x7b", [{}], None), ("qwen3-32b", [{}], None),
              ("opt-6.7b", [{}], None)]
# Families-3 tier (session 10): four more architectures, configs from transformers' configuration
# defaults (src/wattlens/models/configs/PROVENANCE.md): Falcon-7B (multi-query attention, parallel
# attention and GELU MLP, one LayerNorm per layer), StableLM-3B (MHA, LayerNorm, rotary on a quarter
# of each head), OLMoE-1B-7B (a third MoE architecture: 64 experts, 8 per token, q/k norms) and
# StarCoder2-3B (GQA 24 / 2, biases everywhere, GELU MLP of two matrices). Each is a family of its own.
FAMILIES_3 = [("falcon-7b", [{}], None), ("stablelm-3b-4e1t", [{}], None), ("olmoe-1b-7b", [{}], None),
              ("starcoder2-3b", [{}], None)]
# Families-4 tier (session 10): three more, also from transformers' configuration defaults: GLM-4-9B
# (GQA 32 / 2, four RMSNorms per layer, fused gate-up), ERNIE-4.5-0.3B (a 0.36B GQA model: the
# launch-bound regime) and AFM-4.5B's shapes (ReLU-squared MLP of two matrices, MHA with 80-wide heads).
FAMILIES_4 = [("glm-4-9b", [{}], None), ("ernie-4.5-0.3b", [{}], None), ("afm-4.5b", [{}], None)]
# Families-5 tier (session 12): two dense architectures no row had yet, also from transformers'
# configuration defaults (measured while `wattlens.models.introspect` counted them; formulas since):
# OLMo-2-7B (MHA, norms after attention and MLP, q/k norms over the whole projection; the OLMo family,
# with OLMoE) and Persimmon-8B (MHA with 64 heads of 64, squared-ReLU MLP of two matrices, q/k
# LayerNorms, rotary on half of each head, a 262k vocabulary). Their batch-64 / 1000-token points
# need more than the H100's 80 GB (KV cache of 2000 slots: 67 and 75 GB).
FAMILIES_5 = [("olmo-2-7b", [{}], None), ("persimmon-8b", [{}], None)]
# Families-6 tier (session 13): the architectures session 12 named as the next ones, also from
# transformers' configuration defaults (formulas in `arithmetic`, checked against the module):
# Phi-3-mini (Llama-like with fused qkv and gate-up projections, MHA; in the Phi family with Phi-2),
# Qwen1.5-MoE-A2.7B (a fourth MoE architecture: 60 experts, 4 per token, plus a shared expert every
# token runs; in the Qwen family) and Helium-1 (Kyutai's 2B: MHA with 128-wide heads; a family of
# its own).
FAMILIES_6 = [("phi-3-mini", [{}], None), ("qwen1.5-moe-a2.7b", [{}], None), ("helium-1-preview", [{}], None)]
# Families-7 tier (session 15): four more from transformers' configuration defaults, three of them
# families no row had: SmolLM3-3B (GQA 16 / 4, no rotary in every fourth layer, tied embeddings; family
# smollm), Granite's class default (Llama-2-7B's shapes with Granite's embedding, residual, attention and
# logit multipliers; family granite), Apertus' class default (MHA, q/k norms, the xIELU activation, which
# transformers runs as a chain of elementwise kernels without its CUDA extension; family apertus), and
# ERNIE-4.5-21B-A3B (a fifth MoE architecture: 64 experts, 6 per token, two shared experts, a dense
# first layer; in the ERNIE family). So leave-one-architecture-out holds out 20 families.
FAMILIES_7 = [("smollm3-3b", [{}], None), ("granite-6.7b", [{}], None), ("apertus-7b", [{}], None),
              ("ernie-4.5-21b-a3b", [{}], None)]
# Families-8 tier (session 16): five more dense architectures from transformers' configuration defaults,
# each a family no row had: Jais-2-8B (MHA with 26 heads of 128, biases, a ReLU-squared MLP of two
# matrices 26624 wide, a 150k vocabulary), nanochat's default (a 0.26B model: 6 heads of 128, ReLU-squared
# MLP, q/k norms without weights), DiffLlama's default (differential attention: two softmax maps per head,
# a 1.2B model), Seed-OSS's default (a 29B GQA 80 / 8 model, 64 layers, q/k/v biases) and GPT-NeoX-20B
# (parallel attention and MLP, rotary on a quarter of each head, MHA with 64 heads of 96, a 1.08 MB-per-token
# KV cache). Seed-OSS and NeoX at batch 64 need more than the H100's 80 GB (NeoX's 64 x 1000-token cache
# more than the H200's too); those points are left to fail and go unstored, as Granite's did in session 15.
FAMILIES_8 = [("jais-2-8b", [{}], None), ("nanochat-0.26b", [{}], None), ("diffllama-1.2b", [{}], None),
              ("seed-oss-29b", [{}], None), ("gpt-neox-20b", [{}], None)]

# Mixed tiers: the same ragged batches for every model, one output length. `mixed-graphed` runs them in
# the training rows' serving mode (the fair Fig. 12 test); `mixed` in static mode (measured on the H100
# on 2026-11-22 before the lean loop could pad: it shows what a serving-mode mismatch costs). Each
# batch is its own (ctx, batch) shape: a capture (graphed) or a compile (static) per batch.
MIXED_MODELS = ["llama-3.2-1b", "qwen2.5-0.5b", "llama-3.1-8b"]
MIXED_GEN = 256
MIXED_BATCH_SIZES = [8, 16, 32]
MIXED_BATCHES_PER_MODEL = 4
MIXED_MIN_TOKENS, MIXED_MAX_TOKENS, MIXED_SEED = 32, 1000, 0


def campaign_mode(cfg: dict) -> str:
    """`graphed`, unless a sliding window longer than the shortest context rules the lean loop out."""
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    return "static" if window and window > min(CTX) else "graphed"


def estimate_trial_s(cfg: dict, ctx: int, gen: int, batch: int, mode: str = "static") -> float:
    # The fractions above were read off the roofline with attention over the context so far (the
    # features' eager convention), so the estimate keeps that convention.
    f = request_features(cfg, Request(ctx, gen, batch, mode="eager"), gpu_spec_by_name("H100"))
    floor = LAUNCH_S_PER_LAYER_STEP["graphed-moe" if mode == "graphed" and f["is_moe"] else mode]
    decode_s = max(f["decode_roofline_s"] / DECODE_ROOFLINE_FRACTION[mode], f["layer_steps"] * floor)
    rep = f["prefill_roofline_s"] / 0.5 + decode_s
    setup_s = GRAPH_CAPTURE_S if mode == "graphed" else STATIC_COMPILE_S_PER_LAYER * cfg.get("num_hidden_layers", 32)
    return (REPEATS + WARMUPS) * rep + 5.0 + 3.0 + setup_s


def _tag(ov: dict) -> str:
    return "-".join(f"{k.replace('num_', '').replace('_', '')}{v}" for k, v in ov.items()) or "base"


def _sweep_doc(model: str, ctx: list[int], gens: list[int], batch: list[int], mode: str, variants: list[dict]) -> dict:
    """A sweep YAML mapping; the `set` axis only when some variant edits the config."""
    doc = {"models": [model], "ctx": ctx, "gen": gens, "batch": batch, "dtype": "bf16", "mode": mode,
           "repeats": REPEATS, "warmups": WARMUPS}
    if any(variants):
        doc["set"] = variants
    return doc


def sweeps(plan, gens: list[int]):
    """(name, yaml dict, estimated seconds): one sweep per base model holding as many of its variants
    (`set` axis) as fit one part; a variant too long for a part alone is split by (ctx, batch) point."""
    out = []
    for model, variants, batches in plan:
        b_list = batches or BATCH
        groups: list[list[tuple[dict, float, str]]] = []  # consecutive variants of one mode that fit a part
        for ov in variants:
            cfg = resolve_model(model, tuple(sorted(ov.items()))).config
            mode = campaign_mode(cfg)
            build_s = 15.0 + model_facts(cfg).weights_bytes(2) / 1e9
            whole = build_s + sum(estimate_trial_s(cfg, c, g, b, mode) for c in CTX for g in gens for b in b_list)
            if whole + SWEEP_START_S > PART_BUDGET_S:  # alone too long: one sweep per (ctx, batch) point
                for c in CTX:
                    for b in b_list:
                        est = build_s + sum(estimate_trial_s(cfg, c, g, b, mode) for g in gens)
                        out.append((f"{model}-{_tag(ov)}-c{c}-b{b}", _sweep_doc(model, [c], gens, [b], mode, [ov]),
                                    est))
                continue
            last = groups[-1] if groups else None
            if last is None or last[0][2] != mode or sum(e for _, e, _ in last) + whole + SWEEP_START_S > PART_BUDGET_S:
                groups.append([])
            groups[-1].append((ov, whole, mode))
        for group in groups:
            out.append((f"{model}-{'+'.join(_tag(ov) for ov, _, _ in group)}",
                        _sweep_doc(model, CTX, gens, b_list, group[0][2], [ov for ov, _, _ in group]),
                        sum(e for _, e, _ in group)))
    return out


def mixed_sweeps(mode: str):
    """(name, yaml dict, estimated seconds) per model of a mixed tier, split per batch when too long.

    Rows of a ragged batch are computed at the padded (longest) length, so each is estimated as a
    uniform batch of that length.
    """
    batches = mixed_batches(MIXED_BATCHES_PER_MODEL, MIXED_BATCH_SIZES, MIXED_MIN_TOKENS, MIXED_MAX_TOKENS,
                            MIXED_SEED)
    out = []
    for model in MIXED_MODELS:
        cfg = resolve_model(model).config
        build_s = 15.0 + model_facts(cfg).weights_bytes(2) / 1e9
        per_batch = [estimate_trial_s(cfg, max(b), MIXED_GEN, len(b), mode) for b in batches]
        whole = build_s + sum(per_batch)
        every = list(range(len(batches)))
        groups = [every] if whole + 30 <= PART_BUDGET_S else [[i] for i in every]
        for idx in groups:
            doc = {"models": [model], "prompt_lengths": [list(batches[i]) for i in idx], "gen": [MIXED_GEN],
                   "dtype": "bf16", "mode": mode, "repeats": REPEATS, "warmups": WARMUPS}
            suffix = "" if len(groups) == 1 else f"-m{idx[0]}-b{len(batches[idx[0]])}"
            out.append((f"{model}-mixed{suffix}", doc, build_s + sum(per_batch[i] for i in idx)))
    return out


def pack(items, budget=PART_BUDGET_S, start_s=SWEEP_START_S):
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

    lines = ["# Predictor campaign plan (generated by make_campaign.py; estimates, not measurements)", "",
             "Measured on 2026-11-22 (H100 core parts 01-08, mixed 01-02; H200 core 05-08): calls took "
             "0.55-0.7x these estimates, so two parts fit one 10-minute call (results/predictor/README.md).", ""]
    listing = []
    gens = [GEN_MAX]
    ragged = (f"gen [{MIXED_GEN}], ragged batches of {MIXED_BATCH_SIZES} prompts of {MIXED_MIN_TOKENS}-"
              f"{MIXED_MAX_TOKENS} tokens, log-uniform, seed {MIXED_SEED}")
    tiers = [("core", sweeps(CORE, gens), f"gen {gens}"), ("extended", sweeps(EXTENDED, gens), f"gen {gens}"),
             ("capacity", sweeps(CAPACITY, CAPACITY_GENS), f"gen {CAPACITY_GENS}"),
             ("families", sweeps(FAMILIES, gens), f"gen {gens}"),
             ("families-2", sweeps(FAMILIES_2, gens), f"gen {gens}"),
             ("families-3", sweeps(FAMILIES_3, gens), f"gen {gens}"),
             ("families-4", sweeps(FAMILIES_4, gens), f"gen {gens}"),
             ("families-5", sweeps(FAMILIES_5, gens), f"gen {gens}"),
             ("families-6", sweeps(FAMILIES_6, gens), f"gen {gens}"),
             ("families-7", sweeps(FAMILIES_7, gens), f"gen {gens}"),
             ("families-8", sweeps(FAMILIES_8, gens), f"gen {gens}"),
             ("mixed", mixed_sweeps("static"), f"{ragged}, static"),
             ("mixed-graphed", mixed_sweeps("graphed"), f"{ragged}, graphed")]
    for variant, items, what in tiers:
        flow = None if variant.startswith("mixed") else False  # one ragged batch per line; other tiers as before
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
