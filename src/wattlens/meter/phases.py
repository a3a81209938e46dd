"""Prefill / decode energy and time of one generation, by two independent methods.

The counter moves every P (~100 ms on H100) while a 2k-token prefill of an 8B model lasts ~70 ms,
so the boundary between prefill and decode can never be read directly. Two ways around it:

**subtraction** — measure a prefill-only pass (the same prompt, one output token) and the full
generation, each amplified by back-to-back repetition with start times spread over the update
cycle (`EnergyMeter.measure_amplified`); decode = full - prefill. Uncertainty: each amplified
figure's worst case is sum over sub-windows of P*p divided by the calls, its expected spread
(1 sigma) that with std P*p/sqrt(6) per sub-window; decode's combines both (worst cases add,
sigmas add in quadrature).

**boundary** — run the full generation N times back to back, start times spread over the cycle
by a sleep of a different fraction of P before each run; a poller reads the counter every ~1 ms
and also at the first-token hook, so every counter tick is located in time (to half a poll step)
with the exact energy up to it. Between consecutive ticks the energy is exact; the run's marks
(start, first token, end) say how many seconds of each segment ('other', 'prefill', 'decode')
every tick interval holds. A least-squares fit of interval energy = sum of segment power x overlap
gives each phase's mean power; phase energy = power x phase time. Uncertainty: the fit's standard
error from its residuals (1 sigma), which shrinks as 1/sqrt(runs); a reading error of the tick
times shows up in the residuals. It needs the phase powers to be steady from run to run, not
within the update period, and a counter whose energy between two ticks was drawn between them on
the host clock. A counter that reports energy late moves each phase's energy into the next segment
(prefill into decode, decode into the gap): `scan_counter_lag` refits with the segments shifted by
an assumed delay and keeps the delay with the smallest residual. That scan, and the ticks
themselves, are stored with the result as a diagnostic; the headline figures stay the fit without
a delay.

Both methods give energy, time and share of prefill and decode; the names of the stored keys
carry the method (`prefill_energy_gpu_j_subtraction`, `prefill_energy_gpu_j_boundary`, ...).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from wattlens.core.units import NS_PER_S
from wattlens.hw.device import GPUDevice
from wattlens.meter.energy import DEFAULT_UPDATE_PERIOD_S, AmplifiedEnergy, EnergyMeter

SEGMENTS = ("other", "prefill", "decode")
GOLDEN = (math.sqrt(5) - 1) / 2  # low-discrepancy spread of start offsets over the update cycle


@dataclass(frozen=True)
class PhaseFigure:
    """Energy and time of one phase of one generation by one method. Energy None = not measured."""

    phase: str  # 'prefill' | 'decode'
    method: str  # 'subtraction' | 'boundary'
    energy_gpu_j: float | None
    energy_gpu_uncertainty_j: float | None  # 1 sigma
    energy_gpu_worst_j: float | None  # worst-case bound where the method has one
    energy_gpu_active_j: float | None  # idle power x phase time subtracted
    time_s: float | None
    energy_share_pct: float | None = None  # of prefill + decode energy
    time_share_pct: float | None = None


@dataclass
class PhaseEnergy:
    """Prefill and decode of one generation by one method, with what the method saw."""

    method: str
    prefill: PhaseFigure
    decode: PhaseFigure
    flags: tuple[str, ...] = ()
    not_measured_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "prefill": asdict(self.prefill), "decode": asdict(self.decode),
                "flags": list(self.flags), "not_measured_reason": self.not_measured_reason,
                "details": self.details}

    def summary_keys(self) -> dict[str, Any]:
        """Flat keys for a trial summary: the method's name is the suffix of every key."""
        m = self.method
        out: dict[str, Any] = {}
        for f in (self.prefill, self.decode):
            p = f.phase
            out[f"{p}_energy_gpu_j_{m}"] = f.energy_gpu_j
            out[f"{p}_energy_gpu_uncertainty_j_{m}"] = f.energy_gpu_uncertainty_j
            out[f"{p}_energy_gpu_worst_j_{m}"] = f.energy_gpu_worst_j
            out[f"{p}_energy_gpu_active_j_{m}"] = f.energy_gpu_active_j
            out[f"{p}_time_s_{m}"] = f.time_s
            out[f"{p}_share_pct_{m}"] = f.energy_share_pct
            out[f"{p}_time_share_pct_{m}"] = f.time_share_pct
        out[f"phase_flags_{m}"] = list(self.flags)
        if self.not_measured_reason:
            out[f"phase_not_measured_reason_{m}"] = self.not_measured_reason
        return out


def _pct(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    if a is None or b is None or a + b == 0:
        return None, None
    return 100.0 * a / (a + b), 100.0 * b / (a + b)


def _with_shares(method: str, pre: dict[str, Any], dec: dict[str, Any]) -> tuple[PhaseFigure, PhaseFigure]:
    e_pre, e_dec = _pct(pre["energy_gpu_j"], dec["energy_gpu_j"])
    t_pre, t_dec = _pct(pre["time_s"], dec["time_s"])
    return (PhaseFigure("prefill", method, energy_share_pct=e_pre, time_share_pct=t_pre, **pre),
            PhaseFigure("decode", method, energy_share_pct=e_dec, time_share_pct=t_dec, **dec))


def _empty(method: str, reason: str, flags: Sequence[str] = (), **details: Any) -> PhaseEnergy:
    blank = dict(energy_gpu_j=None, energy_gpu_uncertainty_j=None, energy_gpu_worst_j=None,
                 energy_gpu_active_j=None, time_s=None)
    pre, dec = _with_shares(method, dict(blank), dict(blank))
    return PhaseEnergy(method, pre, dec, tuple(flags), reason, dict(details))


# ---- (a) subtraction ---------------------------------------------------------------------------
def phases_by_subtraction(meter: EnergyMeter, prefill_fn: Callable[[], None], full_fn: Callable[[], None], *,
                          min_updates: int = 40, phases: int = 4) -> PhaseEnergy:
    """Prefill = amplified prefill-only pass; decode = amplified full generation minus prefill."""
    pre = meter.measure_amplified(prefill_fn, min_updates=min_updates, phases=phases, name="prefill_only")
    full = meter.measure_amplified(full_fn, min_updates=min_updates, phases=phases, name="full_generation")
    return combine_subtraction(pre, full)


def combine_subtraction(pre: AmplifiedEnergy, full: AmplifiedEnergy) -> PhaseEnergy:
    flags = tuple(dict.fromkeys(pre.window.flags + full.window.flags))
    details = {"prefill_only_calls": pre.calls, "full_calls": full.calls,
               "prefill_only_energy_per_call_j": pre.energy_per_call_j,
               "full_energy_per_call_j": full.energy_per_call_j,
               "full_time_per_call_s": full.duration_per_call_s,
               "full_uncertainty_per_call_j": full.uncertainty_per_call_std_j}
    reason = pre.not_measured_reason or full.not_measured_reason
    if reason or pre.energy_per_call_j is None or full.energy_per_call_j is None:
        return _empty("subtraction", reason or "not measured", flags, **details)
    t_pre = pre.duration_per_call_s
    t_dec = full.duration_per_call_s - t_pre
    e_dec = full.energy_per_call_j - pre.energy_per_call_j
    sd_pre = pre.uncertainty_per_call_std_j or 0.0
    sd_full = full.uncertainty_per_call_std_j or 0.0
    act_dec = (None if full.energy_active_per_call_j is None or pre.energy_active_per_call_j is None
               else full.energy_active_per_call_j - pre.energy_active_per_call_j)
    p, d = _with_shares(
        "subtraction",
        dict(energy_gpu_j=pre.energy_per_call_j, energy_gpu_uncertainty_j=sd_pre,
             energy_gpu_worst_j=pre.uncertainty_per_call_j, energy_gpu_active_j=pre.energy_active_per_call_j,
             time_s=t_pre),
        dict(energy_gpu_j=e_dec, energy_gpu_uncertainty_j=math.hypot(sd_pre, sd_full),
             energy_gpu_worst_j=(pre.uncertainty_per_call_j or 0.0) + (full.uncertainty_per_call_j or 0.0),
             energy_gpu_active_j=act_dec, time_s=t_dec))
    extra = ("decode_time_negative",) if t_dec <= 0 else ()
    return PhaseEnergy("subtraction", p, d, flags + extra, None, details)


# ---- (b) in-run boundary -----------------------------------------------------------------------
class CounterPoller:
    """Reads every GPU's energy counter every `poll_s` on a thread (or by hand: `sample_once`).

    Keeps only the reads around a change (the last unchanged read and the first changed one), so a
    long pass stays small. `reads[g]` is a list of (t_ns, energy_mj).
    """

    def __init__(self, gpus: Sequence[GPUDevice], poll_s: float = 0.001,
                 clock_ns: Callable[[], int] = time.perf_counter_ns) -> None:
        self.gpus = list(gpus)
        self.poll_s = poll_s
        self.clock_ns = clock_ns
        self.reads: list[list[tuple[int, int]]] = [[] for _ in self.gpus]
        self._pending: list[tuple[int, int] | None] = [None for _ in self.gpus]  # last unchanged read
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> None:
        with self._lock:
            for i, g in enumerate(self.gpus):
                t = self.clock_ns()
                try:
                    e = int(g.energy_mj())
                except Exception:
                    self.errors += 1
                    continue
                trace = self.reads[i]
                if not trace:
                    trace.append((t, e))
                elif e == trace[-1][1]:
                    self._pending[i] = (t, e)
                else:
                    if self._pending[i] is not None:
                        trace.append(self._pending[i])  # type: ignore[arg-type]
                    trace.append((t, e))
                    self._pending[i] = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.poll_s)

    def start(self) -> "CounterPoller":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wattlens-counter-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=1.0)
            self._thread = None
        self.sample_once()

    def ticks(self, gpu: int = 0) -> list[tuple[float, float, float]]:
        """(tick_time_s, tick_time_halfwidth_s, energy_j) at every counter move of one GPU."""
        with self._lock:
            trace = list(self.reads[gpu])
        out = []
        for (t0, e0), (t1, e1) in zip(trace, trace[1:]):
            if e1 != e0:
                out.append(((t0 + t1) / 2 / NS_PER_S, (t1 - t0) / 2 / NS_PER_S, e1 / 1000.0))
        return out


@dataclass(frozen=True)
class RunMarks:
    """One generation on the shared clock: start, first token (end of prefill), end (ns)."""

    start_ns: int
    first_token_ns: int
    end_ns: int


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def fit_phase_powers(ticks: Sequence[tuple[float, float, float]], marks: Sequence[RunMarks],
                     lag_s: float = 0.0) -> dict[str, Any]:
    """Least-squares segment powers (W) from tick-to-tick energies and the runs' phase marks.

    Only tick intervals that overlap a run or touch one are used. `lag_s` assumes the counter
    reports energy that long after it was drawn: the interval between ticks ta and tb then holds
    the energy drawn in [ta - lag_s, tb - lag_s]. Returns powers, their covariance (W^2), the
    residual RMS (J) and the number of intervals; raises ValueError if the design cannot separate
    the segments.
    """
    import numpy as np

    if not marks:
        raise ValueError("no runs")
    segs: list[tuple[float, float, int]] = []  # (t0_s, t1_s, column)
    prev_end = None
    for m in marks:
        s, f, e = m.start_ns / NS_PER_S, m.first_token_ns / NS_PER_S, m.end_ns / NS_PER_S
        if prev_end is not None and s > prev_end:
            segs.append((prev_end, s, 0))
        segs.append((s, f, 1))
        segs.append((f, e, 2))
        prev_end = e
    lo = marks[0].start_ns / NS_PER_S
    hi = marks[-1].end_ns / NS_PER_S
    rows, ys = [], []
    for (ta, _, ea), (tb, _, eb) in zip(ticks, ticks[1:]):
        ta, tb = ta - lag_s, tb - lag_s
        if tb <= lo or ta >= hi:
            continue
        row = [0.0, 0.0, 0.0]
        inside = 0.0
        for s0, s1, col in segs:
            ov = _overlap(ta, tb, s0, s1)
            row[col] += ov
            inside += ov
        row[0] += (tb - ta) - inside  # before the first run / after the last: 'other'
        rows.append(row)
        ys.append(eb - ea)
    X = np.asarray(rows, dtype=float)
    y = np.asarray(ys, dtype=float)
    if X.shape[0] < 4 or np.linalg.matrix_rank(X, tol=1e-6) < 3:
        raise ValueError(f"{X.shape[0]} tick intervals cannot separate prefill, decode and the gaps")
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = max(X.shape[0] - 3, 1)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(X.T @ X)
    return {"power_w": dict(zip(SEGMENTS, map(float, coef))), "cov_w2": cov.tolist(),
            "residual_rms_j": math.sqrt(s2), "intervals": int(X.shape[0])}


LAG_SCAN_S = tuple(k / 1000 for k in range(-20, 51))  # assumed counter delays: -20 ms to +50 ms


def scan_counter_lag(ticks: Sequence[tuple[float, float, float]], marks: Sequence[RunMarks],
                     lags_s: Sequence[float] = LAG_SCAN_S) -> dict[str, Any]:
    """The segment fit for every assumed counter delay; the one with the smallest residual wins.

    With the right delay the model is exact and only read noise is left; a wrong one misfits every
    interval that holds a phase change, so the residual has its minimum near the true delay.
    Returns {"lag_s", "fit" (fit_phase_powers at that delay), "residual_rms_j_at_zero",
    "residual_rms_j_by_lag"}; raises ValueError if no delay gives a fit.
    """
    fits = {}
    for lag in lags_s:
        try:
            fits[lag] = fit_phase_powers(ticks, marks, lag)
        except ValueError:
            continue
    if not fits:
        raise ValueError("no assumed counter delay gives a fit")
    best = min(fits, key=lambda lag: fits[lag]["residual_rms_j"])
    zero = fits.get(0.0) or fit_phase_powers(ticks, marks)
    return {"lag_s": best, "fit": fits[best], "residual_rms_j_at_zero": zero["residual_rms_j"],
            "residual_rms_j_by_lag": {f"{lag:.3f}": round(f["residual_rms_j"], 4) for lag, f in fits.items()}}


def compact_ticks(ticks: Sequence[tuple[float, float, float]], t0_s: float) -> list[list[float]]:
    """Ticks for storage: [time from t0_s (s), time half-width (s), energy since the first tick (J)]."""
    e0 = ticks[0][2] if ticks else 0.0
    return [[round(t - t0_s, 6), round(h, 6), round(e - e0, 3)] for t, h, e in ticks]


def phases_from_boundary(poller: CounterPoller, marks: Sequence[RunMarks],
                         idle_power_w: float | None = None) -> PhaseEnergy:
    """Phase energies per generation from a poller's ticks and the runs' marks (summed over GPUs)."""
    if not marks:
        return _empty("boundary", "no runs were made")
    t_pre = sum((m.first_token_ns - m.start_ns) for m in marks) / len(marks) / NS_PER_S
    t_dec = sum((m.end_ns - m.first_token_ns) for m in marks) / len(marks) / NS_PER_S
    if not poller.gpus:
        return _empty("boundary", "no NVIDIA GPU: nothing to poll")
    e_pre = e_dec = 0.0
    var_pre = var_dec = 0.0
    fits, lags, stored_ticks = [], [], []
    flags: list[str] = []
    t0_s = marks[0].start_ns / NS_PER_S
    for gi in range(len(poller.gpus)):
        ticks = poller.ticks(gi)
        if any(b[2] < a[2] for a, b in zip(ticks, ticks[1:])):
            return _empty("boundary", f"energy counter went backwards on GPU {poller.gpus[gi].index}",
                          ["counter_backwards"])
        try:
            fit = fit_phase_powers(ticks, marks)
        except ValueError as e:
            return _empty("boundary", f"GPU {poller.gpus[gi].index}: {e}", ["not_identifiable"], ticks=len(ticks))
        p = fit["power_w"]
        cov = fit["cov_w2"]
        e_pre += p["prefill"] * t_pre
        e_dec += p["decode"] * t_dec
        var_pre += cov[1][1] * t_pre ** 2
        var_dec += cov[2][2] * t_dec ** 2
        fits.append(fit)
        lags.append(_lag_diagnostic(scan_counter_lag(ticks, marks), t_pre, t_dec))
        stored_ticks.append(compact_ticks(ticks, t0_s))
    halfwidths = [h for gi in range(len(poller.gpus)) for _, h, _ in poller.ticks(gi)]
    details = {"runs": len(marks), "fits": fits, "poll_s": poller.poll_s,
               "max_tick_time_halfwidth_s": max(halfwidths) if halfwidths else None,
               "read_errors": poller.errors, "counter_lag": lags,
               "ticks_columns": ["t_s from the first run's start", "half-width s",
                                 "energy J since the first tick"],
               "ticks": stored_ticks}
    act = (lambda e, t: None if idle_power_w is None else e - idle_power_w * t)
    pre, dec = _with_shares(
        "boundary",
        dict(energy_gpu_j=e_pre, energy_gpu_uncertainty_j=math.sqrt(var_pre), energy_gpu_worst_j=None,
             energy_gpu_active_j=act(e_pre, t_pre), time_s=t_pre),
        dict(energy_gpu_j=e_dec, energy_gpu_uncertainty_j=math.sqrt(var_dec), energy_gpu_worst_j=None,
             energy_gpu_active_j=act(e_dec, t_dec), time_s=t_dec))
    if len(marks) < 4:
        flags.append("few_runs")
    return PhaseEnergy("boundary", pre, dec, tuple(flags), None, details)


def _lag_diagnostic(scan: dict[str, Any], t_pre: float, t_dec: float) -> dict[str, Any]:
    """One GPU's counter-delay scan, with the phase energies the best delay's fit gives."""
    p = scan["fit"]["power_w"]
    return {"lag_s": scan["lag_s"], "residual_rms_j": scan["fit"]["residual_rms_j"],
            "residual_rms_j_at_zero": scan["residual_rms_j_at_zero"], "power_w": p,
            "prefill_energy_gpu_j": p["prefill"] * t_pre, "decode_energy_gpu_j": p["decode"] * t_dec,
            "residual_rms_j_by_lag": scan["residual_rms_j_by_lag"]}


def spread_offset_s(j: int, period_s: float) -> float:
    """Sleep before run j: a fraction of the update period that never repeats (golden-ratio sequence)."""
    return period_s * ((j * GOLDEN) % 1.0)


def phases_by_boundary(meter: EnergyMeter, generate_fn: Callable[[Callable[[int, int], None]], None], *,
                       runs: int | None = None, min_total_s: float | None = None, poll_s: float = 0.001,
                       poller: CounterPoller | None = None, threaded: bool = True) -> tuple[PhaseEnergy, list[RunMarks]]:
    """Run `generate_fn(on_token)` back to back, start times spread over the update cycle.

    `on_token(index, t_ns)` is the backend's hook; token 0 marks the end of prefill, and the hook
    reads the counter there too. Runs until both `runs` runs (default 8) were made and
    `min_total_s` (default 40 update periods) has passed. Returns the fit and the marks.
    """
    period = meter.update_period_s or DEFAULT_UPDATE_PERIOD_S
    runs = 8 if runs is None else runs
    min_total_s = 40 * period if min_total_s is None else min_total_s
    poller = poller or CounterPoller(meter.gpus, poll_s, clock_ns=meter.clock_ns)
    marks: list[RunMarks] = []
    old_switch = sys.getswitchinterval()
    if threaded and meter.gpus:
        sys.setswitchinterval(min(old_switch, poll_s / 2))  # let the poller in during Python-heavy decode
        poller.start()
    try:
        meter.sync()
        t_begin = meter.clock_ns()
        j = 0
        while j < runs or (meter.clock_ns() - t_begin) / NS_PER_S < min_total_s:
            meter.sleep(spread_offset_s(j, period))
            first: list[int] = []

            def on_token(i: int, t_ns: int) -> None:
                if i == 0 and not first:
                    first.append(t_ns)
                    poller.sample_once()

            meter.sync()
            start = meter.clock_ns()
            generate_fn(on_token)
            meter.sync()
            end = meter.clock_ns()
            marks.append(RunMarks(start, first[0] if first else end, end))
            j += 1
            if j >= 10_000:
                break
        meter.sleep(2 * period)  # let the counter tick past the last run's end
    finally:
        if threaded and meter.gpus:
            poller.stop()
            sys.setswitchinterval(old_switch)
        else:
            poller.sample_once()
    return phases_from_boundary(poller, marks, meter.idle_power_w), marks


def predicted_direct_read_bias_j(prefill_s: float, period_s: float, prefill_w: float, before_w: float) -> float:
    """Expected error of reading the counter at start and at the first-token hook (no tick model).

    With start offsets uniform over the cycle the start read misses on average P*before_w/2, the
    hook read misses the energy since its last tick; for prefill_s < P this is
    (prefill_w*T^2/2 + prefill_w*T*(P-T) + before_w*(P-T)^2/2)/P. Returned: E[start] - E[hook] (J).
    """
    T, P = prefill_s, period_s
    if T >= P:
        miss_hook = prefill_w * P / 2
    else:
        miss_hook = (prefill_w * T * T / 2 + prefill_w * T * (P - T) + before_w * (P - T) ** 2 / 2) / P
    return before_w * P / 2 - miss_hook
