"""Draw a stored power timeline (PNG): power, SM and memory clock, temperature, phases shaded.

Input is the 'power_timeline' artifact payload (`Timeline.to_compact()` plus `phase_marks_s`:
[start, first_token, end] per repetition, seconds from the timeline's first sample). Prefill
(start -> first token) and decode (first token -> end) are shaded on every panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PREFILL_COLOUR = "#f4a261"
DECODE_COLOUR = "#8ecae6"


def plot_timeline(payload: dict[str, Any], out: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    t = payload.get("t_s") or []
    if not t:
        raise ValueError("the timeline has no samples")
    panels = [("power_w", "power (W)"), ("sm_clock_mhz", "SM clock (MHz)"),
              ("mem_clock_mhz", "memory clock (MHz)"), ("temperature_c", "temperature (°C)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 8), sharex=True)
    gpus = payload.get("gpu_indices") or list(range(len(payload.get("power_w") or [])))
    marks = payload.get("phase_marks_s") or []
    for ax, (key, label) in zip(axes, panels):
        for g, series in zip(gpus, payload.get(key) or []):
            xs = [x for x, v in zip(t, series) if v is not None]
            ys = [v for v in series if v is not None]
            ax.plot(xs, ys, marker=".", markersize=2, linewidth=0.8, label=f"GPU {g}")
        for start, first, end in marks:
            ax.axvspan(start, first, color=PREFILL_COLOUR, alpha=0.5, linewidth=0)
            ax.axvspan(first, end, color=DECODE_COLOUR, alpha=0.35, linewidth=0)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    throttled = sorted(int(i) for i in (payload.get("throttle_reasons") or {}))
    for i in throttled:
        axes[0].axvline(t[i], color="red", alpha=0.4, linewidth=0.8)
    handles = [Patch(color=PREFILL_COLOUR, alpha=0.5, label="prefill"),
               Patch(color=DECODE_COLOUR, alpha=0.35, label="decode")]
    if throttled:
        handles.append(Patch(color="red", alpha=0.4, label="throttle reason seen"))
    axes[0].legend(handles=handles + axes[0].get_legend_handles_labels()[0], loc="upper right", fontsize=8)
    axes[-1].set_xlabel(f"time (s) from first sample; one sample every {payload.get('interval_s', '?')} s")
    fig.suptitle(title or "power timeline")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
