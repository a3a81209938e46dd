"""A background power/clock/temperature timeline, for seeing *inside* an energy window.

The energy counter gives exact totals at 100 ms granularity; the timeline shows what happened
between (clock drops, throttling, temperature). It samples at least twice per counter update
(Nyquist on the update rate), stamping each sample with the same clock as the energy windows
(`time.perf_counter_ns` by default) so samples and windows line up. A failed read is NaN, never 0.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from wattlens.core.errors import BadInput
from wattlens.core.units import NS_PER_S
from wattlens.hw.device import GPUDevice

DEFAULT_UPDATE_PERIOD_S = 0.100


def _read(fn: Callable[[], Any]) -> float:
    try:
        return float(fn())
    except Exception:
        return math.nan


@dataclass
class Timeline:
    """Samples over time for n GPUs. Arrays are (samples,) for t_s and (samples, gpus) otherwise."""

    t_s: np.ndarray
    power_w: np.ndarray
    sm_clock_mhz: np.ndarray
    mem_clock_mhz: np.ndarray
    temperature_c: np.ndarray
    throttle_reasons: list[tuple[tuple[str, ...], ...]] = field(default_factory=list)  # [sample][gpu]
    gpu_indices: tuple[int, ...] = ()
    interval_s: float = 0.05
    failed_reads: int = 0

    def __len__(self) -> int:
        return len(self.t_s)

    def throttle_reasons_between(self, t0_s: float, t1_s: float) -> tuple[str, ...]:
        """Every reason any GPU reported in samples with t0_s <= t <= t1_s, sorted."""
        seen: set[str] = set()
        for t, per_gpu in zip(self.t_s, self.throttle_reasons):
            if t0_s <= t <= t1_s:
                for rs in per_gpu:
                    seen.update(rs)
        return tuple(sorted(seen))

    def between(self, t0_s: float, t1_s: float) -> "Timeline":
        """The samples inside [t0_s, t1_s] (e.g. one energy window)."""
        m = (self.t_s >= t0_s) & (self.t_s <= t1_s)
        idx = np.nonzero(m)[0]
        return Timeline(self.t_s[m], self.power_w[m], self.sm_clock_mhz[m], self.mem_clock_mhz[m],
                        self.temperature_c[m], [self.throttle_reasons[i] for i in idx], self.gpu_indices,
                        self.interval_s, 0)

    def to_compact(self) -> dict[str, Any]:
        """JSON-ready dict: times relative to t0_s (0.1 ms), power 0.1 W, clocks MHz, temps 0.1 C.

        NaN (a failed read) becomes None. Throttle reasons are stored only where non-empty.
        """
        def col(a: np.ndarray, nd: int | None) -> list[list[float | None]]:
            out = []
            for g in range(a.shape[1] if a.ndim == 2 else 0):
                out.append([None if math.isnan(v) else (int(v) if nd is None else round(float(v), nd))
                            for v in a[:, g]])
            return out

        t0 = float(self.t_s[0]) if len(self.t_s) else 0.0
        throttles = {str(i): [list(r) for r in per] for i, per in enumerate(self.throttle_reasons)
                     if any(per)}
        return {
            "t0_s": t0,
            "interval_s": self.interval_s,
            "gpu_indices": list(self.gpu_indices),
            "t_s": [round(float(t) - t0, 4) for t in self.t_s],
            "power_w": col(self.power_w, 1),
            "sm_clock_mhz": col(self.sm_clock_mhz, None),
            "mem_clock_mhz": col(self.mem_clock_mhz, None),
            "temperature_c": col(self.temperature_c, 1),
            "throttle_reasons": throttles,
            "failed_reads": self.failed_reads,
        }


class PowerSampler:
    """Samples every GPU every `interval_s` on a daemon thread; `stop()` returns the Timeline.

    `interval_s` must be at most half the counter update period (default 0.1 s). Use as a
    context manager, or call `sample_once()` by hand (tests drive it on a fake clock).
    """

    def __init__(self, gpus: Sequence[GPUDevice], interval_s: float = 0.05, *,
                 clock_ns: Callable[[], int] = time.perf_counter_ns,
                 update_period_s: float | None = None) -> None:
        period = update_period_s or DEFAULT_UPDATE_PERIOD_S
        if interval_s <= 0 or interval_s > period / 2 + 1e-12:
            raise BadInput(f"sampler interval {interval_s} s must be in (0, {period / 2}] "
                           f"(at least two samples per {period} s counter update)")
        self.gpus = list(gpus)
        self.interval_s = float(interval_s)
        self.clock_ns = clock_ns
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t: list[float] = []
        self._rows: list[tuple[list[float], list[float], list[float], list[float]]] = []
        self._throttle: list[tuple[tuple[str, ...], ...]] = []
        self._failed = 0
        self._last_energy_mj: list[int | None] = [None] * len(self.gpus)
        self._backwards_t: list[float] = []  # sample times at which a GPU's energy counter decreased
        self.result: Timeline | None = None  # set when used as a context manager

    def sample_once(self) -> None:
        """Read every GPU once and append the sample (thread-safe)."""
        t = self.clock_ns() / NS_PER_S
        p, sm, mem, temp, thr = [], [], [], [], []
        failed = 0
        for g in self.gpus:
            vals = [_read(g.power_w), _read(g.sm_clock_mhz), _read(g.mem_clock_mhz), _read(g.temperature_c)]
            failed += sum(math.isnan(v) for v in vals)
            p.append(vals[0]); sm.append(vals[1]); mem.append(vals[2]); temp.append(vals[3])  # noqa: E702
            try:
                thr.append(tuple(g.throttle_reasons()))
            except Exception:
                thr.append(())
                failed += 1
        backwards = False
        for i, g in enumerate(self.gpus):
            try:
                e = int(g.energy_mj())
            except Exception:
                continue
            prev = self._last_energy_mj[i]
            backwards |= prev is not None and e < prev
            self._last_energy_mj[i] = e
        with self._lock:
            if backwards:
                self._backwards_t.append(t)
            self._t.append(t)
            self._rows.append((p, sm, mem, temp))
            self._throttle.append(tuple(thr))
            self._failed += failed

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)

    def start(self) -> "PowerSampler":
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wattlens-power-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Timeline:
        """Stop the thread (if running) and return everything sampled so far."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=max(1.0, 10 * self.interval_s))
            self._thread = None
        return self.timeline()

    def throttle_reasons_between(self, t0_s: float, t1_s: float) -> tuple[str, ...]:
        """Reasons seen so far in [t0_s, t1_s]; safe to call while sampling (energy windows do)."""
        with self._lock:
            pairs = list(zip(self._t, self._throttle))
        seen: set[str] = set()
        for t, per in pairs:
            if t0_s <= t <= t1_s:
                for rs in per:
                    seen.update(rs)
        return tuple(sorted(seen))

    def counter_backwards_between(self, t0_s: float, t1_s: float) -> bool:
        """Whether any GPU's energy counter was seen to decrease between two samples in [t0_s, t1_s]."""
        with self._lock:
            return any(t0_s <= t <= t1_s for t in self._backwards_t)

    def timeline(self) -> Timeline:
        with self._lock:
            n, g = len(self._t), len(self.gpus)
            arr = np.full((4, n, g), np.nan)
            for i, row in enumerate(self._rows):
                for k in range(4):
                    arr[k, i, :] = row[k]
            return Timeline(np.asarray(self._t, dtype=float), arr[0], arr[1], arr[2], arr[3],
                            list(self._throttle), tuple(x.index for x in self.gpus), self.interval_s,
                            self._failed)

    def __enter__(self) -> "PowerSampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.result = self.stop()
