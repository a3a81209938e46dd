"""A per-GPU table of the GEMMs decode steps run: kernels launched and time per call, measured.

A decode step multiplies a few rows (the batch) by each weight matrix. For such skinny GEMMs cuBLAS
often splits the K dimension across thread blocks and launches a second kernel to add the parts;
whether it does depends on (rows, N, K) and the GPU, in ways no formula states. A count of
operators on the CPU (`wattlens.models.decode_ops`) has one per Linear and misses these reduce
kernels, and a roofline charges a small GEMM its bytes at full bandwidth, while a 1024 x 3072 GEMM
reaches a fifth of the H100's (results/predictor/experiments/gemm_table.md).

Tables measured so far: results/h100/gemm/ and results/h200/gemm/, at the Linear shapes of the
catalog's and the dataset's models (`wattlens.models.decode_gemms`) and rows 1..128; a copy of both
ships in `data/gemm_decode.csv` (`shipped_table`), which the predictor's features read: the time
model charges each Linear its measured time, and both models count the extra kernels. Shapes and
GPUs the table lacks take a law fitted to it (`law_for`). Measure more with

    python -m wattlens.hw.gemm_table --shapes shapes.json --out gemm.csv       # on the GPU

Timing: each shape's weight is copied until the copies pass 256 MB (at most 64 copies), one Linear
per copy is captured in a CUDA graph, and the replay is timed with CUDA events, so every call reads
its weights from HBM, as a decode step does; only weights under 0.8 MB can stay in a 50 MB L2,
and their HBM time (under 0.25 us on an H100) is a tenth of what any call takes. Kernels: one call under torch.profiler, counting
the GPU kernels it launches.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

COLUMNS = ("gpu_name", "rows", "out_features", "in_features", "bias", "kernels", "us_per_call", "torch_version",
           "cuda_version")
ROWS = (1, 2, 4, 8, 16, 32, 64, 128)
SHIPPED_TABLE = "data/gemm_decode.csv"
COPIES_BYTES = 256e6  # weight copies per shape, at most 64: enough to flush a 50 MB L2 several times
GRAPH_REPLAYS = 5


@dataclass(frozen=True)
class GemmRow:
    gpu_name: str
    rows: int
    out_features: int
    in_features: int
    bias: bool
    kernels: int
    us_per_call: float


def _kernels_in_one_call(linear, x, w, b) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        linear(x, w, b)
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if "cuda" in str(getattr(e, "device_type", "")).lower()
               and not e.name.lower().startswith(("memcpy", "memset")))


def _us_per_call(linear, x, weights, biases) -> float:
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside capture (cuBLAS workspace, heuristics)
        for w, b in zip(weights, biases):
            linear(x, w, b)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for w, b in zip(weights, biases):
            linear(x, w, b)
    graph.replay()
    times = []
    for _ in range(GRAPH_REPLAYS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(weights))
    del graph
    return statistics.median(times)


def measure(shapes: Iterable[tuple[int, int, bool]], rows: Sequence[int] = ROWS,
            progress: bool = True) -> Iterator[GemmRow]:
    """Measure every (out, in, bias) shape at every row count on the current CUDA GPU (bf16), yielding
    each row as it is measured (so a cut run keeps what it measured)."""
    import torch
    import torch.nn.functional as F

    from wattlens.hw.specs import match_gpu_spec

    if not torch.cuda.is_available():
        raise SystemExit("gemm_table needs a CUDA GPU")
    device_name = torch.cuda.get_device_name()
    spec = match_gpu_spec(device_name)
    gpu_name = spec.name if spec else device_name
    shapes = sorted(set((int(n), int(k), bool(b)) for n, k, b in shapes))
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress()
        bar.start()
        task = bar.add_task(f"GEMMs on {gpu_name}", total=len(shapes) * len(rows))
    try:
        for n, k, has_bias in shapes:
            copies = max(1, min(64, math.ceil(COPIES_BYTES / (n * k * 2))))
            weights = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
            biases = [torch.randn(n, device="cuda", dtype=torch.bfloat16) if has_bias else None
                      for _ in range(copies)]
            for m in rows:
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                kernels = _kernels_in_one_call(F.linear, x, weights[0], biases[0])
                us = _us_per_call(F.linear, x, weights, biases)
                yield GemmRow(gpu_name, m, n, k, has_bias, kernels, us)
                if bar:
                    bar.advance(task)
            del weights, biases
            torch.cuda.empty_cache()
    finally:
        if bar:
            bar.stop()


def write_csv(rows: Iterable[GemmRow], path: str | Path) -> int:
    """Write rows as they come (flushed each), so a run cut short keeps its rows; returns how many."""
    import torch

    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r.gpu_name, r.rows, r.out_features, r.in_features, int(r.bias), r.kernels,
                        f"{r.us_per_call:.3f}", torch.__version__, torch.version.cuda])
            f.flush()
            n += 1
    return n


Table = Mapping[tuple[str, int, int, int, bool], GemmRow]


def _parse(text: str, table: dict) -> None:
    for r in csv.DictReader(text.splitlines()):
        row = GemmRow(r["gpu_name"], int(r["rows"]), int(r["out_features"]), int(r["in_features"]),
                      r["bias"] == "1", int(r["kernels"]), float(r["us_per_call"]))
        table[(row.gpu_name, row.rows, row.out_features, row.in_features, row.bias)] = row


def load_table(paths: Iterable[str | Path]) -> dict[tuple[str, int, int, int, bool], GemmRow]:
    """Measured tables (CSV files `write_csv` wrote), keyed by (GPU spec name, rows, out, in, bias)."""
    table: dict = {}
    for path in paths:
        _parse(Path(path).read_text(encoding="utf-8"), table)
    return table


@lru_cache(maxsize=1)
def shipped_table() -> Table:
    """The table that ships with wattlens (`data/gemm_decode.csv`: the H100 and H200 tables of results/)."""
    table: dict = {}
    _parse(resources.files("wattlens.hw").joinpath(SHIPPED_TABLE).read_text(encoding="utf-8"), table)
    return table


def nearest_rows(batch: int, measured: Sequence[int] = ROWS) -> int:
    """The measured row count nearest to `batch` in log scale (ties: the larger)."""
    return min(measured, key=lambda r: (abs(math.log(r / batch)), -r))


@dataclass(frozen=True)
class GemmLaw:
    """A GPU's GEMMs at one row count, summarised: microseconds per call = floor + per byte x weight
    bytes (fitted on relative error), and the share of calls that launch a reduce kernel. Stands in
    for shapes or GPUs the table lacks."""

    floor_us: float
    us_per_byte: float
    split_fraction: float

    def us(self, weight_bytes: float) -> float:
        return self.floor_us + self.us_per_byte * weight_bytes


def fit_law(rows: Sequence[GemmRow]) -> GemmLaw:
    import numpy as np

    weight_bytes = np.array([r.out_features * r.in_features * 2.0 for r in rows])
    us = np.array([r.us_per_call for r in rows])
    A = np.column_stack([np.ones_like(us), weight_bytes]) / us[:, None]
    floor_us, us_per_byte = np.maximum(np.linalg.lstsq(A, np.ones_like(us), rcond=None)[0], 0.0)
    return GemmLaw(float(floor_us), float(us_per_byte), sum(r.kernels > 1 for r in rows) / len(rows))


# With no table at all: a 2.5 us floor, 70% of HBM bandwidth, no split (round guesses, said so).
GUESSED_FLOOR_US, GUESSED_BANDWIDTH_SHARE = 2.5, 0.7


def law_for(table: Table, gpu_name: str, bandwidth_bytes_per_s: float, rows: int) -> tuple[GemmLaw, str]:
    """This GPU's law at `rows` when the table has the GPU; else the measured GPUs' laws averaged, the
    per-byte time scaled to this GPU's HBM bandwidth; else round guesses. Returns (law, how)."""
    by_gpu: dict[str, list[GemmRow]] = {}
    for (gpu, r, *_), row in table.items():
        if r == rows:
            by_gpu.setdefault(gpu, []).append(row)
    if gpu_name in by_gpu:
        return fit_law(by_gpu[gpu_name]), f"fitted to {gpu_name}'s table"
    if not by_gpu:
        return (GemmLaw(GUESSED_FLOOR_US, 1e6 / (GUESSED_BANDWIDTH_SHARE * bandwidth_bytes_per_s), 0.0),
                "guessed (no GEMM table)")
    from wattlens.hw.specs import gpu_spec_by_name

    laws = {gpu: fit_law(rows_) for gpu, rows_ in by_gpu.items()}
    per_byte_x_bw = [law.us_per_byte * gpu_spec_by_name(gpu).memory_bandwidth_bytes_per_s for gpu, law in laws.items()]
    law = GemmLaw(statistics.mean(law.floor_us for law in laws.values()),
                  statistics.mean(per_byte_x_bw) / bandwidth_bytes_per_s,
                  statistics.mean(law.split_fraction for law in laws.values()))
    return law, f"scaled by HBM bandwidth from {', '.join(sorted(laws))}"


@dataclass(frozen=True)
class DecodeGemms:
    """One decode step's Linears on one GPU at one batch, and where the figures come from."""

    linears: int  # Linear calls per step
    extra_kernels: float  # kernels beyond one per Linear (cuBLAS split-K reduces); fractional when estimated
    seconds: float  # GEMM time per step (back-to-back calls, weights read from HBM)
    source: str  # "measured" | how the law stood in, and for how many Linears


def decode_gemms(shapes: Sequence[Any], gpu_name: str, bandwidth_bytes_per_s: float, batch: int,
                 dtype_bytes: int = 2, table: Table | None = None) -> DecodeGemms:
    """Sum the step's Linears over the table at rows = batch (nearest measured row count). `shapes`:
    what `wattlens.models.decode_gemms.decode_linear_shapes` returns (out_features, in_features,
    bias, count). Shapes the table lacks for this GPU, and every shape when the dtype is not 16-bit
    (the table is bf16), take `law_for`'s estimate; `source` says for how many."""
    table = shipped_table() if table is None else table
    rows = nearest_rows(batch)
    law = how = None
    linears = estimated = 0
    extra = seconds = 0.0
    for s in shapes:
        row = table.get((gpu_name, rows, s.out_features, s.in_features, s.bias)) if dtype_bytes == 2 else None
        if row is None:
            if law is None:
                law, how = law_for(table, gpu_name, bandwidth_bytes_per_s, rows)
            estimated += s.count
            extra += s.count * law.split_fraction
            seconds += s.count * law.us(s.out_features * s.in_features * dtype_bytes) * 1e-6
        else:
            extra += s.count * (row.kernels - 1)
            seconds += s.count * row.us_per_call * 1e-6
        linears += s.count
    if not estimated:
        return DecodeGemms(linears, extra, seconds, "measured")
    return DecodeGemms(linears, extra, seconds, f"estimated for {estimated} of {linears} Linears ({how})")


def decode_gemms_without_shapes(linears: int, weight_bytes: float, gpu_name: str, bandwidth_bytes_per_s: float,
                                batch: int, why: str, table: Table | None = None) -> DecodeGemms:
    """When the Linears' shapes cannot be read (no torch): `linears` calls moving `weight_bytes` in all,
    costed by `law_for`."""
    table = shipped_table() if table is None else table
    law, how = law_for(table, gpu_name, bandwidth_bytes_per_s, nearest_rows(batch))
    seconds = (linears * law.floor_us + weight_bytes * law.us_per_byte) * 1e-6
    return DecodeGemms(linears, linears * law.split_fraction, seconds,
                       f"estimated without shapes ({why}; {how})")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", required=True, help="JSON list of [out_features, in_features, bias]")
    p.add_argument("--rows", default=",".join(map(str, ROWS)), help="row counts (batch sizes), comma-separated")
    p.add_argument("--out", required=True, help="CSV to write")
    a = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():  # before the CSV is opened, so no empty file is left behind
        raise SystemExit("gemm_table needs a CUDA GPU")
    shapes = [tuple(s) for s in json.loads(Path(a.shapes).read_text())]
    n = write_csv(measure(shapes, [int(r) for r in a.rows.split(",")]), a.out)
    print(f"wrote {n} rows to {a.out}")


if __name__ == "__main__":
    main()
