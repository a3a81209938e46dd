"""How many routed experts a random-weight MoE's decode step touches, against the predictor's assumption.

The features charge a decode step for the experts its tokens touch, counted as if each of a batch's
B tokens chose its k of E experts uniformly and independently: E x (1 - (1 - k/E)^B) per MoE layer
(`ModelFacts.expected_experts_touched`, which this script uses too). Random weights could break that
(a router that sends every token to the same experts, or greedy decoding that makes every row of the
batch emit the same token), and then the measured energy would describe a cheaper step than the features. This script runs the
campaign's prompts (uniform random token ids, seed 0, as `wattlens sweep` draws them) through a catalog
model built as the campaign builds it (random weights, bf16), decodes greedily in eager mode, and
records, at every decode step and MoE layer, the distinct experts the batch's tokens chose (read from
the `experts` module's `top_k_index` argument, transformers 5's MoE interface) and the distinct tokens
the batch emitted.

    PYTHONPATH=src python3 results/predictor/experiments/moe_routing.py --out routing.json \\
        "ernie-4.5-21b-a3b|{}|8|128" "qwen1.5-moe-a2.7b|{}|8|128" ...

Each case is model|overrides JSON|batch|prompt tokens; `--gen` decode steps (default 64). Needs a GPU
(or runs slowly on the CPU with `--device cpu`). `--report A.json B.json ...` prints the Markdown table
of saved runs instead (moe_routing.md).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path


def _experts_modules(model):
    """(layer index, module) for every module named `experts` (transformers 5's routed experts)."""
    out = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[-1] == "experts" and "layers" in parts:
            out.append((int(parts[parts.index("layers") + 1]), module))
    return out


def _index_argument(args, kwargs):
    """The integer tensor of chosen experts among an experts module's call arguments."""
    import torch

    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dtype in (torch.int64, torch.int32) and value.dim() == 2:
            return value
    return None


def route_case(model_name: str, overrides: dict, batch: int, prompt_tokens: int, gen: int, device: str) -> dict:
    import torch

    from wattlens.models.arithmetic import model_facts
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model
    from wattlens.workloads.inputs import synthetic_batch

    source = resolve_model(model_name, tuple(sorted(overrides.items())))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(source, "bf16", device)
    build_s = time.perf_counter() - started
    facts = model_facts(source.config)  # experts, experts per token and the uniform expectation, as the features
    distinct: dict[int, list[int]] = {}
    calls_seen: dict[int, int] = {}

    def hook_for(layer: int):
        def hook(module, args, kwargs):
            idx = _index_argument(args, kwargs)
            if idx is None:
                return
            calls_seen[layer] = calls_seen.get(layer, 0) + 1
            if idx.shape[0] == batch:  # a decode step (the prompt's call has batch x prompt rows)
                distinct.setdefault(layer, []).append(int(torch.unique(idx).numel()))
        return hook

    handles = [m.register_forward_pre_hook(hook_for(layer), with_kwargs=True) for layer, m in _experts_modules(model)]
    prompt = synthetic_batch(batch, prompt_tokens, facts.vocab_size, seed=0, device=device)
    with torch.no_grad():
        out = model(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask, use_cache=True)
        mask = prompt.attention_mask
        emitted_distinct = []
        for _ in range(gen):
            token = out.logits[:, -1, :].argmax(-1, keepdim=True)
            emitted_distinct.append(int(torch.unique(token).numel()))
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            out = model(input_ids=token, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True)
    for h in handles:
        h.remove()
    per_layer = {layer: sum(v) / len(v) for layer, v in sorted(distinct.items())}
    all_steps = [n for v in distinct.values() for n in v]
    result = {
        "model": model_name, "overrides": overrides, "batch": batch, "prompt_tokens": prompt_tokens, "decode_steps": gen,
        "num_experts": facts.num_experts, "experts_per_token": facts.experts_per_token, "moe_layers": len(per_layer),
        "distinct_experts_per_layer_step_mean": sum(all_steps) / max(len(all_steps), 1),
        "distinct_experts_per_layer_step_min": min(all_steps, default=0),
        "distinct_experts_uniform_expectation": facts.expected_experts_touched(batch),
        "distinct_experts_by_layer": per_layer,
        "distinct_tokens_emitted_mean": sum(emitted_distinct) / max(len(emitted_distinct), 1),
        "steps_with_one_token_for_the_whole_batch": sum(1 for n in emitted_distinct if n == 1),
        "reinitialised": len(getattr(model, "wattlens_reinitialised", [])),
        "build_s": round(build_s, 1),
    }
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def report(paths: list[Path]) -> str:
    """One Markdown row per case of the saved runs."""
    header = ("| run | model | overrides | batch | prompt | MoE layers | experts (top-k) | distinct experts per "
              "layer-step, mean (min) | uniform routing | distinct tokens per step | router re-drawn |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        for c in json.loads(path.read_text())["cases"]:
            lines.append(f"| {path.name} | {c['model']} | {json.dumps(c['overrides'])} | {c['batch']} | "
                         f"{c['prompt_tokens']} | {c['moe_layers']} | {c['num_experts']} ({c['experts_per_token']}) | "
                         f"{c['distinct_experts_per_layer_step_mean']:.1f} ({c['distinct_experts_per_layer_step_min']}) | "
                         f"{c['distinct_experts_uniform_expectation']:.1f} | {c['distinct_tokens_emitted_mean']:.1f} | "
                         f"{c.get('reinitialised', 'not recorded')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+", help="model|overrides JSON|batch|prompt tokens (or, with --report, JSON files)")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--report", action="store_true", help="print the Markdown table of saved runs")
    args = ap.parse_args()
    if args.report:
        print(report([Path(p) for p in args.cases]))
        return
    if args.out is None:
        ap.error("--out is required to measure")
    results = []
    for case in args.cases:
        name, overrides, batch, prompt = case.split("|")
        r = route_case(name, json.loads(overrides), int(batch), int(prompt), args.gen, args.device)
        print(f"{name} {overrides} batch {batch}: {r['distinct_experts_per_layer_step_mean']:.1f} distinct experts per "
              f"layer-step (uniform routing: {r['distinct_experts_uniform_expectation']:.1f}), "
              f"{r['distinct_tokens_emitted_mean']:.1f} distinct tokens per step", flush=True)
        results.append(r)
        args.out.write_text(json.dumps({"weights": "random", "dtype": "bf16", "cases": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
