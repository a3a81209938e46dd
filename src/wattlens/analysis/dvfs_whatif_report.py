"""Render the DVFS what-if for measured trials: fit.json, whatif.json, report.md and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wattlens.analysis.dvfs_whatif import (
    BUSY_ESTIMATED,
    BUSY_GRAPH,
    BUSY_MEASURED,
    PowerModel,
    fit_study,
    h100_inputs_from_trials,
    load_busy_time,
    predicted_average_power_w,
    summarize,
    sweep_predictions,
)
from wattlens.core.errors import BadInput

BANDS = ("low", "mid", "high")  # the three estimates of an unmeasured mode's GPU busy time
MEASURED_BAND = "measured"  # the only band when every mode's GPU busy time is measured or a CUDA graph


def _clocks(f_ref: float, f_min: float, step: float = 15.0) -> list[float]:
    out, f = [], f_ref
    while f > f_min + 1e-9:
        out.append(round(f, 3))
        f -= step
    out.append(f_min)
    return out


def write_whatif(store: Path, model: str, out: Path, *, roofline: Path | None = None, f_ref_mhz: float = 1980.0,
                 f_min_mhz: float = 210.0, bandwidth_fraction: float = 0.9, overlap_k: float = 8.0,
                 busy: Path | None = None) -> list[Path]:
    """Fit, predict and write fit.json, whatif.json, report.md and the plot into `out`.

    `busy`: a benchmarks/busy_time.py JSON; its modes use the measured GPU busy time instead of the
    estimate. When no mode is left to estimate there is one band ('measured') instead of low/mid/high."""
    from wattlens.store.export import results_from_json

    runs, trials = results_from_json(store)
    idle_w = next((r.idle_power_w for r in runs if r.idle_power_w), None)
    if idle_w is None:
        raise BadInput(f"the store {store} has no idle power measurement")
    busy_file = load_busy_time(busy, model) if busy is not None else None
    gpu = next((t.gpu_name for t in trials if t.gpu_name), "GPU")
    roof_path = roofline or store.with_name("decode_roofline.json")
    try:
        roof = json.loads(roof_path.read_text())
        bytes_step, bw = float(roof["decode_bytes_per_step"]), float(roof["hbm_bandwidth_bytes_per_s"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"cannot read bytes per decode step from {roof_path} (--roofline): {e!r}") from None

    fit = fit_study()
    pm = PowerModel(fit.power.static_share, fit.power.v_floor, f_ref_mhz)
    clocks = _clocks(f_ref_mhz, f_min_mhz)
    first = next((t for t in trials if t.spec.model == model), None)
    result: dict[str, Any] = {"model": model, "gpu": gpu, "store": str(store), "f_ref_mhz": f_ref_mhz,
                              "workload": _workload(first), "roofline": str(roof_path),
                              "idle_power_w": idle_w, "bandwidth_bytes_per_s": bw * bandwidth_fraction,
                              "decode_bytes_per_step": bytes_step, "overlap_k": overlap_k,
                              "power_model": {"static_share": pm.static_share, "v_floor": pm.v_floor,
                                              "f_max_mhz": pm.f_max_mhz},
                              "busy": None if busy_file is None else {
                                  "path": busy_file.path, "ctx_tokens": busy_file.ctx_tokens,
                                  "batch_size": busy_file.batch_size, "gpu": busy_file.gpu,
                                  "modes": {m: vars(b) for m, b in busy_file.modes.items()}},
                              "bands": {}}
    probe = h100_inputs_from_trials(trials, model, f_ref_mhz=f_ref_mhz, idle_power_w=idle_w,
                                    decode_bytes_per_step=bytes_step, bandwidth_bytes_per_s=bw * bandwidth_fraction,
                                    overlap_k=overlap_k, busy=busy_file)
    any_estimated = any(i.gpu_busy_source == BUSY_ESTIMATED for i in probe.values())
    for band in (BANDS if any_estimated else (MEASURED_BAND,)):
        inputs = h100_inputs_from_trials(trials, model, f_ref_mhz=f_ref_mhz, idle_power_w=idle_w,
                                         decode_bytes_per_step=bytes_step, bandwidth_bytes_per_s=bw * bandwidth_fraction,
                                         eager_gpu_share=band if band in BANDS else "mid", overlap_k=overlap_k,
                                         busy=busy_file)
        # above-idle power per busy second, from compiled (busy share ~1); a consistency check only
        per_busy_w = inputs["compiled"].average_power_w - idle_w if "compiled" in inputs else None
        modes = {}
        for mode, inp in inputs.items():
            rows = sweep_predictions(inp, pm, clocks)
            modes[mode] = {"inputs": {"ttft_s": inp.ttft_s, "tpot_s": inp.tpot_s, "output_tokens": inp.output_tokens,
                                      "energy_j": inp.energy_j, "average_power_w": inp.average_power_w,
                                      "gpu_busy_source": inp.gpu_busy_source,
                                      "decode_gpu_busy_s": inp.decode_step.gpu_s(f_ref_mhz),
                                      "prefill_gpu_busy_s": inp.prefill.gpu_s(f_ref_mhz),
                                      "decode_host_s": inp.decode_step.host_s, "decode_mem_s": inp.decode_step.mem_s,
                                      "decode_clock_bound_s": inp.decode_step.compute_s,
                                      "prefill_host_s": inp.prefill.host_s,
                                      "prefill_mem_s": inp.prefill.mem_s, "prefill_clock_bound_s": inp.prefill.compute_s,
                                      "busy_share_ref": inp.busy_share_ref(),
                                      "predicted_average_power_w_from_compiled":
                                          None if per_busy_w is None else predicted_average_power_w(inp, per_busy_w),
                                      "notes": inp.notes},
                           "summary": summarize(rows), "rows": rows}
        result["bands"][band] = modes
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "fit.json", out / "whatif.json", out / "report.md", out / f"whatif-{model}.png"]
    paths[0].write_text(json.dumps(fit.to_dict(), indent=1))
    paths[1].write_text(json.dumps(result, indent=1))
    paths[2].write_text(render(result, fit))
    plot(result, paths[3])
    return paths


def _workload(trial: Any) -> str:
    """'random bf16 weights, ctx 2048, 64 output tokens, batch 1' from the trial itself."""
    if trial is None:
        return "no trial"
    spec = trial.spec
    weights = getattr(trial, "weights", None) or "unknown"
    return (f"{weights} {spec.dtype} weights, ctx {spec.ctx_tokens}, {spec.gen_tokens} output tokens, "
            f"batch {spec.batch_size}")


def reference_band(res: dict[str, Any]) -> str:
    """The band whose predictions stand for each mode: 'measured', or the midpoint of the estimate."""
    return MEASURED_BAND if MEASURED_BAND in res["bands"] else "mid"


def _shown(res: dict[str, Any]):
    """(band, mode, results) in report order, leaving out a mode where a band would repeat the
    reference band (its GPU busy time was measured, not estimated)."""
    ref = reference_band(res)
    for band in res["bands"]:
        for mode in ("eager", "static", "compiled"):
            d = res["bands"][band].get(mode)
            if d is not None and (d["inputs"]["gpu_busy_source"] == BUSY_ESTIMATED or band == ref):
                yield band, mode, d


def _busy_label(d: dict[str, Any], band: str) -> str:
    src = d["inputs"]["gpu_busy_source"]
    if src == BUSY_ESTIMATED:
        return f"estimated ({band})"
    return "measured" if src == BUSY_MEASURED else "= wall (CUDA graph)"


def _at(rows: list[dict[str, Any]], f: float) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(r["sm_clock_mhz"] - f))


def render(res: dict[str, Any], fit: Any) -> str:
    m = fit.mape_pct
    L = [f"# DVFS what-if for {res['model']} on {res['gpu']} (predicted; no clock was changed)", "",
         "Every number below is a **model prediction** from the committed measured trials "
         f"(`{res['store']}`, {res.get('workload', 'see the store')}). "
         "No GPU clock was changed to make them. Method, assumptions and formulas: `docs/dvfs.md` and "
         "`src/wattlens/analysis/dvfs_whatif.py`.", "",
         "## 1. Fit to the published DVFS tables (seeds/003, RTX PRO 6000 Blackwell)", "",
         f"Power model fitted to Tables XI + XII (30 rows): clock-invariant share **{fit.power.static_share:.3f}** of "
         f"power at 2842 MHz, voltage floor **{fit.power.v_floor:.3f} x V_max** (reached below "
         f"~{fit.power.v_floor * fit.power.f_max_mhz:.0f} MHz).", "",
         "| table | quantity | MAPE, published latency given | MAPE, latency modelled |", "|---|---|---|---|",
         f"| XI (15 rows, 180 MHz) | energy reduction | {m['xi_energy_reduction_given_latency']:.2f}% | "
         f"{m['xi_energy_reduction_modelled']:.2f}% |",
         f"| XII (15 rows, EDP clock) | energy reduction | {m['xii_energy_reduction_given_latency']:.2f}% | "
         f"{m['xii_energy_reduction_modelled']:.2f}% |",
         f"| XVI (5 rows) | energy per query at 180 MHz (J) | {m['xvi_low_freq_j_given_latency']:.2f}% | "
         f"{m['xvi_low_freq_j_modelled']:.2f}% |", "",
         f"Table XII with modelled latency: EDP-optimal clock matches the published one in "
         f"{m['xii_edp_clock_matches_of_15']:.0f} of 15 rows; latency change off by "
         f"{m['xii_latency_abs_error_points_modelled']:.1f} percentage points on average.", ""]
    L += [f"- {n}" for n in fit.notes] + [""]
    L += ["Per-row fit (Table XI, energy reduction at 180 MHz, %):", "",
          "| model | B | published | fit (latency given) | modelled |", "|---|---|---|---|---|"]
    for r in fit.rows["xi"]:
        L.append(f"| {r['model']} | {r['batch_size']} | {r['published_energy_reduction_pct']:.1f} | "
                 f"{r['fit_given_latency_pct']:.1f} | {r['modelled_pct']:.1f} |")
    L += ["", "Table XII (EDP-optimal clock):", "",
          "| model | B | published MHz | modelled MHz | published E down % | fit (latency given) | published L % | modelled L % |",
          "|---|---|---|---|---|---|---|---|"]
    for r in fit.rows["xii"]:
        L.append(f"| {r['model']} | {r['batch_size']} | {r['published_mhz']} | {r['modelled_edp_optimal_mhz']} | "
                 f"{r['published_energy_reduction_pct']:.1f} | {r['fit_given_latency_pct']:.1f} | "
                 f"{r['published_latency_change_pct']:+.1f} | {r['modelled_latency_change_pct']:+.1f} |")
    L += ["", f"## 2. {res['model']} on {res['gpu']}: eager vs compiled", "",
          f"Reference clock {res['f_ref_mhz']:.0f} MHz (the H100's maximum; the measured windows were partly "
          f"power-capped, so the true reference clock was somewhat lower), idle floor {res['idle_power_w']:.1f} W, "
          f"memory floor per decode step {res['decode_bytes_per_step'] / res['bandwidth_bytes_per_s'] * 1e3:.2f} ms "
          f"({res['decode_bytes_per_step'] / 1e9:.2f} GB at {res['bandwidth_bytes_per_s'] / 1e12:.2f} TB/s), "
          f"host/GPU overlap exponent k = {res['overlap_k']:g}.", ""]
    L += _busy_section(res)
    L += ["| mode | GPU busy | TTFT ms | prefill GPU ms | TPOT ms | decode GPU ms | decode host ms | busy share | "
          "measured avg W | avg W predicted from compiled |", "|---|---|---|---|---|---|---|---|---|---|"]
    for band, mode, d in _shown(res):
        i = d["inputs"]
        pred_w = i["predicted_average_power_w_from_compiled"]
        L.append(f"| {mode} | {_busy_label(d, band)} | {i['ttft_s'] * 1e3:.1f} | {i['prefill_gpu_busy_s'] * 1e3:.1f} | "
                 f"{i['tpot_s'] * 1e3:.2f} | {i['decode_gpu_busy_s'] * 1e3:.2f} | {i['decode_host_s'] * 1e3:.2f} | "
                 f"{i['busy_share_ref']:.2f} | {i['average_power_w']:.0f} | "
                 f"{'-' if pred_w is None else f'{pred_w:.0f}'} |")
    L += ["", "Predicted change vs the reference clock (energy per request, end-to-end latency); "
          "phase-aware = prefill at the reference clock, decode at the given clock:", "",
          "| mode | GPU busy | clock MHz | E down % | L change % | prefill change % | decode change % | "
          "phase-aware E down % | phase-aware L change % |", "|---|---|---|---|---|---|---|---|---|"]
    for band, mode, d in _shown(res):
        edp = d["summary"]["edp_optimal"]
        for f in sorted({1410.0, 990.0, edp["sm_clock_mhz"], min(r["sm_clock_mhz"] for r in d["rows"])},
                        reverse=True):
            r = _at(d["rows"], f)
            tag = " (EDP opt)" if r is edp else ""
            L.append(f"| {mode} | {_busy_label(d, band)} | {r['sm_clock_mhz']:.0f}{tag} | "
                     f"{r['energy_reduction_pct']:.1f} | {r['latency_change_pct']:+.1f} | "
                     f"{r['prefill_change_pct']:+.1f} | {r['decode_change_pct']:+.1f} | "
                     f"{r['phase_aware_energy_reduction_pct']:.1f} | {r['phase_aware_latency_change_pct']:+.1f} |")
    L += ["", *_contrast(res), ""]
    return "\n".join(L)


def _busy_section(res: dict[str, Any]) -> list[str]:
    """Where each mode's GPU busy time came from, and the busy_time measurements beside the trials."""
    ref = res["bands"][reference_band(res)]
    by_source: dict[str, list[str]] = {}
    for mode, d in ref.items():
        by_source.setdefault(d["inputs"]["gpu_busy_source"], []).append(mode)
    L = []
    if res.get("busy"):
        b = res["busy"]
        L += [f"GPU busy time of **{', '.join(by_source.get(BUSY_MEASURED, [])) or 'no mode of the store'}** is "
              f"**{BUSY_MEASURED}** (`{b['path']}`): the profiler's summed CUDA kernel time of a prefill and of a "
              "decode step, beside unprofiled wall time, in a separate run from the trials. The model uses the "
              "measured busy *seconds* with the trial's own wall time (host time = what the trial's wall leaves: wall - "
              "busy in the additive form, solved with k in the overlap form): GPU work is stable "
              "from run to run, the host-bound wall time is not. Busy > trial wall would be clipped to the wall "
              "(see the notes in whatif.json).", "",
              "| mode | busy run: decode step wall ms | decode GPU busy ms | trial TPOT ms | busy share of the trial step | "
              "busy run: prefill wall ms | prefill GPU busy ms | trial TTFT ms |", "|---|---|---|---|---|---|---|---|"]
        for mode, m in b["modes"].items():
            trial = ref.get(mode, {}).get("inputs")
            tpot = f"{trial['tpot_s'] * 1e3:.2f}" if trial else "no trial"
            share = f"{m['decode_step_gpu_busy_s'] / trial['tpot_s']:.2f}" if trial else "-"
            ttft = f"{trial['ttft_s'] * 1e3:.1f}" if trial else "no trial"
            L.append(f"| {mode} | {m['decode_step_wall_s'] * 1e3:.2f} | {m['decode_step_gpu_busy_s'] * 1e3:.2f} | "
                     f"{tpot} | {share} | {m['prefill_wall_s'] * 1e3:.1f} | {m['prefill_gpu_busy_s'] * 1e3:.1f} | {ttft} |")
        L.append("")
    L += ["'decode host ms' below is the host time solved from the trial's wall and the GPU busy time; with the "
          "overlap form (k > 1) a step whose GPU is busy for a quarter of it has host time close to its whole "
          "wall time, because the two run side by side.", ""] if res["overlap_k"] != 1 else []
    if by_source.get(BUSY_ESTIMATED):
        L += [f"GPU busy time of **{', '.join(by_source[BUSY_ESTIMATED])}** is **estimated**, not measured: per decode "
              "step between the compiled step (lower bound) and the static-cache step (upper bound); 'low / mid / "
              "high' below are those bounds and their midpoint; prefill busy = TTFT.", ""]
    if by_source.get(BUSY_GRAPH):
        L += [f"**{', '.join(by_source[BUSY_GRAPH])}**: not in a busy-time measurement; "
              "the decode step is one CUDA-graph replay, so its GPU busy time is taken as its wall time (the kernel "
              "profile in results/h100/core/benchmark.log gives ~99%); prefill busy = TTFT.", ""]
    return L


def _contrast(res: dict[str, Any]) -> list[str]:
    """The eager vs compiled reading, with this run's numbers."""
    ref = res["bands"][reference_band(res)]
    L = ["Reading: the same model on the same GPU gets very different DVFS advice depending on the serving "
         "mode. In eager mode the GPU idles behind the host for most of each decode step, so the SM clock can "
         "fall until the GPU work fills the host time before latency moves; in compiled mode the GPU is busy "
         "all step and every clock step down shows up as latency. See docs/dvfs.md.", ""]
    for mode in ("eager", "static", "compiled"):
        d = ref.get(mode)
        if not d:
            continue
        e, lo = d["summary"]["edp_optimal"], d["summary"]["lowest_clock"]
        L.append(f"- **{mode}** (GPU busy: {d['inputs']['gpu_busy_source']}, {d['inputs']['busy_share_ref']:.0%} "
                 f"of the request at the reference clock; {d['inputs']['energy_j']:.0f} J per request measured): "
                 f"EDP-optimal clock {e['sm_clock_mhz']:.0f} MHz: energy {-e['energy_reduction_pct']:+.1f}%, latency "
                 f"{e['latency_change_pct']:+.1f}% (decode {e['decode_change_pct']:+.1f}%, prefill "
                 f"{e['prefill_change_pct']:+.1f}%; phase-aware: energy {-e['phase_aware_energy_reduction_pct']:+.1f}%, "
                 f"latency {e['phase_aware_latency_change_pct']:+.1f}%); lowest clock {lo['sm_clock_mhz']:.0f} MHz: "
                 f"energy {-lo['energy_reduction_pct']:+.1f}%, latency {lo['latency_change_pct']:+.1f}%.")
    return L


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"eager": "tab:orange", "compiled": "tab:blue"}
    ref = reference_band(res)
    for mode in ("eager", "compiled"):
        d = res["bands"][ref].get(mode)
        if d is None:
            continue
        rows = d["rows"]
        src = d["inputs"]["gpu_busy_source"]
        busy_tag = {BUSY_ESTIMATED: "GPU busy estimated", BUSY_MEASURED: "GPU busy measured"}.get(src, "CUDA graph")
        f = [r["sm_clock_mhz"] for r in rows]
        for ax, key in ((axes[0], "energy_reduction_pct"), (axes[1], "latency_change_pct")):
            sign = -1 if key == "energy_reduction_pct" else 1
            ax.plot(f, [100 + sign * r[key] for r in rows], color=colors[mode],
                    label=f"{mode} (uniform clock; {busy_tag})")
            if src == BUSY_ESTIMATED:
                lo = [100 + sign * r[key] for r in res["bands"]["low"][mode]["rows"]]
                hi = [100 + sign * r[key] for r in res["bands"]["high"][mode]["rows"]]
                ax.fill_between(f, lo, hi, color=colors[mode], alpha=0.2, label=f"{mode}: GPU-busy estimate band")
            pkey = "phase_aware_" + key
            ax.plot(f, [100 + sign * r[pkey] for r in rows], color=colors[mode], ls="--",
                    label=f"{mode} (phase-aware: prefill at max)")
    axes[0].set_ylabel("energy per request, % of max-clock value")
    axes[1].set_ylabel("end-to-end latency, % of max-clock value")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("SM clock (MHz)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Predicted DVFS effect, {res['model']} on {res['gpu']} (what-if model, no clock changed)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
