"""Markdown report of stored trials: what was measured, on what, with which weights.

The report renders numbers that are already in `TrialResult.summary` and `MemoryStats`; it never
recomputes physics. Where a figure is missing it says why ("n too small", "not measured: ...")
instead of showing a stand-in value. Sizes are decimal (1 GB = 1e9 bytes, 1 MB = 1e6 bytes), as
the GPT-OSS-20B study reports them, so its numbers compare directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wattlens.core.results import RunInfo, TrialResult
from wattlens.core.units import BYTES_PER_GB

BYTES_PER_MB = 1e6
MS_PER_S = 1e3
MISSING = "—"

SPEC_COLUMNS = ("model", "weights", "gpu", "mode", "dtype", "ctx", "gen", "batch", "sampling")

TRIAL_COLUMNS = SPEC_COLUMNS + (
    "TTFT ms (p50)",
    "TPOT ms (p50)",
    "decode tok/s",
    "E2E p50 ms (n)",
    "E2E p95 ms (n)",
    "peak GB",
    "KV measured / analytic MB",
    "energy J (p50 ± unc.)",
    "J/1k tok",
    "tok/J",
    "avg W",
    "decode roofline %",
    "prefill roofline %",
    "flags",
)

FAILED_COLUMNS = SPEC_COLUMNS + ("trial", "run", "error")


@dataclass(frozen=True)
class TextTable:
    """Headers and rows of preformatted strings: markdown here, rich in the CLI."""

    headers: tuple[str, ...]
    rows: list[list[str]]


# --- formatting ---------------------------------------------------------------------------------


def fmt_number(value: float | None) -> str:
    """About four significant figures without exponents for the ranges reports show."""
    if value is None:
        return MISSING
    v = float(value)
    if v != v:  # NaN
        return MISSING
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def _scaled(value: float | None, factor: float) -> str:
    return MISSING if value is None else fmt_number(value * factor)


def fmt_percentile_ms(p: Any) -> str:
    """A percentile dict {value, n, note} in ms with its n; the note ('n too small') when no value."""
    if not isinstance(p, dict):
        return MISSING if p is None else fmt_number(float(p) * MS_PER_S)
    n = p.get("n")
    suffix = f" (n={n})" if n is not None else ""
    if p.get("value") is None:
        note = p.get("note") or "no value"
        if note.startswith("n too small"):
            note = "n too small"  # the full rule ("p95 needs >= 20") is in the report's legend
        return f"{note}{suffix}"
    return f"{fmt_number(p['value'] * MS_PER_S)}{suffix}"


def _energy_cell(summary: dict[str, Any]) -> str:
    e = summary.get("energy_gpu_j_median")
    if summary.get("energy_measured") is False or e is None:
        reason = summary.get("energy_not_measured_reason") or "no energy reading"
        return f"not measured: {reason}"
    unc = summary.get("energy_gpu_j_uncertainty")
    return fmt_number(e) if unc is None else f"{fmt_number(e)} ± {fmt_number(unc)}"


def _flags_cell(trial: TrialResult) -> str:
    flags = list(trial.summary.get("energy_flags") or []) + list(trial.summary.get("host_cpu_flags") or [])
    for method in PHASE_METHODS:
        flags += [f"{method}:{f}" for f in trial.summary.get(f"phase_flags_{method}") or []]
    if trial.memory.not_measured_reason:
        flags.append(f"memory not measured: {trial.memory.not_measured_reason}")
    return ", ".join(flags) if flags else ""


def _spec_cells(trial: TrialResult) -> list[str]:
    s = trial.spec
    return [
        s.model,
        trial.weights,
        trial.gpu_name or MISSING,
        s.mode,
        s.dtype,
        str(s.ctx_tokens),
        str(s.gen_tokens),
        str(s.batch_size),
        s.sampling.label(),
    ]


def trial_cells(trial: TrialResult) -> list[str]:
    """One row of TRIAL_COLUMNS. A failed trial shows 'failed' and its error instead of metrics."""
    cells = _spec_cells(trial)
    if trial.status != "ok":
        blank = [MISSING] * (len(TRIAL_COLUMNS) - len(cells) - 1)
        blank[0] = "failed"
        return cells + blank + [f"error: {trial.error or 'unknown'}"]
    sm, mem = trial.summary, trial.memory
    kv_measured_mb = _scaled(mem.kv_measured_bytes, 1 / BYTES_PER_MB)
    kv = f"{kv_measured_mb} / {_scaled(mem.kv_analytic_bytes, 1 / BYTES_PER_MB)}"
    return cells + [
        _scaled(sm.get("ttft_s_median"), MS_PER_S),
        _scaled(sm.get("tpot_s_median"), MS_PER_S),
        fmt_number(sm.get("decode_tokens_per_s")),
        fmt_percentile_ms(sm.get("e2e_s_p50")),
        fmt_percentile_ms(sm.get("e2e_s_p95")),
        _scaled(mem.peak_allocated_bytes, 1 / BYTES_PER_GB),
        kv,
        _energy_cell(sm),
        fmt_number(sm.get("energy_gpu_j_per_1k_output_tokens")),
        fmt_number(sm.get("output_tokens_per_j")),
        fmt_number(sm.get("average_power_w")),
        fmt_number(sm.get("decode_roofline_pct")),
        fmt_number(sm.get("prefill_roofline_pct")),
        _flags_cell(trial),
    ]


def _sort_key(t: TrialResult) -> tuple:
    s = t.spec
    return (s.model, t.gpu_name or "", s.mode, s.dtype, s.ctx_tokens, s.gen_tokens, s.batch_size,
            s.sampling.label())


def render_trial_table(trials: Iterable[TrialResult]) -> TextTable:
    """Rows of strings for every trial (failed ones marked), for the CLI to print with rich."""
    return TextTable(TRIAL_COLUMNS, [trial_cells(t) for t in sorted(trials, key=_sort_key)])


def render_failed_table(trials: Iterable[TrialResult]) -> TextTable:
    rows = [
        _spec_cells(t) + [t.trial_id, t.run_id, t.error or "unknown error"]
        for t in sorted(trials, key=_sort_key)
        if t.status != "ok"
    ]
    return TextTable(FAILED_COLUMNS, rows)


# --- markdown -----------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def markdown_table(table: TextTable) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.headers) + " |"]
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _find(env: Any, keys: Sequence[str], depth: int = 3) -> Any:
    """First value under any of `keys`, searching nested dicts breadth-first (capture shapes vary)."""
    level = [env]
    for _ in range(depth):
        nxt = []
        for d in level:
            if not isinstance(d, dict):
                continue
            for k in keys:
                if d.get(k) not in (None, "", [], {}):
                    return d[k]
            nxt += [v for v in d.values() if isinstance(v, dict)]
        level = nxt
    return None


def _gpu_of_env(env: dict[str, Any]) -> str | None:
    gpus = env.get("gpus")
    if isinstance(gpus, list) and gpus:
        names = [g.get("name") if isinstance(g, dict) else str(g) for g in gpus]
        names = [n for n in names if n]
        if names:
            distinct = sorted(set(names))
            label = " + ".join(distinct)
            return f"{len(names)}x {label}" if len(names) > 1 and len(distinct) == 1 else label
    found = _find(env, ("gpu_name", "gpu"))
    if isinstance(found, dict):
        return found.get("name")
    return None if found is None else str(found)


def environment_summary(run: RunInfo) -> dict[str, str]:
    env = run.environment or {}

    def get(*keys: str) -> str:
        v = _find(env, keys)
        return MISSING if v is None else str(v)

    return {
        "run": run.run_id,
        "started": run.started_at,
        "GPU": _gpu_of_env(env) or MISSING,
        "driver": get("driver_version", "nvidia_driver_version", "driver"),
        "CUDA (torch / driver)": f"{get('torch_cuda_version')} / {get('cuda_driver_version')}",
        "torch": get("torch_version", "torch"),
        "transformers": get("transformers_version", "transformers"),
        "wattlens": get("wattlens_version", "wattlens"),
        "git": get("git_sha"),
        "energy counter update ms": _scaled(run.update_period_s, MS_PER_S),
        "idle W": fmt_number(run.idle_power_w),
    }


def _weights_line(trials: Sequence[TrialResult]) -> str:
    kinds = sorted({t.weights for t in trials})
    if not kinds:
        return "**Weights:** no trials."
    why = (
        " Random weights: models built from their configs; speed, memory and energy depend on shapes "
        "and dtypes, not on weight values."
        if "random" in kinds
        else ""
    )
    if len(kinds) == 1:
        return f"**Weights: {kinds[0]}** (every trial).{why}"
    counts = ", ".join(f"{k} for {sum(t.weights == k for t in trials)} trials" for k in kinds)
    return f"**Weights: mixed** ({counts}; see the weights column).{why}"


LEGEND = (
    "Units: decimal GB = 10^9 bytes and MB = 10^6 bytes, as in the GPT-OSS-20B study. "
    "TTFT = request start to first output token (prefill included); "
    "TPOT = (E2E - TTFT) / (output tokens - 1); decode tok/s = batch / TPOT. "
    "Times are medians over the repetitions; percentiles show their sample count n and read "
    "'n too small' below 20 samples for p95 (100 for p99), never the max. "
    "Energy is gross GPU energy from NVML counter deltas, median over repetitions, "
    "± the counter quantisation uncertainty; J/1k tok, tok/J and avg W use it and count "
    "output tokens of every sequence in the batch. "
    "Roofline % = achieved / bound (decode: HBM bandwidth over bytes per step; prefill: peak dense FLOP/s)."
)


def render_markdown(
    trials: Sequence[TrialResult], runs: Sequence[RunInfo], title: str = "wattlens results"
) -> str:
    """Full report: header (weights, environment, legend), one table per (model, GPU), failed trials."""
    trials = list(trials)
    ok = [t for t in trials if t.status == "ok"]
    failed = [t for t in trials if t.status != "ok"]
    out = [f"# {title}", "", _weights_line(trials), ""]

    out += ["## Environment", ""]
    if runs:
        envs = [environment_summary(r) for r in runs]
        out += [markdown_table(TextTable(tuple(envs[0]), [list(e.values()) for e in envs])), ""]
    else:
        out += ["No run information stored.", ""]
    out += [LEGEND, ""]

    out += [f"## Trials ({len(ok)} ok, {len(failed)} failed)", ""]
    groups: dict[tuple[str, str], list[TrialResult]] = {}
    for t in sorted(ok, key=_sort_key):
        groups.setdefault((t.spec.model, t.gpu_name or MISSING), []).append(t)
    if not groups:
        out += ["No successful trials.", ""]
    for (model, gpu), members in groups.items():
        out += [f"### {model} on {gpu}", "", markdown_table(render_trial_table(members)), ""]

    phase_table = render_phase_table(ok)
    if phase_table.rows:
        out += ["## Prefill and decode (phase energy, per generation)", "", PHASE_LEGEND, "",
                markdown_table(phase_table), ""]
    if failed:
        out += ["## Failed trials", "", markdown_table(render_failed_table(failed)), ""]
    return "\n".join(out).rstrip() + "\n"


PHASE_METHODS = ("subtraction", "boundary")
PHASE_LEGEND = (
    "Energy is gross GPU energy per generation (J) ± 1 sigma. subtraction: amplified prefill-only pass, "
    "decode = amplified full generation minus it. boundary: tick-resolved fit at the first-token hook over "
    "back-to-back runs with spread start times. Pre%/Dec%: shares of prefill + decode energy. ms and W: "
    "the duration each method's energy refers to (subtraction: a one-token generate call, and the full "
    "call minus it; boundary: start to first token, first token to end, of its own runs) and the mean "
    "power that implies; the measured repetitions' TTFT is in the trials table. start °C: hottest GPU "
    "after cooldown."
)
PHASE_COLUMNS = ("model", "mode", "ctx", "gen", "batch", "method", "prefill J", "decode J", "Pre%", "Dec%",
                 "prefill ms", "decode ms", "prefill W", "decode W", "start °C", "flags")


def _pm(value: float | None, sigma: float | None) -> str:
    if value is None:
        return MISSING
    return fmt_number(value) if sigma is None else f"{fmt_number(value)} ± {fmt_number(sigma)}"


def _method_time_s(sm: dict[str, Any], phase: str, method: str) -> float | None:
    """The duration a method's phase energy refers to; the repetitions' median where it has none."""
    t = sm.get(f"{phase}_time_s_{method}")
    return sm.get(f"{phase}_time_s") if t is None else t


def _mean_power_cell(sm: dict[str, Any], phase: str, method: str) -> str:
    e, t = sm.get(f"{phase}_energy_gpu_j_{method}"), sm.get(f"{phase}_time_s_{method}")
    return MISSING if e is None or not t else fmt_number(e / t)


def render_phase_table(trials: Sequence[TrialResult]) -> TextTable:
    """One row per (trial, phase method) for trials measured with phases; none otherwise."""
    rows = []
    for t in sorted(trials, key=_sort_key):
        sm = t.summary
        if "phase_methods" not in sm:
            continue
        s = t.spec
        for m in sm.get("phase_methods") or PHASE_METHODS:
            reason = sm.get(f"phase_not_measured_reason_{m}") or sm.get("phase_energy_not_measured_reason")
            rows.append([
                s.model, s.mode, str(s.ctx_tokens), str(s.gen_tokens), str(s.batch_size), m,
                _pm(sm.get(f"prefill_energy_gpu_j_{m}"), sm.get(f"prefill_energy_gpu_uncertainty_j_{m}")),
                _pm(sm.get(f"decode_energy_gpu_j_{m}"), sm.get(f"decode_energy_gpu_uncertainty_j_{m}")),
                fmt_number(sm.get(f"prefill_share_pct_{m}")) if sm.get(f"prefill_share_pct_{m}") is not None else MISSING,
                fmt_number(sm.get(f"decode_share_pct_{m}")) if sm.get(f"decode_share_pct_{m}") is not None else MISSING,
                _scaled(_method_time_s(sm, "prefill", m), MS_PER_S),
                _scaled(_method_time_s(sm, "decode", m), MS_PER_S),
                _mean_power_cell(sm, "prefill", m),
                _mean_power_cell(sm, "decode", m),
                fmt_number(sm.get("start_temperature_c")) if sm.get("start_temperature_c") is not None else MISSING,
                ", ".join(list(sm.get(f"phase_flags_{m}") or []) + ([f"not measured: {reason}"] if reason else [])),
            ])
    return TextTable(PHASE_COLUMNS, rows)


def carbon_section(trials: Sequence[TrialResult], region: str | None, gco2e_per_kwh: float | None = None,
                   pue: float | None = None) -> str:
    """Modelled gCO2e per generation and per 1k output tokens from each trial's median gross GPU energy."""
    from wattlens.analysis.carbon import carbon_from_energy, grid_intensity

    grid = grid_intensity(region, gco2e_per_kwh)
    head = (f"## Carbon (modelled)\n\nGrid {grid.region}: {grid.gco2e_per_kwh:g} gCO2e/kWh ({grid.basis}; "
            f"{grid.year or 'year n/a'}; source: {grid.source}); PUE {pue if pue is not None else 'not applied'}. "
            "GPU energy only (measured); the carbon figure is a model.\n\n"
            "| model | mode | ctx | gen | batch | GPU J / generation | gCO2e / generation | gCO2e / 1k output tokens |\n"
            "|---|---|---|---|---|---|---|---|\n")
    rows = []
    for t in sorted((t for t in trials if t.status == "ok"), key=_sort_key):
        e = t.summary.get("energy_gpu_j_median")
        s = t.spec
        if e is None:
            cells = [MISSING, "not measured", MISSING]
        else:
            c = carbon_from_energy(e, region, gco2e_per_kwh=gco2e_per_kwh, pue=pue).carbon_gco2e
            per_k = t.summary.get("energy_gpu_j_per_1k_output_tokens")
            ck = None if per_k is None else carbon_from_energy(per_k, region, gco2e_per_kwh=gco2e_per_kwh,
                                                               pue=pue).carbon_gco2e
            cells = [fmt_number(e), f"{c:.4g}", MISSING if ck is None else f"{ck:.4g}"]
        rows.append(f"| {s.model} | {s.mode} | {s.ctx_tokens} | {s.gen_tokens} | {s.batch_size} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"
