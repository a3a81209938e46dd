"""CPU package and DRAM energy from Linux RAPL through the powercap sysfs tree.

Each RAPL zone (`/sys/class/powercap/intel-rapl:N`, sub-zones `intel-rapl:N:M`) has a `name`
('package-0', 'dram', 'core', 'uncore', 'psys'), an `energy_uj` counter (microjoules) that wraps
at `max_energy_range_uj`. Reading `energy_uj` usually needs root on kernels >= 5.10; when nothing
is readable the reader says why ('not measured: <reason>') instead of reporting 0.
AMD CPUs expose the same interface under the `intel-rapl` name via the amd_energy/rapl driver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str  # 'package-0', 'dram', ...
    max_energy_range_uj: int

    @property
    def kind(self) -> str:
        """'cpu' for package zones, 'dram' for DRAM, the raw name otherwise."""
        if self.name.startswith("package"):
            return "cpu"
        return self.name

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


@dataclass
class HostEnergy:
    """Energy of one window per RAPL kind (J), or the reason it was not measured."""

    energy_cpu_j: float | None = None
    energy_dram_j: float | None = None
    duration_s: float = 0.0
    zones: dict[str, float] = field(default_factory=dict)  # zone name -> J
    not_measured_reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        label = "measured (RAPL)" if self.not_measured_reason is None else f"not measured: {self.not_measured_reason}"
        return {"energy_cpu_j": self.energy_cpu_j, "energy_dram_j": self.energy_dram_j,
                "host_energy_duration_s": self.duration_s, "host_energy_zones_j": dict(self.zones),
                "host_energy_label": label}


def delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Counter difference with at most one wraparound at max_energy_range_uj."""
    d = after - before
    if d < 0:
        d += max_energy_range_uj + 1 if max_energy_range_uj > 0 else 0
    return d


def discover_zones(root: Path | str = DEFAULT_POWERCAP_ROOT) -> tuple[list[RaplZone], str | None]:
    """Readable top-level package zones and their DRAM sub-zones; (zones, reason if none)."""
    root = Path(root)
    if not root.is_dir():
        return [], f"no powercap sysfs at {root} (not Linux, or RAPL driver not loaded)"
    candidates = sorted(p for p in root.glob("intel-rapl:*") if p.is_dir())
    if not candidates:
        return [], f"no intel-rapl zones under {root}"
    zones: list[RaplZone] = []
    problems: list[str] = []
    for p in candidates:
        try:
            name = (p / "name").read_text().strip()
            max_uj = int((p / "max_energy_range_uj").read_text().strip())
            (p / "energy_uj").read_text()
        except PermissionError:
            problems.append(f"{p.name}: permission denied reading energy_uj (needs root on kernels >= 5.10)")
            continue
        except (OSError, ValueError) as e:
            problems.append(f"{p.name}: {type(e).__name__}: {e}")
            continue
        if name.startswith("package") or name == "dram":
            zones.append(RaplZone(p, name if name != "dram" else f"dram-{p.name.split(':', 1)[1]}", max_uj))
    if not zones:
        return [], "; ".join(problems) or f"no package or dram RAPL zone under {root}"
    return zones, None


class RaplMeter:
    """Brackets a window with RAPL reads: `start()`, then `stop()` -> HostEnergy."""

    def __init__(self, root: Path | str = DEFAULT_POWERCAP_ROOT,
                 clock_ns: Callable[[], int] = time.perf_counter_ns) -> None:
        self.zones, self.not_measured_reason = discover_zones(root)
        self.clock_ns = clock_ns
        self._start: tuple[int, list[int | None]] | None = None

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def _read_all(self) -> list[int | None]:
        out: list[int | None] = []
        for z in self.zones:
            try:
                out.append(z.read_uj())
            except (OSError, ValueError):
                out.append(None)
        return out

    def start(self) -> None:
        self._start = (self.clock_ns(), self._read_all())

    def stop(self) -> HostEnergy:
        t1 = self.clock_ns()
        if not self.zones:
            return HostEnergy(not_measured_reason=self.not_measured_reason)
        if self._start is None:
            return HostEnergy(not_measured_reason="RaplMeter.stop() without start()")
        t0, before = self._start
        after = self._read_all()
        zones: dict[str, float] = {}
        failed: list[str] = []
        for z, a, b in zip(self.zones, before, after):
            if a is None or b is None:
                failed.append(z.name)
                continue
            zones[z.name] = delta_uj(a, b, z.max_energy_range_uj) / 1e6
        if failed and not zones:
            return HostEnergy(duration_s=(t1 - t0) / 1e9,
                              not_measured_reason=f"RAPL read failed for {', '.join(failed)}")
        cpu = [v for k, v in zones.items() if k.startswith("package")]
        dram = [v for k, v in zones.items() if k.startswith("dram")]
        return HostEnergy(energy_cpu_j=sum(cpu) if cpu else None, energy_dram_j=sum(dram) if dram else None,
                          duration_s=(t1 - t0) / 1e9, zones=zones)
