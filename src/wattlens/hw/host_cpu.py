"""What the host CPU did during a window: busy and stolen time from /proc/stat, this process's CPU time.

`eager` and `static` decode are host-bound (on the H100, the GPU works 8.4 ms of a 29-36 ms eager
step): their speed, and so their energy, follows the host. On a virtual machine the hypervisor can
take CPU time away (steal) and other processes can compete; both slow a host-bound trial without
any sign on the GPU. These figures are recorded with every trial so a slow host shows in the data.

/proc/stat's first line is `cpu user nice system idle iowait irq softirq steal guest guest_nice`
in clock ticks summed over all CPUs (guest time is already inside user/nice).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

STEAL_FLAG_PCT = 2.0
"""Steal above this share of all CPU time in a window raises the `host_cpu_steal` flag."""


@dataclass(frozen=True)
class CpuTicks:
    busy: int  # user + nice + system + irq + softirq
    idle: int  # idle + iowait
    steal: int

    @property
    def total(self) -> int:
        return self.busy + self.idle + self.steal


def parse_proc_stat(text: str) -> CpuTicks:
    """The aggregate `cpu` line of /proc/stat; ValueError if there is none."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            v = [int(x) for x in parts[1:]] + [0] * 10
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            return CpuTicks(busy=user + nice + system + irq + softirq, idle=idle + iowait, steal=steal)
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


@dataclass
class HostCpu:
    """Host CPU use over one window, or why it was not measured."""

    busy_pct: float | None = None  # share of all CPUs' time spent working (any process)
    steal_pct: float | None = None  # share taken by the hypervisor
    own_cpu_s: float | None = None  # this process's user + system CPU seconds
    duration_s: float = 0.0
    cpu_count: int | None = None
    loadavg_1m_start: float | None = None
    not_measured_reason: str | None = None
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"host_cpu_busy_pct": self.busy_pct, "host_cpu_steal_pct": self.steal_pct,
                "host_process_cpu_s": self.own_cpu_s, "host_cpu_window_s": self.duration_s,
                "host_cpu_count": self.cpu_count, "host_loadavg_1m_start": self.loadavg_1m_start,
                "host_cpu_not_measured_reason": self.not_measured_reason, "host_cpu_flags": list(self.flags)}


class HostCpuMeter:
    """Brackets a window: `start()`, then `stop()` -> HostCpu."""

    def __init__(self, proc_root: Path | str = "/proc", clock_ns: Callable[[], int] = time.perf_counter_ns,
                 process_cpu_s: Callable[[], float] | None = None) -> None:
        self.proc_root = Path(proc_root)
        self.clock_ns = clock_ns
        self.process_cpu_s = process_cpu_s or (lambda: sum(os.times()[:2]))
        self._start: tuple[int, CpuTicks | None, float, float | None] | None = None
        self._reason: str | None = None

    def _ticks(self) -> CpuTicks | None:
        try:
            return parse_proc_stat((self.proc_root / "stat").read_text())
        except (OSError, ValueError) as e:
            self._reason = f"cannot read {self.proc_root / 'stat'}: {e}"
            return None

    def _loadavg(self) -> float | None:
        try:
            return float((self.proc_root / "loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        self._start = (self.clock_ns(), self._ticks(), self.process_cpu_s(), self._loadavg())

    def stop(self) -> HostCpu:
        t1, ticks1, own1 = self.clock_ns(), self._ticks(), self.process_cpu_s()
        if self._start is None:
            return HostCpu(not_measured_reason="HostCpuMeter.stop() without start()")
        t0, ticks0, own0, load = self._start
        out = HostCpu(own_cpu_s=own1 - own0, duration_s=(t1 - t0) / 1e9, cpu_count=os.cpu_count(),
                      loadavg_1m_start=load)
        if ticks0 is None or ticks1 is None:
            out.not_measured_reason = self._reason or "no /proc/stat"
            return out
        total = ticks1.total - ticks0.total
        if total <= 0:
            out.not_measured_reason = "window shorter than one /proc/stat tick"
            return out
        out.busy_pct = 100.0 * (ticks1.busy - ticks0.busy) / total
        out.steal_pct = 100.0 * (ticks1.steal - ticks0.steal) / total
        if out.steal_pct >= STEAL_FLAG_PCT:
            out.flags.append(f"host_cpu_steal:{out.steal_pct:.0f}%")
        return out
