"""Cross-check: the same GPU windows measured at once by wattlens and by Zeus (ZeusMonitor).

Eleven windows from 0.5 s to 30 s of a busy GPU (a bf16 matmul loop), after a warm-up; the
nesting order alternates. Writes a markdown table and JSON with the relative difference per
window; target: within 1% for windows of 1 s and longer.

    PYTHONPATH=src python benchmarks/zeus_crosscheck.py --out results/h100/energy
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_TARGETS_S = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gpu", type=int, default=0, help="CUDA device index")
    ap.add_argument("--targets", type=float, nargs="*", default=list(DEFAULT_TARGETS_S))
    ap.add_argument("--size", type=int, default=8192, help="matmul side")
    ap.add_argument("--gap-s", type=float, default=0.5, help="idle time between windows")
    args = ap.parse_args()

    import torch

    from wattlens.hw.nvml import open_gpus
    from wattlens.meter.energy import EnergyMeter
    from wattlens.meter.zeus_check import ZeusCrossCheck, crosscheck_markdown

    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to cross-check", file=sys.stderr)
        return 2
    torch.cuda.set_device(args.gpu)
    dev = torch.device("cuda", args.gpu)
    gpus = open_gpus()
    # NVML numbers GPUs in PCI order; with CUDA_DEVICE_ORDER=PCI_BUS_ID (set by run.sh) and no
    # CUDA_VISIBLE_DEVICES remapping, CUDA index == NVML index. One-GPU machines: the only GPU.
    nvml_gpu = gpus[0] if len(gpus) == 1 else gpus[args.gpu]
    meter = EnergyMeter([nvml_gpu], sync=lambda: torch.cuda.synchronize(dev))
    period = meter.detect_update_period()
    check = ZeusCrossCheck(meter, gpu_indices=[args.gpu])

    a = torch.randn(args.size, args.size, device=dev, dtype=torch.bfloat16)
    b = torch.randn(args.size, args.size, device=dev, dtype=torch.bfloat16)

    def busy(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(4):
                a.matmul(b)
            torch.cuda.synchronize(dev)  # keep the queue short so the window ends on time

    busy(5.0)  # warm-up: clocks and power settle
    for k, t in enumerate(args.targets):
        time.sleep(args.gap_s)
        with check.window(f"w{k:02d}-{t:g}s", target_s=t):
            busy(t)
        r = check.rows[-1]
        print(f"{r.name}: wattlens {r.wattlens_energy_j} J, zeus {r.zeus_energy_j:.3f} J, "
              f"diff {r.rel_diff_pct}% (outer: {r.outer})", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    md = crosscheck_markdown(check.rows)
    import importlib.metadata as md_meta

    header = (f"# wattlens vs Zeus: the same windows measured at once\n\nGPU: {nvml_gpu.name}; counter update "
              f"period {period:.4f} s; zeus {md_meta.version('zeus')}; load: bf16 {args.size}^2 matmul loop. "
              "'± J (worst)' is wattlens' stated quantisation bound for the window. Both tools read NVML's "
              "total-energy counter, so this checks boundaries, sync and units, not the sensor.\n\n")
    (args.out / "zeus_crosscheck.md").write_text(header + md)
    (args.out / "zeus_crosscheck.json").write_text(json.dumps(
        {"gpu": nvml_gpu.name, "update_period_s": period, "rows": [r.to_dict() for r in check.rows]}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
