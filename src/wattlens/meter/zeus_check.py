"""Cross-check wattlens energy windows against Zeus (`pip install wattlens[zeus]`), window by window.

Both tools open a window around the same work; the nesting order alternates between windows so
neither is systematically the outer (longer) one. Zeus is imported only when a cross-check is
built. On Volta and later both read NVML's total-energy counter, so agreement checks the
bookkeeping (sync, boundaries, units, multi-GPU sums), not the sensor itself; each row carries
wattlens' own quantisation uncertainty so a difference can be judged against it.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

from wattlens.core.errors import NotMeasured
from wattlens.meter.energy import EnergyMeter, WindowHandle


@dataclass(frozen=True)
class CrossCheckRow:
    name: str
    target_s: float | None
    wattlens_time_s: float
    zeus_time_s: float
    wattlens_energy_j: float | None
    wattlens_uncertainty_j: float | None
    zeus_energy_j: float
    rel_diff_pct: float | None  # (wattlens - zeus) / zeus
    flags: tuple[str, ...]
    outer: str  # which tool's window enclosed the other's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_zeus_monitor(gpu_indices: Sequence[int]) -> Any:
    """A ZeusMonitor on these (CUDA-visible) GPU indices, or NotMeasured saying why not."""
    try:
        from zeus.monitor import ZeusMonitor
    except ImportError as e:
        raise NotMeasured(f"zeus not installed ({e}); pip install 'wattlens[zeus]'") from None
    return ZeusMonitor(gpu_indices=list(gpu_indices))


class ZeusCrossCheck:
    """Measure windows with an EnergyMeter and a Zeus monitor at once (`monitor` injectable for tests)."""

    def __init__(self, meter: EnergyMeter, monitor: Any = None, gpu_indices: Sequence[int] | None = None) -> None:
        self.meter = meter
        self.gpu_indices = list(gpu_indices if gpu_indices is not None else range(len(meter.gpus)))
        self.monitor = monitor if monitor is not None else make_zeus_monitor(self.gpu_indices)
        self.rows: list[CrossCheckRow] = []
        self._count = 0

    @contextmanager
    def window(self, name: str, target_s: float | None = None) -> Iterator[WindowHandle]:
        zeus_outer = self._count % 2 == 0
        self._count += 1
        key = f"wattlens-crosscheck-{name}-{self._count}"
        zeus_result: list[Any] = []

        @contextmanager
        def zeus_window() -> Iterator[None]:
            self.monitor.begin_window(key, sync_execution=True)
            try:
                yield
            finally:
                zeus_result.append(self.monitor.end_window(key, sync_execution=True))

        with ExitStack() as stack:
            if zeus_outer:
                stack.enter_context(zeus_window())
                h = stack.enter_context(self.meter.window(name))
            else:
                h = stack.enter_context(self.meter.window(name))
                stack.enter_context(zeus_window())
            yield h
        w = h.result
        z = zeus_result[0]
        z_j = float(sum(z.gpu_energy[i] for i in self.gpu_indices))
        rel = None if w is None or w.energy_gpu_j is None or z_j == 0 else 100.0 * (w.energy_gpu_j - z_j) / z_j
        self.rows.append(CrossCheckRow(
            name=name, target_s=target_s, wattlens_time_s=w.duration_s if w else float("nan"),
            zeus_time_s=float(z.time), wattlens_energy_j=w.energy_gpu_j if w else None,
            wattlens_uncertainty_j=w.energy_gpu_uncertainty_j if w else None, zeus_energy_j=z_j,
            rel_diff_pct=rel, flags=w.flags if w else (), outer="zeus" if zeus_outer else "wattlens"))


def crosscheck_markdown(rows: Sequence[CrossCheckRow], *, tolerance_pct: float = 1.0, min_s: float = 1.0) -> str:
    """A markdown table, one row per window, and a verdict for windows of at least `min_s`."""
    lines = ["| window | target s | wattlens s | zeus s | wattlens J | ± J (worst) | zeus J | diff % | outer | flags |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def f(x: float | None, nd: int = 3) -> str:
        return "—" if x is None else f"{x:.{nd}f}"

    for r in rows:
        lines.append(f"| {r.name} | {f(r.target_s, 2)} | {f(r.wattlens_time_s)} | {f(r.zeus_time_s)} | "
                     f"{f(r.wattlens_energy_j, 2)} | {f(r.wattlens_uncertainty_j, 2)} | {f(r.zeus_energy_j, 2)} | "
                     f"{f(r.rel_diff_pct, 3)} | {r.outer} | {', '.join(r.flags)} |")
    long = [r for r in rows if r.wattlens_time_s >= min_s and r.rel_diff_pct is not None]
    within = [r for r in long if abs(r.rel_diff_pct) <= tolerance_pct]  # type: ignore[arg-type]
    worst = max((abs(r.rel_diff_pct) for r in long), default=None)  # type: ignore[arg-type]
    lines += ["", f"Windows of {min_s} s and longer within {tolerance_pct}%: {len(within)} of {len(long)}"
              + ("" if worst is None else f" (largest |diff| {worst:.3f}%)") + "."]
    return "\n".join(lines) + "\n"
