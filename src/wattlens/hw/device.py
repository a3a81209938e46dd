"""The read-only GPU interface every meter talks to.

Two implementations exist: `hw.nvml.NvmlGPU` (a real NVIDIA GPU through NVML) and
`hw.fake.FakeGPU` (a scripted power profile on a fake clock, for tests). The meter never knows
which one it has, so everything it does is testable without a GPU.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

# NVML clock-event ("throttle") reason bits, named once here so the fake and the real GPU agree.
# Values from nvml.h (nvmlClocksEventReason*); stable since driver 4.304.
THROTTLE_REASON_BITS: dict[int, str] = {
    0x0001: "gpu_idle",
    0x0002: "applications_clocks_setting",
    0x0004: "sw_power_cap",
    0x0008: "hw_slowdown",
    0x0010: "sync_boost",
    0x0020: "sw_thermal",
    0x0040: "hw_thermal",
    0x0080: "hw_power_brake",
    0x0100: "display_clock_setting",
    0x0200: "board_limit",
    0x0400: "reliability",
}
# Reasons that say nothing about the measurement: the GPU is idle, or no reason at all.
BENIGN_THROTTLE_REASONS = frozenset({"gpu_idle", "none"})


def throttle_reason_names(mask: int) -> tuple[str, ...]:
    """Names of the active reasons in an NVML bit mask, benign ones left out, unknown bits kept as hex."""
    names = []
    for bit, name in THROTTLE_REASON_BITS.items():
        if mask & bit and name not in BENIGN_THROTTLE_REASONS:
            names.append(name)
    unknown = mask & ~sum(THROTTLE_REASON_BITS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return tuple(names)


@runtime_checkable
class GPUDevice(Protocol):
    """What the meter may read from one GPU. Read-only: nothing here changes the device."""

    index: int  # NVML (physical, PCI-order) index
    name: str  # as NVML reports it, e.g. 'NVIDIA H100 80GB HBM3'
    uuid: str

    def energy_mj(self) -> int:
        """Total energy counter since driver load (mJ); on H100 it moves every ~100 ms."""
        ...

    def power_w(self) -> float:
        """Current power reading (W); as coarse in time as the energy counter."""
        ...

    def sm_clock_mhz(self) -> int: ...

    def mem_clock_mhz(self) -> int: ...

    def temperature_c(self) -> float: ...

    def throttle_reasons(self) -> tuple[str, ...]:
        """Active clock-event reasons ('sw_power_cap', 'hw_thermal', ...), 'gpu_idle' left out."""
        ...

    def memory_used_bytes(self) -> int: ...

    def memory_total_bytes(self) -> int: ...

    def compute_pids(self) -> tuple[int, ...]:
        """PIDs of processes running compute work on the GPU (empty when not supported)."""
        ...

    def power_limit_w(self) -> float: ...

    def info(self) -> dict[str, Any]:
        """Static facts for the environment record: driver, CUDA driver, persistence, limits, max clocks."""
        ...
