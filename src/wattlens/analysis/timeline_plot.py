"""Draw a stored power timeline (PNG): power, SM and memory clock, temperature, phases shaded.

Input is the 'power_timeline' artifact payload (`Timeline.to_compact()` plus `phase_marks_s`:
[start, first_token, end] per repetition, seconds from the timeline's first sample). Prefill
(start -> first token) and decode (first token -> end) are shaded on every panel.

The sampled power is NVML's power reading, which on A100/H100 is an average over a window far
longer than a prefill: on the H100 it trails the energy counter by up to about a second and smooths
every change, so a 70 ms prefill at 650 W does not show in it. The power panel can therefore carry two figures from the energy
counter, which the reading cannot give: each repetition's mean power (energy window / duration)
and a phase method's mean prefill and decode power, drawn over the spans they belong to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from wattlens.core.results import TrialResult

PREFILL_COLOUR = "#f4a261"
DECODE_COLOUR = "#8ecae6"
PREFILL_LINE = "#c0581a"
DECODE_LINE = "#1d6fa5"


def _throttle_reasons(payload: dict[str, Any]) -> list[str]:
    seen: set[str] = set()
    for per_gpu in (payload.get("throttle_reasons") or {}).values():
        for reasons in per_gpu:
            seen.update(reasons)
    return sorted(seen)


def repetition_mean_power(trial: TrialResult, t0_s: float) -> list[tuple[float, float, float, float | None]]:
    """(start_s, end_s, W, ± W worst case) per repetition from its energy window, on the timeline's
    clock (0 = t0_s)."""
    t0_ns = int(round(t0_s * 1e9))
    out = []
    for rep in trial.repetitions:
        w = rep.energy
        if w is None or w.energy_gpu_j is None or w.end_ns <= w.start_ns:
            continue
        seconds = (w.end_ns - w.start_ns) / 1e9
        unc = None if w.energy_gpu_uncertainty_j is None else w.energy_gpu_uncertainty_j / seconds
        out.append(((w.start_ns - t0_ns) / 1e9, (w.end_ns - t0_ns) / 1e9, w.energy_gpu_j / seconds, unc))
    return out


def phase_mean_power(summary: dict[str, Any],
                     method: str = "subtraction") -> tuple[str, float | None, float | None] | None:
    """(method, prefill W, decode W) from a trial's phase figures: energy / the duration it refers to."""
    def watts(phase: str) -> float | None:
        e, t = summary.get(f"{phase}_energy_gpu_j_{method}"), summary.get(f"{phase}_time_s_{method}")
        return e / t if e is not None and t else None

    pre, dec = watts("prefill"), watts("decode")
    return None if pre is None and dec is None else (method, pre, dec)


def plot_timeline(payload: dict[str, Any], out: str | Path, title: str = "", *,
                  counter_power: Sequence[tuple[float, float, float, float | None]] = (),
                  phase_power: tuple[str, float | None, float | None] | None = None) -> Path:
    """Write the PNG. `counter_power`: (start_s, end_s, W, ± W worst case or None) per repetition,
    from its energy window; `phase_power`: (method, prefill W, decode W), drawn over every prefill /
    decode span."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    t = payload.get("t_s") or []
    if not t:
        raise ValueError("the timeline has no samples")
    panels = [("power_w", "power (W)"), ("sm_clock_mhz", "SM clock (MHz)"),
              ("mem_clock_mhz", "memory clock (MHz)"), ("temperature_c", "temperature (°C)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 9), sharex=True,
                             gridspec_kw={"height_ratios": [2.2, 1, 0.7, 1]})
    gpus = payload.get("gpu_indices") or list(range(len(payload.get("power_w") or [])))
    marks = payload.get("phase_marks_s") or []
    for ax, (key, label) in zip(axes, panels):
        for g, series in zip(gpus, payload.get(key) or []):
            xs = [x for x, v in zip(t, series) if v is not None]
            ys = [v for v in series if v is not None]
            name = f"GPU {g} NVML power reading (averaged)" if key == "power_w" else f"GPU {g}"
            ax.plot(xs, ys, marker=".", markersize=2, linewidth=0.8, label=name)
        for start, first, end in marks:
            ax.axvspan(start, first, color=PREFILL_COLOUR, alpha=0.5, linewidth=0)
            ax.axvspan(first, end, color=DECODE_COLOUR, alpha=0.35, linewidth=0)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    power_ax = axes[0]
    extra: list[Any] = []
    for start, end, watts, unc in counter_power:
        power_ax.hlines(watts, start, end, colors="black", linewidth=1.6)
        if unc:
            power_ax.fill_between([start, end], watts - unc, watts + unc, color="black", alpha=0.08,
                                  linewidth=0)
    if counter_power:
        extra.append(Line2D([], [], color="black", linewidth=1.6,
                            label="repetition mean from the energy counter (band: ± worst case)"))
    if phase_power is not None:
        method, pre_w, dec_w = phase_power
        for start, first, end in marks:
            if pre_w is not None:
                power_ax.hlines(pre_w, start, first, colors=PREFILL_LINE, linestyles="--", linewidth=1.6)
            if dec_w is not None:
                power_ax.hlines(dec_w, first, end, colors=DECODE_LINE, linestyles="--", linewidth=1.2)
        extra.append(Line2D([], [], color=PREFILL_LINE, linestyle="--", label=f"prefill mean ({method})"))
        extra.append(Line2D([], [], color=DECODE_LINE, linestyle="--", label=f"decode mean ({method})"))
    throttled = sorted(int(i) for i in (payload.get("throttle_reasons") or {}))
    for i in throttled:
        power_ax.axvline(t[i], color="red", alpha=0.3, linewidth=0.8)
    handles: list[Any] = [Patch(color=PREFILL_COLOUR, alpha=0.5, label="prefill"),
                          Patch(color=DECODE_COLOUR, alpha=0.35, label="decode")]
    if throttled:
        handles.append(Line2D([], [], color="red", alpha=0.5,
                              label="throttle reason at a sample: " + ", ".join(_throttle_reasons(payload))))
    handles += power_ax.get_legend_handles_labels()[0] + extra
    top = max([v for series in payload.get("power_w") or [] for v in series if v is not None]
              + [w + (u or 0.0) for _, _, w, u in counter_power]
              + [w for w in (phase_power or (None, None, None))[1:] if w is not None] + [1.0])
    power_ax.set_ylim(0, top * 1.08)
    power_ax.legend(handles=handles, loc="lower center", ncol=3, fontsize=7.5, framealpha=0.9)
    axes[-1].set_xlabel(f"time (s) from the first sample; one sample every {payload.get('interval_s', '?')} s")
    fig.suptitle(title or "power timeline")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
