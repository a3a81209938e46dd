"""How well the two phase methods agree, per trial and overall (markdown).

For each trial measured with phases, one table per phase (prefill, decode): each method's energy
per generation ± 1 sigma, that sigma in % of the energy against the ±5% target, the duration the
energy refers to and the mean power it implies; then the relative difference (boundary vs
subtraction), the difference in units of the combined 1-sigma uncertainty, and whether the two
methods are within 5% of each other. Tables render stored figures.

`delay_sensitivity` asks a what-if of a stored boundary fit, from its runs' marks alone: had the
counter reported energy `delay_s` late, which true segment powers would have given the powers the
fit found (which assumes no delay), and what residual would the delay alone have left?
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from wattlens.core.results import TrialResult
from wattlens.meter.phases import SEGMENTS, RunMarks, fit_phase_powers

TARGET_PCT = 5.0
METHODS = ("subtraction", "boundary")


def _f(x: float | None, nd: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _compare(sm: dict, phase: str) -> tuple[float | None, float | None]:
    a, b = sm.get(f"{phase}_energy_gpu_j_subtraction"), sm.get(f"{phase}_energy_gpu_j_boundary")
    if a is None or b is None or a == 0:
        return None, None
    sa = sm.get(f"{phase}_energy_gpu_uncertainty_j_subtraction") or 0.0
    sb = sm.get(f"{phase}_energy_gpu_uncertainty_j_boundary") or 0.0
    sigma = math.hypot(sa, sb)
    return 100.0 * (b - a) / a, (abs(b - a) / sigma if sigma > 0 else None)


def _sigma_pct(sm: dict, phase: str, method: str) -> float | None:
    e, u = sm.get(f"{phase}_energy_gpu_j_{method}"), sm.get(f"{phase}_energy_gpu_uncertainty_j_{method}")
    return None if e is None or u is None or e == 0 else 100.0 * u / abs(e)


def _meets_target(sm: dict, phase: str, method: str) -> bool:
    pct = _sigma_pct(sm, phase, method)
    return pct is not None and pct <= TARGET_PCT


def _method_cells(sm: dict, phase: str, method: str) -> list[str]:
    """energy ± sigma | sigma % against the target | duration ms | mean W."""
    e, u = sm.get(f"{phase}_energy_gpu_j_{method}"), sm.get(f"{phase}_energy_gpu_uncertainty_j_{method}")
    t = sm.get(f"{phase}_time_s_{method}")
    pct = _sigma_pct(sm, phase, method)
    pct_cell = "—" if pct is None else f"{pct:.2f} {'✓' if pct <= TARGET_PCT else '✗'}"
    watts = None if e is None or not t else e / t
    return ["—" if e is None else f"{_f(e)} ± {_f(u)}", pct_cell,
            _f(None if t is None else 1e3 * t, 1), _f(watts, 0)]


def _phase_table(rows: Sequence[TrialResult], phase: str) -> list[str]:
    reps_time = "TTFT ms (reps)" if phase == "prefill" else "E2E − TTFT ms (reps)"
    head = ["model", "mode", "ctx", "gen", reps_time]
    for m in METHODS:
        head += [f"{m} J", "σ % (≤5)", "ms", "W"]
    head += ["diff %", "diff/σ", "within 5%", "flags"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in rows:
        sm, s = t.summary, t.spec
        reps = sm.get(f"{phase}_time_s")
        cells = [s.model, s.mode, str(s.ctx_tokens), str(s.gen_tokens),
                 _f(None if reps is None else 1e3 * reps, 1)]
        for m in METHODS:
            cells += _method_cells(sm, phase, m)
        rel, nsig = _compare(sm, phase)
        cells += [_f(rel), _f(nsig, 1), "—" if rel is None else ("yes" if abs(rel) <= TARGET_PCT else "no")]
        cells.append(", ".join(f"{m}:{f}" for m in METHODS for f in sm.get(f"phase_flags_{m}") or []))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _whole_generation_table(rows: Sequence[TrialResult]) -> list[str]:
    """Prefill + decode per method next to the measured repetitions (energy median ± worst case)."""
    head = ["model", "mode", "ctx", "gen", "reps: E2E ms", "reps: J", "reps: W"]
    for m in METHODS:
        head += [f"{m} J", "ms", "W"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in rows:
        sm, s = t.summary, t.spec
        e2e, e = sm.get("e2e_s_median"), sm.get("energy_gpu_j_median")
        cells = [s.model, s.mode, str(s.ctx_tokens), str(s.gen_tokens),
                 _f(None if e2e is None else 1e3 * e2e, 1),
                 "—" if e is None else f"{_f(e, 1)} ± {_f(sm.get('energy_gpu_j_uncertainty'), 1)}",
                 _f(sm.get("average_power_w"), 0)]
        for m in METHODS:
            parts = [(sm.get(f"{p}_energy_gpu_j_{m}"), sm.get(f"{p}_time_s_{m}"))
                     for p in ("prefill", "decode")]
            if any(x is None for pair in parts for x in pair):
                cells += ["—", "—", "—"]
                continue
            e_m, t_m = sum(x for x, _ in parts), sum(y for _, y in parts)
            cells += [_f(e_m, 1), _f(1e3 * t_m, 1), _f(e_m / t_m if t_m else None, 0)]
        out.append("| " + " | ".join(cells) + " |")
    return out


def phase_agreement_markdown(trials: Sequence[TrialResult]) -> str:
    rows = [t for t in trials if t.status == "ok" and "phase_methods" in t.summary]
    rows.sort(key=lambda t: (t.spec.model, t.spec.mode, t.spec.ctx_tokens, t.spec.gen_tokens))
    out: list[str] = []
    for phase in ("prefill", "decode"):
        out += [f"### {phase.capitalize()}", ""] + _phase_table(rows, phase) + [""]
    out += ["### Prefill + decode (one generation)", ""] + _whole_generation_table(rows) + [""]
    for phase in ("prefill", "decode"):
        ds = [d for d in (_compare(t.summary, phase) for t in rows) if d[0] is not None]
        if not ds:
            out.append(f"{phase}: no trial has both methods measured.")
            continue
        worst = max(abs(r) for r, _ in ds)
        within_sigma = sum(1 for _, n in ds if n is not None and n <= 2.0)
        within_target = sum(1 for r, _ in ds if abs(r) <= TARGET_PCT)
        sigma_ok = {m: sum(1 for t in rows if _meets_target(t.summary, phase, m)) for m in METHODS}
        out.append(f"{phase}: methods differ by at most {worst:.2f}% (boundary vs subtraction); "
                   f"{within_sigma} of {len(ds)} trials agree within 2 combined sigma, "
                   f"{within_target} of {len(ds)} within {TARGET_PCT:g}%; 1 sigma within {TARGET_PCT:g}%: "
                   + ", ".join(f"{m} {n} of {len(rows)}" for m, n in sigma_ok.items()) + ".")
    return "\n".join(out) + "\n"


# ---- what a counter delay would do to a stored boundary fit ---------------------------------------
def _segment_power(marks: Sequence[RunMarks], powers: Sequence[float]):
    """Energy drawn up to t (J, from an arbitrary origin) with `powers` = (other, prefill, decode)."""
    spans = [(m.start_ns / 1e9, m.first_token_ns / 1e9, powers[1]) for m in marks]
    spans += [(m.first_token_ns / 1e9, m.end_ns / 1e9, powers[2]) for m in marks]
    origin = marks[0].start_ns / 1e9 - 1.0

    def drawn_until(t: float) -> float:
        e = powers[0] * (t - origin)
        for a, b, p in spans:
            e += (p - powers[0]) * max(0.0, min(b, t) - a)
        return e
    return drawn_until


def _fit_late_counter(marks: Sequence[RunMarks], powers: Sequence[float], delay_s: float, period_s: float,
                      phase_s: float) -> dict[str, Any]:
    """The no-delay fit of synthetic ticks from a counter that reports `powers`' energy `delay_s` late."""
    drawn_until = _segment_power(marks, powers)
    t, end = marks[0].start_ns / 1e9 - 0.5 + phase_s, marks[-1].end_ns / 1e9 + 3 * period_s
    ticks = []
    while t < end:
        ticks.append((t, 0.0, drawn_until(t - delay_s)))
        t += period_s
    return fit_phase_powers(ticks, marks)


def delay_sensitivity(marks_ns: Sequence[Sequence[int]], fitted_power_w: dict[str, float], delay_s: float,
                      period_s: float = 0.1, phases: int = 16) -> dict[str, Any]:
    """The true segment powers that a no-delay fit would turn into `fitted_power_w` had the counter
    reported energy `delay_s` late, averaged over `phases` tick phases; and the residual RMS (J)
    that the delay alone leaves in that fit (measured residuals below it rule the delay out)."""
    import numpy as np

    marks = [RunMarks(*m) for m in marks_ns]
    offsets = [period_s * k / phases for k in range(phases)]
    response = np.zeros((3, 3))  # fitted powers per unit of true power in each segment
    for col in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[col] = 1.0
        for off in offsets:
            fit = _fit_late_counter(marks, unit, delay_s, period_s, off)["power_w"]
            response[:, col] += [fit[s] for s in SEGMENTS]
    response /= phases
    true = np.linalg.solve(response, [fitted_power_w[s] for s in SEGMENTS])
    rms = [_fit_late_counter(marks, true, delay_s, period_s, off)["residual_rms_j"] for off in offsets]
    return {"delay_s": delay_s, "power_w": dict(zip(SEGMENTS, map(float, true))),
            "delay_only_residual_rms_j": float(np.mean(rms))}


def delay_sensitivity_markdown(trials: Sequence[TrialResult], payloads: dict[str, dict[str, Any]],
                               delays_s: Sequence[float] = (0.005, 0.010, 0.015, 0.020)) -> str:
    """Per trial with a stored boundary fit: the fit as measured, then for each assumed counter delay
    the prefill and gap ('other') powers that would have produced it and the delay-only residual."""
    head = ["ctx", "gen", "idle W", "subtraction prefill W", "fit (no delay): prefill / other W, residual J"]
    head += [f"delay {1e3 * d:g} ms: prefill / other W, residual J" for d in delays_s]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in sorted(trials, key=lambda t: (t.spec.model, t.spec.mode, t.spec.ctx_tokens, t.spec.gen_tokens)):
        payload = payloads.get(t.trial_id) or {}
        bnd = (payload.get("methods") or {}).get("boundary") or {}
        fits = (bnd.get("details") or {}).get("fits") or []
        marks = payload.get("boundary_marks_ns") or []
        if len(fits) != 1 or not marks:  # one GPU: the what-if is per counter
            continue
        window = t.repetitions[0].energy if t.repetitions else None
        period = (window.update_period_s if window else None) or 0.1
        idle = window.idle_power_w if window else None
        sm = t.summary
        e_sub, t_sub = sm.get("prefill_energy_gpu_j_subtraction"), sm.get("prefill_time_s_subtraction")
        fit = fits[0]["power_w"]
        cells = [str(t.spec.ctx_tokens), str(t.spec.gen_tokens), _f(idle, 0),
                 _f(e_sub / t_sub if e_sub is not None and t_sub else None, 0),
                 f"{fit['prefill']:.0f} / {fit['other']:.0f}, {fits[0]['residual_rms_j']:.2f}"]
        for d in delays_s:
            r = delay_sensitivity(marks, fit, d, period)
            p = r["power_w"]
            cells.append(f"{p['prefill']:.0f} / {p['other']:.0f}, {r['delay_only_residual_rms_j']:.2f}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def counter_lag_markdown(trials: Sequence[TrialResult], payloads: dict[str, dict[str, Any]]) -> str:
    """The counter-delay scan stored with boundary results (runs made with stored ticks), if any."""
    out = ["| ctx | gen | GPU | best delay ms | residual J (best / no delay) | prefill J at best delay | "
           "decode J at best delay |", "|---|---|---|---|---|---|---|"]
    n = 0
    for t in sorted(trials, key=lambda t: (t.spec.model, t.spec.mode, t.spec.ctx_tokens, t.spec.gen_tokens)):
        boundary = ((payloads.get(t.trial_id) or {}).get("methods") or {}).get("boundary") or {}
        details = boundary.get("details") or {}
        for g, lag in enumerate(details.get("counter_lag") or []):
            n += 1
            out.append(f"| {t.spec.ctx_tokens} | {t.spec.gen_tokens} | {g} | {1e3 * lag['lag_s']:.0f} | "
                       f"{lag['residual_rms_j']:.2f} / {lag['residual_rms_j_at_zero']:.2f} | "
                       f"{_f(lag['prefill_energy_gpu_j'])} | {_f(lag['decode_energy_gpu_j'])} |")
    return "\n".join(out) + "\n" if n else ""
