"""Probe: setup cost and decode speed of the lean-loop modes that avoid long compiles.

Two questions decide the next GPU runs (results/README.md):
  1. `graphed` (the model's own kernels captured in a CUDA graph, no torch.compile): does capture
     work for dense and MoE models, how long does a new (batch, cache) shape take to set up, and
     how close to the HBM roofline does decode run at batch 1, 8 and 64? (the predictor campaign)
  2. `compiled` with compile scope `layers` (regional compilation): how long does the first
     generation (compile + capture) take against the whole-step compile, and at what decode speed?
     (the GPT-OSS study's 20-minute target)
Random bf16 weights. Writes one JSON after every measurement, so a cut-off run keeps what it did.

    PYTHONPATH=src python benchmarks/lean_modes_probe.py --out $OUT [--models llama-3.1-8b,...]
    # regional vs whole-step compile only:
    PYTHONPATH=src python benchmarks/lean_modes_probe.py --out $OUT --models llama-3.1-8b --batches "" \
        --scopes layers,model
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def probe(model, facts, spec, mode: str, scope: str | None, batch: int, ctx: int, gen: int) -> dict:
    """First generation (setup: compile/capture) timed, then 3 timed generations."""
    import torch

    from wattlens.backends.hf import HFBackend
    from wattlens.workloads.inputs import synthetic_batch

    prompt = synthetic_batch(batch, ctx, model.config.vocab_size, seed=0, device="cuda")
    backend = HFBackend(model, mode, compile_scope=scope)
    t0 = time.perf_counter()
    backend.prepare(batch, ctx, gen)
    backend.generate(prompt.input_ids, prompt.attention_mask, gen)
    backend.generate(prompt.input_ids, prompt.attention_mask, gen)  # compiled: the prefill compiles here
    setup_s = time.perf_counter() - t0
    tpots = []
    for _ in range(3):
        out = backend.generate(prompt.input_ids, prompt.attention_mask, gen)
        ts = out.token_times_s()
        tpots.append((out.e2e_s - ts[0]) / (gen - 1))
    tpot = statistics.median(tpots)
    step_bytes = facts.decode_bytes_per_step(ctx + gen // 2, batch, 2)
    roofline_tpot = step_bytes / spec.memory_bandwidth_bytes_per_s if spec else None
    row = {"mode": mode, "compile_scope": scope, "batch": batch, "ctx": ctx, "gen": gen,
           "setup_s_two_generations": round(setup_s, 2), "tpot_ms": round(tpot * 1e3, 3),
           "decode_tok_per_s_per_row": round(1 / tpot, 1),
           "roofline_pct": round(100 * roofline_tpot / tpot, 1) if roofline_tpot else None,
           "backend": backend.describe()}
    backend.release()
    del backend
    torch.cuda.synchronize()
    return row


def main() -> int:
    import torch

    from wattlens.hw.specs import gpu_spec_by_name
    from wattlens.models.arithmetic import model_facts
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--models", default="llama-3.1-8b,qwen3-30b-a3b:num_hidden_layers=12")
    p.add_argument("--ctx", type=int, default=1000)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--regional", default="llama-3.1-8b", help="models also run compiled (batch 1)")
    p.add_argument("--scopes", default="layers", help="compile scopes for those models, e.g. layers,model")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = gpu_spec_by_name(torch.cuda.get_device_name(0))
    rows: list[dict] = []

    def save() -> None:
        (args.out / "lean_modes_probe.json").write_text(json.dumps(
            {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "weights": "random",
             "rows": rows}, indent=1, default=str))

    for item in args.models.split(","):
        name, _, edit = item.partition(":")
        overrides = tuple((k, int(v)) for k, v in (e.split("=") for e in edit.split(";") if e))
        source = resolve_model(name, overrides)
        t0 = time.perf_counter()
        model = build_model(source, "bf16", "cuda")
        facts = model_facts(model.config.to_dict())
        print(f"{item}: built in {time.perf_counter() - t0:.1f} s", flush=True)
        runs = [("graphed", None, int(b)) for b in args.batches.split(",") if b]  # --batches "" skips graphed
        if name in args.regional.split(","):
            runs += [("compiled", scope, 1) for scope in args.scopes.split(",") if scope]
        for mode, scope, batch in runs:
            try:
                row = probe(model, facts, spec, mode, scope, batch, args.ctx, args.gen)
            except Exception as exc:  # noqa: BLE001 - a failed capture is a finding, keep going
                row = {"mode": mode, "compile_scope": scope, "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            row["model"] = item
            rows.append(row)
            save()
            print({k: v for k, v in row.items() if k != "backend"}, flush=True)
        del model
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
