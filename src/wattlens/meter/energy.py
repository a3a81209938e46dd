"""Energy windows on the GPU energy counter, with honest uncertainty and flags.

The counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ) is exact but *coarse in time*: on H100
it only moves every ~100 ms (the update period P). A read at time t shows the energy up to the
last update tick tau <= t. So for a window [t0, t1]:

    measured - true = a - b,   a = E[tau0, t0] in [0, P * p_before],  b = E[tau1, t1] in [0, P * p_end]

where p_before / p_end are the powers just before each boundary. The meter states the worst case
    uncertainty = +- P * max(window average power, power read at either boundary)
per GPU, summed over GPUs. With a, b independent and uniform, the error is triangular with
standard deviation P * p / sqrt(6); the worst case is what `energy_gpu_uncertainty_j` holds. A
burst shorter than P that starts and ends between two ticks is invisible to the counter; such
windows are flagged 'short_window' (fewer than MIN_UPDATES periods) and should be amplified
(`EnergyMeter.measure_amplified`).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from wattlens.core.errors import NotMeasured
from wattlens.core.results import EnergyWindow
from wattlens.core.units import NS_PER_S
from wattlens.hw.device import GPUDevice

MIN_UPDATES = 20  # windows spanning fewer counter updates carry > ~5% quantisation error
DEFAULT_UPDATE_PERIOD_S = 0.100  # H100/A100 value; used (and flagged) until detect_update_period runs
DEFAULT_POLL_S = 0.001  # counter polling step for tick detection: 1% of the H100 period
# Clock-event reasons that do not distort a measurement: clocks set by the user / the dvfs layer.
DEFAULT_IGNORED_THROTTLE = ("applications_clocks_setting", "display_clock_setting")


def _proc_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def is_descendant(pid: int, ancestor: int, max_depth: int = 64) -> bool:
    """True when `pid` is `ancestor` or one of its (grand)children, per /proc (Linux only)."""
    for _ in range(max_depth):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        nxt = _proc_ppid(pid)
        if nxt is None:
            return False
        pid = nxt
    return False


@dataclass
class _Boundary:
    t_ns: int
    energy_mj: list[int | None]
    power_w: list[float]
    pids: set[int]
    throttle: set[str]
    errors: list[str] = field(default_factory=list)


class WindowHandle:
    """What `EnergyMeter.window` yields; `.result` is the EnergyWindow once the block exits."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start_ns: int | None = None
        self.result: EnergyWindow | None = None

    def __repr__(self) -> str:
        return f"WindowHandle({self.name!r}, result={self.result!r})"


@dataclass(frozen=True)
class AmplifiedEnergy:
    """A short phase measured by repetition: totals over all calls, divided per call.

    `uncertainty_per_call_j` is the worst case (each sub-window's +-P*p summed, over calls);
    `uncertainty_per_call_std_j` the expected spread (sub-window errors independent, each with
    std P*p/sqrt(6)). `window` sums the sub-windows: its end_ns is start_ns plus the summed
    measured time (the gaps between sub-runs are not in it), so its average power is right.
    """

    calls: int
    energy_per_call_j: float | None
    uncertainty_per_call_j: float | None
    uncertainty_per_call_std_j: float | None
    energy_active_per_call_j: float | None
    duration_per_call_s: float
    window: EnergyWindow
    windows: tuple[EnergyWindow, ...]

    @property
    def not_measured_reason(self) -> str | None:
        return self.window.not_measured_reason


class EnergyMeter:
    """Named, nestable energy windows over one or more GPUs (counters summed).

    Build it with the GPUs the work runs on and a `sync` that waits for their queued work
    (e.g. `torch.cuda.synchronize`), so a boundary is read when the GPU is really done. All
    times come from `clock_ns` (perf_counter_ns by default): the same clock as the sampler and
    the backends' token timestamps. With no GPUs every window says why it was not measured.
    """

    def __init__(
        self,
        gpus: Sequence[GPUDevice],
        clock_ns: Callable[[], int] = time.perf_counter_ns,
        sync: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
        *,
        not_measured_reason: str | None = None,
        allowed_pids: Iterable[int] = (),
        sampler: Any = None,
        ignored_throttle_reasons: Iterable[str] = DEFAULT_IGNORED_THROTTLE,
        update_period_s: float | None = None,
        idle_power_w: float | None = None,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self.gpus = list(gpus)
        self.clock_ns = clock_ns
        self.sync = sync
        self.sleep = sleep
        self.not_measured_reason = (
            None if self.gpus else f"no NVIDIA GPU: {not_measured_reason or 'no GPU given to the meter'}"
        )
        self.allowed_pids = set(allowed_pids)
        self.sampler = sampler  # anything with throttle_reasons_between(t0_s, t1_s), e.g. PowerSampler
        self.ignored_throttle_reasons = frozenset(ignored_throttle_reasons)
        self.update_period_s = update_period_s
        self.idle_power_w = idle_power_w
        self.poll_s = poll_s

    @classmethod
    def for_visible_gpus(cls, indices: Sequence[int] | None = None, **kwargs: Any) -> "EnergyMeter":
        """A meter on the GPUs NVML can open (see hw.nvml.open_gpus), or a GPU-less meter saying why."""
        from wattlens.hw.nvml import open_gpus

        try:
            gpus = open_gpus(indices)
        except NotMeasured as e:
            return cls([], not_measured_reason=str(e).removeprefix("no NVIDIA GPU: "), **kwargs)
        return cls(gpus, **kwargs)

    # ---- calibration -------------------------------------------------------------------------
    def _poll_until_change(self, gpu: GPUDevice, max_wait_s: float) -> tuple[int, int] | None:
        """Poll one counter until it moves; (t_ns, value) of the first read that shows the move."""
        start = self.clock_ns()
        last = gpu.energy_mj()
        while (self.clock_ns() - start) / NS_PER_S < max_wait_s:
            self.sleep(self.poll_s)
            e = gpu.energy_mj()
            if e != last:
                return self.clock_ns(), e
        return None

    def detect_update_period(self, max_wait_s: float = 1.0, intervals: int = 5) -> float | None:
        """Watch the first GPU's counter tick and store the median time between moves (s).

        Timing resolution is the poll step (1 ms). None when there is no GPU; NotMeasured when
        the counter did not move twice within max_wait_s.
        """
        if not self.gpus:
            return None
        gpu = self.gpus[0]
        start = self.clock_ns()
        changes: list[int] = []
        last = gpu.energy_mj()
        while (self.clock_ns() - start) / NS_PER_S < max_wait_s and len(changes) <= intervals:
            self.sleep(self.poll_s)
            e = gpu.energy_mj()
            if e != last:
                changes.append(self.clock_ns())
                last = e
        if len(changes) < 2:
            raise NotMeasured(
                f"energy counter of GPU {gpu.index} moved {len(changes)} times in {max_wait_s} s")
        gaps = [(b - a) / NS_PER_S for a, b in zip(changes, changes[1:])]
        self.update_period_s = float(statistics.median(gaps))
        return self.update_period_s

    def measure_idle_power(self, duration_s: float = 5.0) -> float | None:
        """Idle power (W, summed over GPUs) from counter deltas between two update ticks per GPU.

        Each GPU's interval starts and ends at a moment its counter was seen to move, so the
        quantisation error is only the poll step. Call it on a cooled-down, idle GPU. Stored as
        `idle_power_w` and subtracted in every later window's `energy_gpu_active_j`.
        """
        if not self.gpus:
            return None
        self.sync()
        period = self.update_period_s or DEFAULT_UPDATE_PERIOD_S
        firsts = [self._poll_until_change(g, 3 * period + 1.0) for g in self.gpus]
        self.sleep(duration_s)
        lasts = [self._poll_until_change(g, 3 * period + 1.0) for g in self.gpus]
        total = 0.0
        for g, a, b in zip(self.gpus, firsts, lasts):
            if a is None or b is None or b[0] <= a[0]:
                raise NotMeasured(f"energy counter of GPU {g.index} did not move during idle measurement")
            if b[1] < a[1]:
                raise NotMeasured(f"energy counter of GPU {g.index} went backwards during idle measurement")
            total += (b[1] - a[1]) / 1000.0 / ((b[0] - a[0]) / NS_PER_S)
        self.idle_power_w = total
        return total

    # ---- windows -----------------------------------------------------------------------------
    def _read_flags_state(self) -> tuple[set[int], set[str], list[str]]:
        pids: set[int] = set()
        thr: set[str] = set()
        errors: list[str] = []
        for g in self.gpus:
            try:
                pids.update(g.compute_pids())
            except Exception as e:
                errors.append(f"pids GPU {g.index}: {e}")
            try:
                thr.update(g.throttle_reasons())
            except Exception as e:
                errors.append(f"throttle GPU {g.index}: {e}")
        return pids, thr, errors

    def _read_counters(self) -> tuple[list[int | None], list[str]]:
        out: list[int | None] = []
        errors: list[str] = []
        for g in self.gpus:
            try:
                out.append(int(g.energy_mj()))
            except Exception as e:
                out.append(None)
                errors.append(f"energy read failed on GPU {g.index}: {type(e).__name__}: {e}")
        return out, errors

    def read_energy_mj(self) -> int | None:
        """The energy counters summed over the meter's GPUs (mJ), or None when any read fails or
        there is no GPU. A raw read: no sync, no flags (for reads inside a window, e.g. at tokens)."""
        values, errors = self._read_counters()
        if not values or errors:
            return None
        return sum(v for v in values if v is not None)

    def _read_powers(self) -> list[float]:
        out = []
        for g in self.gpus:
            try:
                out.append(float(g.power_w()))
            except Exception:
                out.append(math.nan)
        return out

    def _enter(self) -> _Boundary:
        pids, thr, errors = self._read_flags_state()  # slow reads before the timed part
        self.sync()
        t = self.clock_ns()
        energy, e_err = self._read_counters()
        return _Boundary(t, energy, self._read_powers(), pids, thr, errors + e_err)

    def _exit(self) -> _Boundary:
        self.sync()
        t = self.clock_ns()
        energy, e_err = self._read_counters()
        powers = self._read_powers()
        pids, thr, errors = self._read_flags_state()
        return _Boundary(t, energy, powers, pids, thr, e_err + errors)

    def _is_own(self, pid: int) -> bool:
        me = os.getpid()
        return pid == me or pid in self.allowed_pids or is_descendant(pid, me)

    def _result(self, name: str, a: _Boundary, b: _Boundary, raised: bool) -> EnergyWindow:
        duration_s = (b.t_ns - a.t_ns) / NS_PER_S
        flags: list[str] = []
        period = self.update_period_s
        if period is None:
            period = DEFAULT_UPDATE_PERIOD_S
            if self.gpus:
                flags.append("update_period_assumed")
        updates = int(math.floor(duration_s / period + 1e-9)) if period > 0 else 0
        if raised:
            flags.append("exception")
        if not self.gpus:
            return EnergyWindow(name=name, start_ns=a.t_ns, end_ns=b.t_ns, counter_updates=None,
                                update_period_s=None, flags=tuple(flags),
                                not_measured_reason=self.not_measured_reason)
        if updates < MIN_UPDATES:
            flags.append("short_window")
        for pid in sorted(a.pids | b.pids):
            if not self._is_own(pid):
                flags.append(f"foreign_process:{pid}")
        reasons = set(a.throttle) | set(b.throttle)
        if self.sampler is not None:
            try:
                reasons.update(self.sampler.throttle_reasons_between(a.t_ns / NS_PER_S, b.t_ns / NS_PER_S))
            except Exception:
                pass
        flags.extend(f"throttle:{r}" for r in sorted(reasons - self.ignored_throttle_reasons))

        reason: str | None = None
        read_errors = [e for e in a.errors + b.errors if e.startswith("energy read failed")]
        deltas: list[int] = []
        if read_errors:
            reason = "; ".join(read_errors)
        else:
            for g, e0, e1 in zip(self.gpus, a.energy_mj, b.energy_mj):
                d = int(e1) - int(e0)  # type: ignore[arg-type]
                if d < 0:
                    flags.append("counter_backwards")
                    reason = f"energy counter went backwards on GPU {g.index} ({e0} -> {e1} mJ)"
                deltas.append(d)
        if reason is None and self.sampler is not None:
            seen = getattr(self.sampler, "counter_backwards_between", None)
            try:
                inside = bool(seen and seen(a.t_ns / NS_PER_S, b.t_ns / NS_PER_S))
            except Exception:
                inside = False
            if inside:  # a drop smaller than the window's own energy leaves the ends in order
                flags.append("counter_backwards")
                reason = "energy counter went backwards inside the window (seen by the power sampler)"
        common = dict(name=name, start_ns=a.t_ns, end_ns=b.t_ns, idle_power_w=self.idle_power_w,
                      counter_updates=updates, update_period_s=period)
        if reason is not None:
            return EnergyWindow(**common, flags=tuple(dict.fromkeys(flags)), not_measured_reason=reason)

        per_gpu = tuple(d / 1000.0 for d in deltas)
        energy_j = sum(per_gpu)
        uncertainty_j = 0.0
        for e_j, p0, p1 in zip(per_gpu, a.power_w, b.power_w):
            avg = e_j / duration_s if duration_s > 0 else 0.0
            uncertainty_j += period * max([avg] + [p for p in (p0, p1) if not math.isnan(p)])
        active = None if self.idle_power_w is None else energy_j - self.idle_power_w * duration_s
        return EnergyWindow(**common, energy_gpu_j=energy_j, energy_gpu_uncertainty_j=uncertainty_j,
                            energy_gpu_active_j=active, flags=tuple(dict.fromkeys(flags)),
                            per_gpu_energy_j=per_gpu)

    @contextmanager
    def window(self, name: str) -> Iterator[WindowHandle]:
        """Measure the energy of the `with` block; windows nest and overlap freely.

        Enter: read pids/throttle, sync(), read clock and counters. Exit: sync(), clock and
        counters, then pids/throttle. The handle's `.result` is set on exit, also when the
        block raises (flag 'exception'; the exception propagates).
        """
        h = WindowHandle(name)
        a = self._enter()
        h.start_ns = a.t_ns
        raised = False
        try:
            yield h
        except BaseException:
            raised = True
            raise
        finally:
            b = self._exit()
            h.result = self._result(name, a, b, raised)

    # ---- short phases ------------------------------------------------------------------------
    def _wait_for_tick(self) -> None:
        if self.gpus:
            self._poll_until_change(self.gpus[0], 3 * (self.update_period_s or DEFAULT_UPDATE_PERIOD_S))

    def measure_amplified(self, fn: Callable[[], None], min_updates: int = MIN_UPDATES,
                          max_calls: int = 10_000, spread_phase: bool = True, *, phases: int = 4,
                          name: str = "amplified") -> AmplifiedEnergy:
        """Energy per call of a short `fn` (e.g. one 70 ms prefill), by repetition.

        1. probe: call fn back to back for >= one update period (warm-up, and time per call);
        2. for each of `phases` sub-runs (1 without spread_phase): wait for a counter tick, sleep
           j/phases of the period, run fn for >= one period unmeasured (so the power just before
           the window is the phase's own power: the boundary errors a and b then have the same
           mean and cancel on average), then run fn back to back inside a window spanning
           >= min_updates periods;
        3. divide the summed energy by the summed calls.
        Each sub-window's worst-case error is +-P*p (module docstring), so the per-call worst
        case falls as 1/calls. The wall time is about phases * (min_updates + 3) periods.
        """
        period = self.update_period_s or DEFAULT_UPDATE_PERIOD_S
        self.sync()
        t0 = self.clock_ns()
        probe_calls = 0
        while True:
            fn()
            probe_calls += 1
            if probe_calls >= max_calls:
                break
            if probe_calls & (probe_calls - 1) == 0 or probe_calls % 16 == 0:  # sync rarely
                self.sync()
                if (self.clock_ns() - t0) / NS_PER_S >= period:
                    break
        self.sync()
        per_call_s = max((self.clock_ns() - t0) / NS_PER_S / probe_calls, 1e-9)
        n_sub = max(1, phases) if spread_phase else 1
        calls_per_sub = max(1, min(math.ceil(min_updates * period / per_call_s), max_calls // n_sub))
        preroll_calls = max(1, min(math.ceil(period / per_call_s), max_calls))
        windows: list[EnergyWindow] = []
        for j in range(n_sub):
            if spread_phase:
                self._wait_for_tick()
                self.sleep(period * j / n_sub)
                for _ in range(preroll_calls):
                    fn()
            with self.window(f"{name}[{j}]") as h:
                for _ in range(calls_per_sub):
                    fn()
            assert h.result is not None
            windows.append(h.result)
        return _combine(name, windows, calls_per_sub, self.idle_power_w)


def _combine(name: str, windows: list[EnergyWindow], calls_per_sub: int,
             idle_power_w: float | None) -> AmplifiedEnergy:
    calls = calls_per_sub * len(windows)
    duration_ns = sum(w.end_ns - w.start_ns for w in windows)
    duration_s = duration_ns / NS_PER_S
    flags = tuple(dict.fromkeys(f for w in windows for f in w.flags))
    reasons = [w.not_measured_reason for w in windows if w.not_measured_reason]
    updates = [w.counter_updates for w in windows]
    common = dict(name=name, start_ns=windows[0].start_ns, end_ns=windows[0].start_ns + duration_ns,
                  idle_power_w=idle_power_w, update_period_s=windows[0].update_period_s,
                  counter_updates=None if None in updates else sum(updates),  # type: ignore[arg-type]
                  flags=flags)
    if reasons or any(w.energy_gpu_j is None for w in windows):
        why = "; ".join(dict.fromkeys(reasons)) or "not measured"
        total = EnergyWindow(**common, not_measured_reason=why)
        return AmplifiedEnergy(calls, None, None, None, None, duration_s / calls, total, tuple(windows))
    energy_j = sum(w.energy_gpu_j for w in windows)  # type: ignore[misc]
    worst_j = sum(w.energy_gpu_uncertainty_j or 0.0 for w in windows)
    std_j = math.sqrt(sum((w.energy_gpu_uncertainty_j or 0.0) ** 2 / 6.0 for w in windows))
    active = None if idle_power_w is None else energy_j - idle_power_w * duration_s
    n_gpus = len(windows[0].per_gpu_energy_j)
    per_gpu = tuple(sum(w.per_gpu_energy_j[i] for w in windows) for i in range(n_gpus))
    total = EnergyWindow(**common, energy_gpu_j=energy_j, energy_gpu_uncertainty_j=worst_j,
                         energy_gpu_active_j=active, per_gpu_energy_j=per_gpu)
    return AmplifiedEnergy(
        calls=calls,
        energy_per_call_j=energy_j / calls,
        uncertainty_per_call_j=worst_j / calls,
        uncertainty_per_call_std_j=std_j / calls,
        energy_active_per_call_j=None if active is None else active / calls,
        duration_per_call_s=duration_s / calls,
        window=total,
        windows=tuple(windows),
    )


def cooldown(
    gpus: Sequence[GPUDevice],
    *,
    max_wait_s: float,
    target_temp_c: float | None = None,
    within_c: float | None = None,
    idle_temp_c: float | None = None,
    min_wait_s: float = 0.0,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Any]:
    """Wait between trials until every GPU is cool enough, so trials start from the same state.

    Criterion: hottest GPU <= target_temp_c if given; else <= idle_temp_c + within_c if both are
    given; else simply wait max_wait_s. Always waits at least min_wait_s, never more than
    max_wait_s. Returns start/end temperatures (per GPU), the time waited, and whether the
    criterion was met.
    """
    def temps() -> list[float]:
        out = []
        for g in gpus:
            try:
                out.append(float(g.temperature_c()))
            except Exception:
                out.append(math.nan)
        return out

    if target_temp_c is not None:
        threshold: float | None = target_temp_c
        criterion = f"temperature <= {target_temp_c} C"
    elif within_c is not None and idle_temp_c is not None:
        threshold = idle_temp_c + within_c
        criterion = f"temperature <= idle {idle_temp_c} C + {within_c} C"
    else:
        threshold = None
        criterion = f"fixed wait {max_wait_s} s"
    if not gpus:
        return {"start_temperature_c": [], "end_temperature_c": [], "waited_s": 0.0, "reached": False,
                "criterion": criterion, "not_measured_reason": "no NVIDIA GPU: nothing to cool down"}
    start_ns = clock_ns()
    start = temps()

    def elapsed() -> float:
        return (clock_ns() - start_ns) / NS_PER_S

    def cool(ts: list[float]) -> bool:
        return threshold is not None and all(not math.isnan(t) and t <= threshold for t in ts)

    current = start
    while True:
        e = elapsed()
        if e >= min_wait_s and cool(current):
            reached = True
            break
        if e >= max_wait_s:
            reached = threshold is None
            break
        sleep(min(poll_s, max(max_wait_s - e, 0.0)) if e >= min_wait_s else min(poll_s, min_wait_s - e))
        current = temps()
    return {"start_temperature_c": start, "end_temperature_c": current, "waited_s": elapsed(),
            "reached": reached, "criterion": criterion}
