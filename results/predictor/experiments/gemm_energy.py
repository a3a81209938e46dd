"""Experiment (session 17, not shipped): the power a decode GEMM draws, by shape, on the GPU.

Session 17 found that a decode step's energy does not follow its time and bytes closely enough
(`step_ops_vs_gpu.md`, second table): nanochat and Llama-3.2-1B run about as many kernels per step
and their energy per kernel differs almost 2x. This asks whether the GEMMs, most of a step's time,
draw a power their time and bytes predict. For each Linear shape of a few catalog models, at 8 and
64 rows, the GEMM table's timing set-up (weight copies past 256 MB so every call reads HBM, one
Linear per copy captured in a CUDA graph) is replayed back to back for about 2 s; the NVML energy
counter is read at two of its ticks (it updates every 100 ms on these GPUs) with the GPU busy the
whole time, which gives the steady power; time per call from CUDA events as in the GEMM table.
Read-only NVML calls only. Then, here: how well energy per call = P x time + e x bytes fits.

    # on the GPU
    PYTHONPATH=src python3 results/predictor/experiments/gemm_energy.py measure --out $OUT/gemm_energy-h100.json
    # here
    PYTHONPATH=src python3 results/predictor/experiments/gemm_energy.py report results/predictor/experiments/gemm_energy-h100.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

MODELS = ("nanochat-0.26b", "ernie-4.5-0.3b", "qwen2.5-0.5b", "llama-3.2-1b", "opt-1.3b", "phi-2", "helium-1-preview",
          "llama-3.1-8b", "glm-4-9b", "yi-34b")
ROWS = (8, 64)
WINDOW_S = 2.0  # between the two counter ticks read
CHUNK_S = 0.01  # GPU time queued between two reads of the counter (three chunks in flight): an NVML read
# takes about a millisecond, and with less work queued the GPU would wait for it
CHUNKS_IN_FLIGHT = 3


def _shapes() -> dict[tuple[int, int, bool], list[str]]:
    from wattlens.models.catalog import resolve_model
    from wattlens.models.decode_gemms import decode_linear_shapes

    found: dict[tuple[int, int, bool], list[str]] = {}
    for name in MODELS:
        for s in decode_linear_shapes(resolve_model(name).config):
            found.setdefault((s.out_features, s.in_features, s.bias), []).append(name)
    return found


def _steady_power_w(gpu, graph, stream, replay_s: float) -> tuple[float, float, float]:
    """(watts, seconds, busy fraction) between two ticks of the energy counter, the GPU replaying `graph`
    throughout. Busy fraction: replays issued in the window x their time / the window (about 1 when the
    GPU never waited; it is off by the work in flight, a few percent)."""
    import torch

    per_chunk = max(1, math.ceil(CHUNK_S / replay_s))
    pending: list = []
    issued = 0

    def busy_until_tick(previous_mj: int) -> tuple[float, int]:
        nonlocal issued
        while True:
            with torch.cuda.stream(stream):
                for _ in range(per_chunk):
                    graph.replay()
                done = torch.cuda.Event()
                done.record(stream)
            issued += per_chunk
            pending.append(done)
            if len(pending) > CHUNKS_IN_FLIGHT:
                pending.pop(0).synchronize()
            mj = gpu.energy_mj()
            if mj != previous_mj:
                return time.perf_counter(), mj

    _, first = busy_until_tick(gpu.energy_mj())  # align to a tick
    t0, e0 = busy_until_tick(first)
    issued_at_t0 = issued
    t1, e1 = t0, e0
    while t1 - t0 < WINDOW_S:
        t1, e1 = busy_until_tick(e1)
    issued_in_window = issued - issued_at_t0
    torch.cuda.synchronize()
    return (e1 - e0) / 1e3 / (t1 - t0), t1 - t0, issued_in_window * replay_s / (t1 - t0)


def measure(out: Path) -> int:
    import torch
    import torch.nn.functional as F

    from wattlens.hw.environment import capture_environment
    from wattlens.hw.gemm_table import COPIES_BYTES, _us_per_call
    from wattlens.hw.nvml import open_gpus

    gpu = open_gpus([0])[0]
    readings = []
    for _ in range(10):  # the GPU at rest for 2 s before any work
        time.sleep(0.2)
        readings.append(gpu.power_w())
    idle_w = statistics.median(readings)
    shapes = _shapes()
    result = {"gpu": torch.cuda.get_device_name(), "idle_power_w": idle_w, "window_s": WINDOW_S, "rows": []}
    stream = torch.cuda.Stream()
    for (n, k, bias), models in sorted(shapes.items()):
        copies = max(1, min(64, math.ceil(COPIES_BYTES / (n * k * 2))))
        weights = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
        biases = [torch.randn(n, device="cuda", dtype=torch.bfloat16) if bias else None for _ in range(copies)]
        for m in ROWS:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            us = _us_per_call(F.linear, x, weights, biases)
            stream.wait_stream(torch.cuda.current_stream())
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                for w, b in zip(weights, biases):
                    F.linear(x, w, b)
            watts, seconds, busy = _steady_power_w(gpu, graph, stream, us * 1e-6 * len(weights))
            row = {"out_features": n, "in_features": k, "bias": bias, "rows": m, "models": models,
                   "us_per_call": us, "power_w": watts, "window_s": seconds, "busy_fraction": busy,
                   "j_per_call": watts * us * 1e-6,
                   "weight_bytes": n * k * 2, "sm_clock_mhz": gpu.sm_clock_mhz(), "temperature_c": gpu.temperature_c()}
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
            del graph
        del weights, biases
        torch.cuda.empty_cache()
        out.write_text(json.dumps(result, indent=1))
    result["environment"] = capture_environment()
    out.write_text(json.dumps(result, indent=1, default=str))
    return 0


def report(path: Path) -> int:
    import numpy as np
    from scipy.optimize import nnls

    d = json.loads(path.read_text())
    rows = d["rows"]
    idle = d["idle_power_w"]
    print(f"# Power of decode GEMMs by shape ({d['gpu']}; experiment, session 17)\n")
    print(f"Made by `results/predictor/experiments/gemm_energy.py` (its docstring says how). Idle power before "
          f"the run {idle:.0f} W. Each row: one Linear shape replayed back to back (weights from HBM), "
          f"steady power over >= {d['window_s']} s between two ticks of the NVML energy counter.\n")
    for m in sorted({r["rows"] for r in rows}):
        sub = [r for r in rows if r["rows"] == m]
        t = np.array([r["us_per_call"] * 1e-6 for r in sub])
        gb = np.array([r["weight_bytes"] / 1e9 for r in sub])
        y = np.array([r["j_per_call"] for r in sub])
        A = np.column_stack([t, gb])
        theta, _ = nnls(A / y[:, None], np.ones(len(y)))
        fit = A @ theta
        err = 100 * (fit / y - 1)
        print(f"## {m} rows: energy per call = {theta[0]:.0f} W x time + {theta[1]:.3f} J per GB of weights "
              f"(non-negative, relative error); mean absolute error {np.abs(err).mean():.1f}%, largest "
              f"{np.abs(err).max():.1f}% over {len(sub)} shapes\n")
        print("| out x in | bias | models | us per call | TB/s | power W | GPU busy | uJ per call | fit |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r, e in sorted(zip(sub, err), key=lambda p: p[0]["weight_bytes"]):
            tbs = r["weight_bytes"] / (r["us_per_call"] * 1e-6) / 1e12
            print(f"| {r['out_features']} x {r['in_features']} | {'yes' if r['bias'] else 'no'} | "
                  f"{', '.join(sorted(set(r['models'])))} | {r['us_per_call']:.2f} | {tbs:.2f} | {r['power_w']:.0f} | "
                  f"{r.get('busy_fraction', float('nan')):.2f} | "
                  f"{1e6 * r['j_per_call']:.0f} | {e:+.1f}% |")
        print()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report")
    r.add_argument("path", type=Path)
    a = ap.parse_args()
    return measure(a.out) if a.cmd == "measure" else report(a.path)


if __name__ == "__main__":
    sys.exit(main())
