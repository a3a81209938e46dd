"""Datasheet figures of GPUs (data/gpus.csv, sources in data/PROVENANCE.md) and NVML-name matching.

Used for rooflines (HBM bandwidth, dense FLOP/s) and to predict on GPUs we have not measured.
Tensor figures are dense (no 2:4 sparsity). A name we cannot match with confidence gives None:
a wrong row (H100 NVL read as H100 SXM) would silently skew every roofline.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from wattlens.core.errors import BadInput


@dataclass(frozen=True)
class GPUSpec:
    """One row of gpus.csv in SI units. None where the datasheet gives no figure."""

    name: str
    memory_gb: float
    memory_bandwidth_bytes_per_s: float
    fp16_bf16_dense_flops_per_s: float | None
    fp32_flops_per_s: float
    tdp_w: float
    sm_count: int
    max_sm_clock_mhz: int
    architecture: str
    fp8_dense_flops_per_s: float | None = None
    int8_dense_ops_per_s: float | None = None
    cuda_cores: int | None = None

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9


def _f(v: str, scale: float = 1.0) -> float | None:
    v = v.strip()
    return float(v) * scale if v else None


@lru_cache(maxsize=1)
def load_gpu_specs() -> tuple[GPUSpec, ...]:
    """All rows of the shipped table, in file order."""
    text = resources.files("wattlens.hw").joinpath("data/gpus.csv").read_text(encoding="utf-8")
    rows = []
    for r in csv.DictReader(text.splitlines()):
        rows.append(
            GPUSpec(
                name=r["name"],
                memory_gb=float(r["memory_gb"]),
                memory_bandwidth_bytes_per_s=float(r["memory_bandwidth_gbs"]) * 1e9,
                fp16_bf16_dense_flops_per_s=_f(r["fp16_bf16_dense_tflops"], 1e12),
                fp32_flops_per_s=float(r["fp32_tflops"]) * 1e12,
                tdp_w=float(r["tdp_w"]),
                sm_count=int(r["sm_count"]),
                max_sm_clock_mhz=int(r["max_sm_clock_mhz"]),
                architecture=r["architecture"],
                fp8_dense_flops_per_s=_f(r["fp8_dense_tflops"], 1e12),
                int8_dense_ops_per_s=_f(r["int8_dense_tops"], 1e12),
                cuda_cores=int(r["cuda_cores"]) if r["cuda_cores"].strip() else None,
            )
        )
    return tuple(rows)


def _row(name: str) -> GPUSpec:
    for s in load_gpu_specs():
        if s.name == name:
            return s
    raise KeyError(name)  # a bug in the tables below, not user input


# NVML names -> table rows. Patterns match the whole name after lower-casing and dropping a
# leading 'nvidia '/'tesla '. Variants with different memory, power or bandwidth (H100 NVL,
# H200 NVL, A100 PCIe, L40, RTX 4090 D, RTX PRO 6000 Server/Max-Q) deliberately match nothing.
_NVML_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"h100 80gb hbm3|h100 sxm5? ?80gb( hbm3)?|h100-sxm5?-80gb", "NVIDIA H100 SXM 80GB"),
    (r"h100 pcie( 80gb)?|h100-pcie(-80gb)?", "NVIDIA H100 PCIe 80GB"),
    (r"h200( 141gb)?( hbm3e)?|h200 sxm( 141gb)?", "NVIDIA H200 SXM 141GB"),
    (r"a100-sxm4-40gb|a100 sxm4 40gb", "NVIDIA A100 40GB SXM"),
    (r"a100-sxm4-80gb|a100 sxm4 80gb", "NVIDIA A100 80GB SXM"),
    (r"t4", "NVIDIA T4"),
    (r"v100-sxm2-16gb", "NVIDIA V100 SXM2 16GB"),
    (r"v100-sxm2-32gb", "NVIDIA V100 SXM2 32GB"),
    (r"a10g", "NVIDIA A10G"),
    (r"l4", "NVIDIA L4"),
    (r"l40s", "NVIDIA L40S"),
    (r"b200", "NVIDIA B200 (HGX 1000W)"),
    (r"rtx pro 6000 blackwell workstation edition", "NVIDIA RTX PRO 6000 Blackwell Workstation"),
    (r"geforce rtx 4090", "NVIDIA GeForce RTX 4090"),
)


def _norm_nvml(name: str) -> str:
    n = " ".join(name.strip().lower().split())
    for prefix in ("nvidia ", "tesla "):
        if n.startswith(prefix):
            n = n[len(prefix):]
    return n


def match_gpu_spec(nvml_name: str) -> GPUSpec | None:
    """The row for a name as NVML reports it ('NVIDIA H100 80GB HBM3'), or None when unsure."""
    n = _norm_nvml(nvml_name)
    for pattern, row in _NVML_PATTERNS:
        if re.fullmatch(pattern, n):
            return _row(row)
    return None


# Short names users type. 'A100' alone means the 80 GB SXM part (the common LLM-serving one).
_SHORT: dict[str, str] = {
    "h100": "NVIDIA H100 SXM 80GB",
    "h100sxm": "NVIDIA H100 SXM 80GB",
    "h100sxm80gb": "NVIDIA H100 SXM 80GB",
    "h10080gb": "NVIDIA H100 SXM 80GB",
    "h100pcie": "NVIDIA H100 PCIe 80GB",
    "h100pcie80gb": "NVIDIA H100 PCIe 80GB",
    "h200": "NVIDIA H200 SXM 141GB",
    "h200sxm": "NVIDIA H200 SXM 141GB",
    "a100": "NVIDIA A100 80GB SXM",
    "a10080gb": "NVIDIA A100 80GB SXM",
    "a100sxm80gb": "NVIDIA A100 80GB SXM",
    "a10040gb": "NVIDIA A100 40GB SXM",
    "a100sxm40gb": "NVIDIA A100 40GB SXM",
    "t4": "NVIDIA T4",
    "v100": "NVIDIA V100 SXM2 32GB",
    "v10016gb": "NVIDIA V100 SXM2 16GB",
    "v10032gb": "NVIDIA V100 SXM2 32GB",
    "a10g": "NVIDIA A10G",
    "l4": "NVIDIA L4",
    "l40s": "NVIDIA L40S",
    "b200": "NVIDIA B200 (HGX 1000W)",
    "rtxpro6000": "NVIDIA RTX PRO 6000 Blackwell Workstation",
    "rtx4090": "NVIDIA GeForce RTX 4090",
    "4090": "NVIDIA GeForce RTX 4090",
}


def _squash(s: str) -> str:
    s = s.lower()
    for prefix in ("nvidia", "tesla", "geforce"):
        s = s.replace(prefix, "")
    return re.sub(r"[^a-z0-9]", "", s)


def gpu_spec_by_name(short: str) -> GPUSpec:
    """The row for a name a user types ('H100', 'h200', 'A100-80GB', a full row name or an NVML name).

    Raises BadInput naming the choices when nothing matches.
    """
    key = _squash(short)
    if key in _SHORT:
        return _row(_SHORT[key])
    for s in load_gpu_specs():
        if _squash(s.name) == key:
            return s
    hit = match_gpu_spec(short)
    if hit is not None:
        return hit
    choices = ", ".join(sorted({k.upper() for k in ("H100", "H100-PCIe", "H200", "A100-80GB", "A100-40GB",
                                                    "V100-16GB", "V100-32GB", "T4", "A10G", "L4", "L40S",
                                                    "B200", "RTX4090", "RTXPRO6000")}))
    raise BadInput(f"unknown GPU {short!r}; known: {choices}")
