"""DVFS sweeps and phase-aware clock policies, measured per phase, reported like the study's tables.

A sweep runs each workload (one model at one batch size) at each locked SM clock, `repeats` times,
with the prefill and the decode of every request in their own energy window and clock window
(requested vs achieved). A phase-aware policy locks one clock for prefill and switches to another
at the first output token; the switch (lock + read-back) is inside the decode window, so its cost
is paid in the measured latency.

Workloads are injected (`PhaseWorkload`): the CLI builds them from the HF backend, tests from
`FakePhaseWorkload`, so this module never imports a backend. `run_sweep` opens the clock-control
capability first and therefore refuses, before touching anything, when the user did not opt in.

Report shapes (see seeds/003, Tables XI, XII, XVI):
- `table_xi`: per (model, batch) at the lowest clock vs the baseline clock: energy reduction,
  end-to-end / prefill / decode latency change, prefill and decode share of time at baseline.
- `table_xii`: per (model, batch) the clock minimising EDP (energy x latency), with its energy
  reduction and latency change vs baseline.
- `table_xvi`: per model at batch 1: baseline energy per request, phase-aware policy energy,
  savings, latency change.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from wattlens.core.errors import BadInput
from wattlens.dvfs.control import ClockController, ClockRequest, open_clock_control


class PhaseWorkload(Protocol):
    """One model at one batch size; `run_request` runs one request, calling `on_first_token()`
    exactly once when prefill is done (first output token ready), and returns the output tokens."""

    model: str
    batch_size: int

    def run_request(self, on_first_token: Callable[[], None]) -> int: ...


@dataclass
class DvfsPoint:
    """One request at one clock policy: per-phase time (s), energy (J) and achieved clocks (MHz)."""

    model: str
    batch_size: int
    policy: str  # 'uniform' or 'phase-aware'
    prefill_clock_mhz: int
    decode_clock_mhz: int
    repeat: int
    prefill_s: float
    decode_s: float
    prefill_j: float | None
    decode_j: float | None
    output_tokens: int
    achieved_prefill_sm_clock_mhz: float | None = None
    achieved_decode_sm_clock_mhz: float | None = None
    energy_flags: list[str] = field(default_factory=list)
    clock_windows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latency_s(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def energy_j(self) -> float | None:
        if self.prefill_j is None or self.decode_j is None:
            return None
        return self.prefill_j + self.decode_j

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_s"] = self.latency_s
        d["energy_j"] = self.energy_j
        return d


@dataclass(frozen=True)
class SweepPlan:
    clocks_mhz: tuple[int, ...]
    repeats: int = 3
    phase_policies: tuple[tuple[int, int], ...] = ()  # (prefill_clock_mhz, decode_clock_mhz)

    def __post_init__(self) -> None:
        if not self.clocks_mhz:
            raise BadInput("a DVFS sweep needs at least one SM clock")
        if self.repeats < 1:
            raise BadInput("repeats must be >= 1")


def _one_request(wl: PhaseWorkload, meter: Any, cc: ClockController, policy: str, f_pre: int, f_dec: int,
                 repeat: int) -> DvfsPoint:
    state: dict[str, Any] = {}
    pre_e = meter.window("prefill")
    pre_c = cc.window("prefill")
    state["pre_w"] = pre_e.__enter__()
    state["pre_cw"] = pre_c.__enter__()

    def first_token() -> None:
        if "dec_w" in state:
            raise RuntimeError("on_first_token called twice")
        pre_c.__exit__(None, None, None)
        pre_e.__exit__(None, None, None)
        dec_e, dec_c = meter.window("decode"), cc.window("decode")
        state["dec_e"], state["dec_c"] = dec_e, dec_c
        state["dec_w"] = dec_e.__enter__()
        if f_dec != f_pre:
            cc.apply(ClockRequest(sm_clock_mhz=f_dec), settle_s=0.0)
        state["dec_cw"] = dec_c.__enter__()

    tokens = wl.run_request(first_token)
    if "dec_w" not in state:
        raise RuntimeError(f"workload {wl.model} never reported its first token")
    state["dec_c"].__exit__(None, None, None)
    state["dec_e"].__exit__(None, None, None)
    pw, dw = state["pre_w"].result, state["dec_w"].result
    flags = sorted(set(pw.flags) | set(dw.flags))
    return DvfsPoint(wl.model, wl.batch_size, policy, f_pre, f_dec, repeat, pw.duration_s, dw.duration_s,
                     pw.energy_gpu_j, dw.energy_gpu_j, int(tokens), state["pre_cw"].achieved_sm_clock_mhz,
                     state["dec_cw"].achieved_sm_clock_mhz, flags,
                     [state["pre_cw"].to_dict(), state["dec_cw"].to_dict()])


def run_sweep(gpu: Any, meter: Any, workloads: Iterable[PhaseWorkload], plan: SweepPlan, *,
              allow_clock_control: bool = False, controller_kwargs: dict[str, Any] | None = None,
              control: Any = None, on_point: Callable[[DvfsPoint], None] | None = None) -> list[DvfsPoint]:
    """Every workload x clock (uniform), then every phase policy; clocks restored at the end.

    Raises ClockControlRefused before touching anything unless `allow_clock_control` is True.
    """
    ctl = control if control is not None and allow_clock_control else open_clock_control(
        gpu, allow_clock_control=allow_clock_control)
    points: list[DvfsPoint] = []
    wls = list(workloads)
    with ClockController(gpu, ctl, **(controller_kwargs or {})) as cc:
        for wl in wls:
            runs = [("uniform", f, f) for f in plan.clocks_mhz]
            runs += [("phase-aware", fp, fd) for fp, fd in plan.phase_policies]
            for policy, f_pre, f_dec in runs:
                for r in range(plan.repeats):
                    cc.apply(ClockRequest(sm_clock_mhz=f_pre), settle_s=None if r == 0 else 0.0)
                    pt = _one_request(wl, meter, cc, policy, f_pre, f_dec, r)
                    points.append(pt)
                    if on_point:
                        on_point(pt)
    return points


# ---- aggregation and the study's table shapes ----------------------------------------------------
@dataclass
class PolicyStats:
    model: str
    batch_size: int
    policy: str
    prefill_clock_mhz: int
    decode_clock_mhz: int
    n: int
    prefill_s: float
    decode_s: float
    energy_j: float | None

    @property
    def latency_s(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def edp_js(self) -> float | None:
        return None if self.energy_j is None else self.energy_j * self.latency_s


def aggregate(points: Sequence[DvfsPoint]) -> list[PolicyStats]:
    """Mean over repeats per (model, batch, policy, prefill clock, decode clock)."""
    groups: dict[tuple, list[DvfsPoint]] = {}
    for p in points:
        groups.setdefault((p.model, p.batch_size, p.policy, p.prefill_clock_mhz, p.decode_clock_mhz), []).append(p)
    out = []
    for (m, b, pol, fp, fd), ps in groups.items():
        es = [p.energy_j for p in ps]
        e = None if any(x is None for x in es) else statistics.fmean(es)  # type: ignore[arg-type]
        out.append(PolicyStats(m, b, pol, fp, fd, len(ps), statistics.fmean(p.prefill_s for p in ps),
                               statistics.fmean(p.decode_s for p in ps), e))
    return out


def _pct(new: float, old: float) -> float:
    return 100.0 * (new - old) / old if old else math.nan


def _uniform(stats: Sequence[PolicyStats]) -> dict[tuple[str, int], dict[int, PolicyStats]]:
    by: dict[tuple[str, int], dict[int, PolicyStats]] = {}
    for s in stats:
        if s.policy == "uniform":
            by.setdefault((s.model, s.batch_size), {})[s.prefill_clock_mhz] = s
    return by


def table_xi(stats: Sequence[PolicyStats], low_mhz: int | None = None, base_mhz: int | None = None) -> list[dict[str, Any]]:
    """Lowest (or `low_mhz`) vs highest (or `base_mhz`) uniform clock per (model, batch)."""
    rows = []
    for (m, b), by_f in sorted(_uniform(stats).items()):
        base = by_f.get(base_mhz if base_mhz else max(by_f))
        low = by_f.get(low_mhz if low_mhz else min(by_f))
        if base is None or low is None or base.energy_j is None or low.energy_j is None:
            continue
        rows.append({"model": m, "batch_size": b, "base_mhz": base.prefill_clock_mhz, "low_mhz": low.prefill_clock_mhz,
                     "energy_reduction_pct": -_pct(low.energy_j, base.energy_j),
                     "latency_change_pct": _pct(low.latency_s, base.latency_s),
                     "prefill_change_pct": _pct(low.prefill_s, base.prefill_s),
                     "decode_change_pct": _pct(low.decode_s, base.decode_s),
                     "prefill_share_pct": 100 * base.prefill_s / base.latency_s,
                     "decode_share_pct": 100 * base.decode_s / base.latency_s})
    return rows


def table_xii(stats: Sequence[PolicyStats], base_mhz: int | None = None) -> list[dict[str, Any]]:
    """EDP-optimal uniform clock per (model, batch), with energy reduction and latency change vs base."""
    rows = []
    for (m, b), by_f in sorted(_uniform(stats).items()):
        base = by_f.get(base_mhz if base_mhz else max(by_f))
        cands = [s for s in by_f.values() if s.edp_js is not None]
        if base is None or base.energy_j is None or not cands:
            continue
        best = min(cands, key=lambda s: s.edp_js)  # type: ignore[arg-type, return-value]
        rows.append({"model": m, "batch_size": b, "edp_optimal_mhz": best.prefill_clock_mhz,
                     "energy_reduction_pct": -_pct(best.energy_j, base.energy_j),  # type: ignore[arg-type]
                     "latency_change_pct": _pct(best.latency_s, base.latency_s),
                     "edp_reduction_pct": -_pct(best.edp_js, base.edp_js)})  # type: ignore[arg-type]
    return rows


def table_xvi(stats: Sequence[PolicyStats], base_mhz: int | None = None) -> list[dict[str, Any]]:
    """Phase-aware policies vs the uniform baseline clock, per (model, batch)."""
    uni = _uniform(stats)
    rows = []
    for s in sorted(stats, key=lambda s: (s.model, s.batch_size, -s.prefill_clock_mhz, -s.decode_clock_mhz)):
        if s.policy != "phase-aware" or s.energy_j is None:
            continue
        by_f = uni.get((s.model, s.batch_size), {})
        base = by_f.get(base_mhz if base_mhz else (max(by_f) if by_f else -1))
        if base is None or base.energy_j is None:
            continue
        rows.append({"model": s.model, "batch_size": s.batch_size, "prefill_mhz": s.prefill_clock_mhz,
                     "decode_mhz": s.decode_clock_mhz, "baseline_j": base.energy_j, "policy_j": s.energy_j,
                     "savings_pct": -_pct(s.energy_j, base.energy_j),
                     "latency_change_pct": _pct(s.latency_s, base.latency_s)})
    return rows


def render_markdown(stats: Sequence[PolicyStats]) -> str:
    """The three tables as markdown."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:+.1f}" if not math.isnan(v) else "n/a"
        return str(v)

    def table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> list[str]:
        if not rows:
            return ["(no rows)", ""]
        out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            out.append("| " + " | ".join(fmt(r[k]) if k.endswith("pct") else
                                         (f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])) for k, _ in cols) + " |")
        return out + [""]

    lines = ["## Lowest vs baseline clock (shape of Table XI)", ""]
    lines += table(table_xi(stats), [("model", "model"), ("batch_size", "B"), ("low_mhz", "low MHz"),
                                     ("energy_reduction_pct", "E down %"), ("latency_change_pct", "L change %"),
                                     ("prefill_change_pct", "Pre change %"), ("decode_change_pct", "Dec change %"),
                                     ("prefill_share_pct", "Pre share %"), ("decode_share_pct", "Dec share %")])
    lines += ["## EDP-optimal clock (shape of Table XII)", ""]
    lines += table(table_xii(stats), [("model", "model"), ("batch_size", "B"), ("edp_optimal_mhz", "MHz"),
                                      ("energy_reduction_pct", "E down %"), ("latency_change_pct", "L change %")])
    lines += ["## Phase-aware policy (shape of Table XVI)", ""]
    lines += table(table_xvi(stats), [("model", "model"), ("batch_size", "B"), ("prefill_mhz", "prefill MHz"),
                                      ("decode_mhz", "decode MHz"), ("baseline_j", "baseline J"),
                                      ("policy_j", "policy J"), ("savings_pct", "savings %"),
                                      ("latency_change_pct", "L change %")])
    return "\n".join(lines)


# ---- a scripted workload for tests and `wattlens dvfs sweep --fake` --------------------------------
@dataclass
class FakePhaseWorkload:
    """A request on a FakeGPU whose time and power follow the SM clock the GPU reports.

    Per phase: time = max(host_s, mem_s + compute_s * f_ref / f) (host work overlaps GPU work)
    and power = static_w + dynamic_w * (f / f_ref)^3 * busy share (a simple f*V^2 with V ~ f).
    """

    gpu: Any
    model: str = "fake-8b"
    batch_size: int = 1
    f_ref_mhz: float = 1980.0
    prefill_host_s: float = 0.0
    prefill_mem_s: float = 0.005
    prefill_compute_s: float = 0.045
    decode_steps: int = 63
    step_host_s: float = 0.0
    step_mem_s: float = 0.005
    step_compute_s: float = 0.002
    static_w: float = 120.0
    dynamic_w: float = 480.0

    def _phase(self, host_s: float, mem_s: float, compute_s: float) -> None:
        f = float(self.gpu.sm_clock_mhz())
        gpu_s = mem_s + compute_s * self.f_ref_mhz / f
        t = max(host_s, gpu_s)
        watts = self.static_w + self.dynamic_w * (f / self.f_ref_mhz) ** 3 * (gpu_s / t)
        self.gpu.busy(t, watts)

    def run_request(self, on_first_token: Callable[[], None]) -> int:
        self._phase(self.prefill_host_s, self.prefill_mem_s, self.prefill_compute_s)
        on_first_token()
        for _ in range(self.decode_steps):
            self._phase(self.step_host_s, self.step_mem_s, self.step_compute_s)
        return (self.decode_steps + 1) * self.batch_size
