"""First look at a GPU machine: NVML counter period, model build time, decode speed per mode.

Run on the device: PYTHONPATH=src python benchmarks/probe_gpu.py --out $OUT
Prints a short table last; writes probe.json under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def counter_period_s(handle, pynvml, n_ticks: int = 6) -> list[float]:
    last = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    ticks = []
    t_end = time.perf_counter() + 2.0
    while len(ticks) < n_ticks and time.perf_counter() < t_end:
        v = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if v != last:
            ticks.append(time.perf_counter())
            last = v
    return [b - a for a, b in zip(ticks, ticks[1:])]


def build(cfg_path: str, device="cuda", dtype=torch.bfloat16, overrides=None):
    from transformers import AutoConfig, AutoModelForCausalLM

    d = json.loads(Path(cfg_path).read_text())
    d.pop("quantization_config", None)
    d.update(overrides or {})
    cfg = AutoConfig.for_model(**d)
    t = time.perf_counter()
    with torch.device(device):
        try:
            m = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
        except ValueError:
            m = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="eager")
    m.eval().requires_grad_(False)
    torch.cuda.synchronize()
    return m, time.perf_counter() - t


def main():
    from wattlens.backends.hf import HFBackend
    from wattlens.core.spec import SamplingSpec

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--models", default="meta-llama__Llama-3.1-8B")
    ap.add_argument("--modes", default="eager,static,compiled")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    out: dict = {"torch": torch.__version__}
    import transformers
    import pynvml

    out["transformers"] = transformers.__version__
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    out["gpu"] = pynvml.nvmlDeviceGetName(h)
    gaps = counter_period_s(h, pynvml)
    out["counter_gaps_s"] = gaps
    print("counter gaps", [round(g, 4) for g in gaps], flush=True)
    rows = []
    for name in args.models.split(","):
        model, build_s = build(f"src/wattlens/models/configs/{name}.json")
        print(f"{name}: built in {build_s:.1f}s, alloc {torch.cuda.memory_allocated()/1e9:.1f} GB", flush=True)
        ids = torch.randint(100, 1000, (1, args.ctx), device="cuda")
        mask = torch.ones_like(ids)
        for mode in args.modes.split(","):
            try:
                b = HFBackend(model, mode, SamplingSpec())
                t = time.perf_counter()
                b.prepare(1, args.ctx, args.gen)
                b.generate(ids, mask, args.gen)
                warm_s = time.perf_counter() - t
                tp, ttft = [], []
                for _ in range(args.reps):
                    o = b.generate(ids, mask, args.gen)
                    ts = o.token_times_s()
                    ttft.append(ts[0])
                    tp.append((o.e2e_s - ts[0]) / (args.gen - 1))
                r = dict(model=name, mode=mode, build_s=build_s, warm_s=warm_s, ttft_ms=1e3 * statistics.median(ttft),
                         tpot_ms=1e3 * statistics.median(tp), tok_s=1 / statistics.median(tp))
                if mode == "compiled":
                    bare = [b._lean.bare_decode_loop_s(ids, args.gen) for _ in range(args.reps)]
                    harness = [b.generate(ids, mask, args.gen).e2e_s for _ in range(args.reps)]
                    r["bare_e2e_s"] = statistics.median(bare)
                    r["harness_e2e_s"] = statistics.median(harness)
                    r["overhead_pct"] = 100 * (r["harness_e2e_s"] / r["bare_e2e_s"] - 1)
                    if args.profile:
                        from torch.profiler import ProfilerActivity, profile

                        with profile(activities=[ProfilerActivity.CUDA]) as prof:
                            b._lean._graph.replay() if b._lean._graph else b._lean.step()
                            torch.cuda.synchronize()
                        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
                        (Path(args.out) / f"profile_{name}.txt").write_text(table)
                        print(table[-6000:])
                rows.append(r)
                print(json.dumps(r), flush=True)
                b.release()
                del b
            except Exception as e:  # keep probing other modes
                import traceback

                traceback.print_exc()
                rows.append(dict(model=name, mode=mode, error=repr(e)[:500]))
            torch.cuda.empty_cache()
        del model
        torch.cuda.empty_cache()
    out["rows"] = rows
    Path(args.out, "probe.json").write_text(json.dumps(out, indent=1))
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
