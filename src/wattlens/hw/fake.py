"""A scripted GPU on a fake clock, so the meter's arithmetic is tested against known truths.

`FakeGPU` behaves like an H100 as far as the meter can tell: its energy counter (mJ) holds the
exact integral of the scripted power up to the last *update tick* and only moves at ticks
(`update_phase_s + k * update_period_s`, default every 100 ms); with `counter_delay_s` it holds the
integral up to that long before the tick instead (a counter that reports energy late). Its power
reading is the average over the last completed update period, and processes, throttle reasons,
temperature and counter glitches can be scripted in time. `true_energy_j(t0_s, t1_s)` gives the
exact answer a test compares the meter against.

Typical use::

    clock = FakeClock()
    gpu = FakeGPU(clock, power_w=60.0)          # idle at 60 W
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep)
    with meter.window("prefill") as w:
        gpu.busy(0.070, 500.0)                  # 70 ms at 500 W, then back to 60 W
    gpu.true_energy_j(w.result.start_ns / 1e9, w.result.end_ns / 1e9)
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from wattlens.core.errors import BadInput
from wattlens.core.units import NS_PER_S

PowerProfile = Callable[[float], float] | Sequence[tuple[float, float]] | float


class FakeClock:
    """A nanosecond clock that moves only when told to (`advance`, `sleep`, `set`)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._ns = int(round(start_s * NS_PER_S))

    def now_ns(self) -> int:
        return self._ns

    def now_s(self) -> float:
        return self._ns / NS_PER_S

    def __call__(self) -> int:
        return self._ns

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._ns += int(round(seconds * NS_PER_S))

    def sleep(self, seconds: float) -> None:
        """Drop-in for time.sleep: advances the fake time instead of waiting."""
        self.advance(max(0.0, seconds))

    def set_s(self, t_s: float) -> None:
        ns = int(round(t_s * NS_PER_S))
        if ns < self._ns:
            raise ValueError("a clock does not go back")
        self._ns = ns


@dataclass(frozen=True)
class _Interval:
    start_s: float
    end_s: float
    value: Any

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


class _StepPower:
    """Piecewise-constant power with O(log n) exact integrals; steps may be appended live."""

    def __init__(self, steps: Sequence[tuple[float, float]]) -> None:
        self.starts: list[float] = []
        self.watts: list[float] = []
        self.cum_j: list[float] = []  # energy from t=starts[0] to starts[i]
        if not steps:
            raise BadInput("a power profile needs at least one (t_start_s, watts) step")
        for t, w in sorted(steps):
            self.append(t, w)

    def append(self, t_s: float, watts: float) -> None:
        if watts < 0:
            raise BadInput(f"power {watts} W is negative")
        if self.starts and t_s < self.starts[-1]:
            raise BadInput(f"power step at {t_s} s is earlier than the last step {self.starts[-1]} s")
        if self.starts and t_s == self.starts[-1]:
            self.watts[-1] = float(watts)
            return
        if self.starts:
            self.cum_j.append(self.cum_j[-1] + self.watts[-1] * (t_s - self.starts[-1]))
        else:
            self.cum_j.append(0.0)
        self.starts.append(float(t_s))
        self.watts.append(float(watts))

    def power(self, t_s: float) -> float:
        i = bisect.bisect_right(self.starts, t_s) - 1
        return self.watts[max(i, 0)]

    def integral(self, t_s: float) -> float:
        """Energy (J) from time 0 up to t_s; before the first step the power is the first step's."""
        t0 = self.starts[0]
        if t_s <= t0:
            return self.watts[0] * t_s
        base = self.watts[0] * t0
        i = bisect.bisect_right(self.starts, t_s) - 1
        return base + self.cum_j[i] + self.watts[i] * (t_s - self.starts[i])


class _FunctionPower:
    """Power given as a function of time, integrated by the midpoint rule on a fine fixed grid."""

    def __init__(self, fn: Callable[[float], float], dt_s: float = 1e-4) -> None:
        self.fn = fn
        self.dt_s = dt_s
        self.cum_j = [0.0]  # energy from 0 to k*dt

    def power(self, t_s: float) -> float:
        return float(self.fn(t_s))

    def integral(self, t_s: float) -> float:
        if t_s <= 0:
            return 0.0
        k = int(t_s / self.dt_s)
        while len(self.cum_j) <= k:
            j = len(self.cum_j) - 1
            self.cum_j.append(self.cum_j[-1] + self.fn((j + 0.5) * self.dt_s) * self.dt_s)
        frac = t_s - k * self.dt_s
        return self.cum_j[k] + self.fn(k * self.dt_s + frac / 2) * frac


class FakeGPU:
    """A GPUDevice whose every reading follows a script on a FakeClock (see module docstring).

    Power: a constant, a callable `t_s -> watts`, or `(t_start_s, watts)` steps; with a constant
    or steps, `set_power_w` / `busy` append steps live so a test can script "prefill 70 ms at
    500 W then decode at 300 W" as the code under test runs.
    """

    def __init__(
        self,
        clock: FakeClock,
        power_w: PowerProfile = 60.0,
        *,
        index: int = 0,
        name: str = "NVIDIA H100 80GB HBM3",
        uuid: str | None = None,
        update_period_s: float = 0.100,
        update_phase_s: float = 0.0,
        energy_offset_mj: int = 123_456_789,
        counter_delay_s: float = 0.0,
        temperature_c: float | Callable[[float], float] = 35.0,
        sm_clock_mhz: int | Callable[[float], int] = 1980,
        mem_clock_mhz: int = 2619,
        memory_total_bytes: int = 80 * 2**30,
        memory_used_bytes: int = 512 * 2**20,
        power_limit_w: float = 700.0,
        driver_version: str = "580.00.fake",
        cuda_driver_version: str = "13.0",
    ) -> None:
        if update_period_s <= 0:
            raise BadInput("update_period_s must be > 0")
        self.clock = clock
        self.index = index
        self.name = name
        self.uuid = uuid or f"GPU-fake-{index:04d}"
        self.update_period_s = float(update_period_s)
        self.update_phase_s = float(update_phase_s) % self.update_period_s
        self.energy_offset_mj = int(energy_offset_mj)
        self.counter_delay_s = float(counter_delay_s)
        self._temperature = temperature_c
        self._sm_clock = sm_clock_mhz
        self._mem_clock_mhz = int(mem_clock_mhz)
        self._memory_total_bytes = int(memory_total_bytes)
        self._memory_used_bytes = int(memory_used_bytes)
        self._power_limit_w = float(power_limit_w)
        self._driver_version = driver_version
        self._cuda_driver_version = cuda_driver_version
        if callable(power_w):
            self._power: _StepPower | _FunctionPower = _FunctionPower(power_w)
        elif isinstance(power_w, (int, float)):
            self._power = _StepPower([(0.0, float(power_w))])
        else:
            self._power = _StepPower(list(power_w))
        self._base_power_w = self._power.power(clock.now_s())
        self._counter_jumps: list[tuple[float, int]] = []  # (at_s, delta_mj) added from at_s on
        self._processes: list[_Interval] = []
        self._throttles: list[_Interval] = []
        self.reads = 0  # how many energy_mj() calls: lets tests check the meter's polling cost
        # Clock control state, changed only through FakeClockControl (see below).
        self.supported_sm_clocks_mhz: list[int] = list(range(1980, 194, -15))  # H100-like ladder
        self.supported_mem_clocks_mhz: list[int] = [self._mem_clock_mhz]
        self.locked_sm_mhz: tuple[int, int] | None = None  # what the driver holds
        self.locked_mem_mhz: tuple[int, int] | None = None
        self.lock_takes = True  # False: the driver accepts a lock but the clock does not follow

    # ---- scripting -------------------------------------------------------------------------
    def set_power_w(self, watts: float, at_s: float | None = None) -> None:
        """From now (or `at_s`, not in the past of earlier steps) on, draw `watts`."""
        if not isinstance(self._power, _StepPower):
            raise BadInput("set_power_w needs a constant or stepped power profile, not a function")
        self._power.append(self.clock.now_s() if at_s is None else at_s, watts)

    def busy(self, duration_s: float, watts: float, then_w: float | None = None) -> None:
        """Draw `watts` for `duration_s` (advancing the shared clock), then `then_w` (default: base power)."""
        self.set_power_w(watts)
        self.clock.advance(duration_s)
        self.set_power_w(self._base_power_w if then_w is None else then_w)

    def counter_jump(self, at_s: float, delta_mj: int) -> None:
        """From `at_s` on the counter reads `delta_mj` more (negative: the counter went backwards)."""
        self._counter_jumps.append((at_s, int(delta_mj)))

    def add_process(self, pid: int, start_s: float = 0.0, end_s: float = math.inf) -> None:
        """A process `pid` runs compute on this GPU during [start_s, end_s)."""
        self._processes.append(_Interval(start_s, end_s, int(pid)))

    def add_throttle(self, reason: str, start_s: float, end_s: float = math.inf) -> None:
        """Clock-event reason `reason` ('sw_power_cap', 'hw_thermal', ...) is active in [start_s, end_s)."""
        self._throttles.append(_Interval(start_s, end_s, reason))

    # ---- truth for tests ---------------------------------------------------------------------
    def true_energy_j(self, t0_s: float, t1_s: float) -> float:
        """The exact energy drawn between two fake times."""
        return self._power.integral(t1_s) - self._power.integral(t0_s)

    def last_tick_s(self, t_s: float | None = None) -> float:
        """Time of the last counter update at or before t_s (now by default)."""
        t = self.clock.now_s() if t_s is None else t_s
        k = math.floor((t - self.update_phase_s) / self.update_period_s + 1e-12)
        return self.update_phase_s + k * self.update_period_s

    # ---- GPUDevice ---------------------------------------------------------------------------
    def energy_mj(self) -> int:
        self.reads += 1
        t = self.clock.now_s()
        drawn_until = self.last_tick_s(t) - self.counter_delay_s
        drawn_j = max(self._power.integral(max(drawn_until, 0.0)), 0.0)
        mj = self.energy_offset_mj + math.floor(drawn_j * 1000.0)
        mj += sum(d for at, d in self._counter_jumps if at <= t)
        return int(mj)

    def power_w(self) -> float:
        tick = self.last_tick_s()
        prev = tick - self.update_period_s
        if prev < 0:
            return self._power.power(max(tick, 0.0))
        return self.true_energy_j(prev, tick) / self.update_period_s

    def sm_clock_mhz(self) -> int:
        c = self._sm_clock
        free = int(c(self.clock.now_s()) if callable(c) else c)
        if self.locked_sm_mhz is not None and self.lock_takes:
            return self.locked_sm_mhz[1]
        return free

    def mem_clock_mhz(self) -> int:
        if self.locked_mem_mhz is not None and self.lock_takes:
            return self.locked_mem_mhz[1]
        return self._mem_clock_mhz

    def temperature_c(self) -> float:
        t = self._temperature
        return float(t(self.clock.now_s()) if callable(t) else t)

    def throttle_reasons(self) -> tuple[str, ...]:
        now = self.clock.now_s()
        return tuple(sorted({iv.value for iv in self._throttles if iv.active(now)}))

    def memory_used_bytes(self) -> int:
        return self._memory_used_bytes

    def memory_total_bytes(self) -> int:
        return self._memory_total_bytes

    def compute_pids(self) -> tuple[int, ...]:
        now = self.clock.now_s()
        return tuple(sorted({iv.value for iv in self._processes if iv.active(now)}))

    def power_limit_w(self) -> float:
        return self._power_limit_w

    def info(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "fake": True,
            "driver_version": self._driver_version,
            "cuda_driver_version": self._cuda_driver_version,
            "persistence_mode": True,
            "power_limit_w": self._power_limit_w,
            "max_sm_clock_mhz": self.sm_clock_mhz(),
            "max_mem_clock_mhz": self._mem_clock_mhz,
            "memory_total_bytes": self._memory_total_bytes,
            "update_period_s": self.update_period_s,
        }


class FakeClockControl:
    """Clock / power-limit setters on a FakeGPU, the fake twin of `hw.nvml.NvmlClockControl`.

    Every setter call is appended to `calls` as (name, args). With `state_path` the GPU's clock
    state is written (JSON) after each call, so a test can kill the process mid-sweep and check
    from outside that the state was restored. `deny=True` makes every setter fail as an
    unprivileged user's would.
    """

    def __init__(self, gpu: FakeGPU, *, state_path: str | os.PathLike[str] | None = None,
                 deny: bool = False) -> None:
        self.gpu = gpu
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.state_path = state_path
        self.deny = deny
        self._save()

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.deny:
            from wattlens.core.errors import ClockControlError

            raise ClockControlError(f"{name}: insufficient permissions (fake: deny=True)")

    def _save(self) -> None:
        if self.state_path is None:
            return
        state = {"locked_sm_mhz": self.gpu.locked_sm_mhz, "locked_mem_mhz": self.gpu.locked_mem_mhz,
                 "power_limit_w": self.gpu._power_limit_w, "calls": [c[0] for c in self.calls]}
        tmp = f"{self.state_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_path)

    # ---- reads -------------------------------------------------------------------------------
    def supported_sm_clocks_mhz(self) -> list[int]:
        return list(self.gpu.supported_sm_clocks_mhz)

    def supported_mem_clocks_mhz(self) -> list[int]:
        return list(self.gpu.supported_mem_clocks_mhz)

    def locked_sm_clocks_mhz(self) -> tuple[int, int] | None:
        return self.gpu.locked_sm_mhz

    def locked_mem_clocks_mhz(self) -> tuple[int, int] | None:
        return self.gpu.locked_mem_mhz

    def power_limit_w(self) -> float:
        return self.gpu._power_limit_w

    def power_limit_range_w(self) -> tuple[float, float]:
        return (100.0, 700.0)

    # ---- setters -----------------------------------------------------------------------------
    def lock_sm_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self._record("lock_sm_clocks", min_mhz, max_mhz)
        self.gpu.locked_sm_mhz = (int(min_mhz), int(max_mhz))
        self._save()

    def reset_sm_clocks(self) -> None:
        self._record("reset_sm_clocks")
        self.gpu.locked_sm_mhz = None
        self._save()

    def lock_mem_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self._record("lock_mem_clocks", min_mhz, max_mhz)
        self.gpu.locked_mem_mhz = (int(min_mhz), int(max_mhz))
        self._save()

    def reset_mem_clocks(self) -> None:
        self._record("reset_mem_clocks")
        self.gpu.locked_mem_mhz = None
        self._save()

    def set_power_limit_w(self, watts: float) -> None:
        self._record("set_power_limit_w", watts)
        self.gpu._power_limit_w = float(watts)
        self._save()


def busy_all(gpus: Sequence[FakeGPU], duration_s: float, watts: float | Sequence[float]) -> None:
    """Run a phase on several FakeGPUs sharing one clock: each draws its watts for duration_s."""
    if not gpus:
        return
    ws = [watts] * len(gpus) if isinstance(watts, (int, float)) else list(watts)
    for g, w in zip(gpus, ws):
        g.set_power_w(w)
    gpus[0].clock.advance(duration_s)
    for g in gpus:
        g.set_power_w(g._base_power_w)
