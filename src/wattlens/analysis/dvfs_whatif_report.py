"""Render the DVFS what-if for measured trials: fit.json, whatif.json, report.md and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wattlens.analysis.dvfs_whatif import (
    PowerModel,
    fit_study,
    h100_inputs_from_trials,
    predicted_average_power_w,
    summarize,
    sweep_predictions,
)

BANDS = ("low", "mid", "high")


def _clocks(f_ref: float, f_min: float, step: float = 15.0) -> list[float]:
    out, f = [], f_ref
    while f > f_min + 1e-9:
        out.append(round(f, 3))
        f -= step
    out.append(f_min)
    return out


def write_whatif(store: Path, model: str, out: Path, *, roofline: Path | None = None, f_ref_mhz: float = 1980.0,
                 f_min_mhz: float = 210.0, bandwidth_fraction: float = 0.9, overlap_k: float = 8.0) -> list[Path]:
    from wattlens.store.export import results_from_json

    runs, trials = results_from_json(store)
    idle_w = next((r.idle_power_w for r in runs if r.idle_power_w), None)
    if idle_w is None:
        raise ValueError("the store has no idle power measurement")
    gpu = next((t.gpu_name for t in trials if t.gpu_name), "GPU")
    roof = json.loads((roofline or store.with_name("decode_roofline.json")).read_text())
    bytes_step, bw = float(roof["decode_bytes_per_step"]), float(roof["hbm_bandwidth_bytes_per_s"])

    fit = fit_study()
    pm = PowerModel(fit.power.static_share, fit.power.v_floor, f_ref_mhz)
    clocks = _clocks(f_ref_mhz, f_min_mhz)
    result: dict[str, Any] = {"model": model, "gpu": gpu, "store": str(store), "f_ref_mhz": f_ref_mhz,
                              "idle_power_w": idle_w, "bandwidth_bytes_per_s": bw * bandwidth_fraction,
                              "decode_bytes_per_step": bytes_step, "overlap_k": overlap_k,
                              "power_model": {"static_share": pm.static_share, "v_floor": pm.v_floor,
                                              "f_max_mhz": pm.f_max_mhz}, "bands": {}}
    for band in BANDS:
        inputs = h100_inputs_from_trials(trials, model, f_ref_mhz=f_ref_mhz, idle_power_w=idle_w,
                                         decode_bytes_per_step=bytes_step, bandwidth_bytes_per_s=bw * bandwidth_fraction,
                                         eager_gpu_share=band, overlap_k=overlap_k)
        per_busy_w = inputs["compiled"].average_power_w - idle_w  # compiled: busy share ~1
        modes = {}
        for mode, inp in inputs.items():
            rows = sweep_predictions(inp, pm, clocks)
            modes[mode] = {"inputs": {"ttft_s": inp.ttft_s, "tpot_s": inp.tpot_s, "output_tokens": inp.output_tokens,
                                      "energy_j": inp.energy_j, "average_power_w": inp.average_power_w,
                                      "decode_host_s": inp.decode_step.host_s, "decode_mem_s": inp.decode_step.mem_s,
                                      "decode_clock_bound_s": inp.decode_step.compute_s,
                                      "prefill_mem_s": inp.prefill.mem_s, "prefill_clock_bound_s": inp.prefill.compute_s,
                                      "busy_share_ref": inp.busy_share_ref(),
                                      "predicted_average_power_w_from_compiled": predicted_average_power_w(inp, per_busy_w),
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


def _at(rows: list[dict[str, Any]], f: float) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(r["sm_clock_mhz"] - f))


def render(res: dict[str, Any], fit: Any) -> str:
    m = fit.mape_pct
    L = [f"# DVFS what-if for {res['model']} on {res['gpu']} (predicted; no clock was changed)", "",
         "Every number below is a **model prediction** from the committed measured trials "
         f"(`{res['store']}`, random bf16 weights, ctx 2048, 64 output tokens, batch 1). "
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
          f"host/GPU overlap exponent k = {res['overlap_k']:g}.", "",
          "Eager's GPU busy time per decode step is **estimated**, not measured: between the compiled step "
          "(lower bound) and the static-cache step (upper bound); 'low / mid / high' below are those bounds "
          "and their midpoint. Compiled's step is one CUDA-graph replay, so its GPU busy time is its wall time.", "",
          "| mode | eager GPU estimate | TPOT ms | decode host ms | busy share | measured avg W | avg W predicted from compiled |",
          "|---|---|---|---|---|---|---|"]
    for band in BANDS:
        for mode in ("eager", "static", "compiled"):
            d = res["bands"][band].get(mode)
            if not d or (mode == "compiled" and band != "mid"):
                continue
            i = d["inputs"]
            L.append(f"| {mode} | {band} | {i['tpot_s'] * 1e3:.2f} | {i['decode_host_s'] * 1e3:.2f} | "
                     f"{i['busy_share_ref']:.2f} | {i['average_power_w']:.0f} | "
                     f"{i['predicted_average_power_w_from_compiled']:.0f} |")
    L += ["", "Predicted change vs the reference clock (energy per request, end-to-end latency); "
          "phase-aware = prefill at the reference clock, decode at the given clock:", "",
          "| mode | eager GPU estimate | clock MHz | E down % | L change % | prefill change % | decode change % | "
          "phase-aware E down % | phase-aware L change % |", "|---|---|---|---|---|---|---|---|---|"]
    for band in BANDS:
        for mode in ("eager", "compiled"):
            d = res["bands"][band].get(mode)
            if not d or (mode == "compiled" and band != "mid"):
                continue
            edp = d["summary"]["edp_optimal"]
            for f in sorted({1410.0, 990.0, edp["sm_clock_mhz"], min(r["sm_clock_mhz"] for r in d["rows"])},
                            reverse=True):
                r = _at(d["rows"], f)
                tag = " (EDP opt)" if r is edp else ""
                L.append(f"| {mode} | {band if mode == 'eager' else '-'} | {r['sm_clock_mhz']:.0f}{tag} | "
                         f"{r['energy_reduction_pct']:.1f} | {r['latency_change_pct']:+.1f} | "
                         f"{r['prefill_change_pct']:+.1f} | {r['decode_change_pct']:+.1f} | "
                         f"{r['phase_aware_energy_reduction_pct']:.1f} | {r['phase_aware_latency_change_pct']:+.1f} |")
    L += ["", "Reading: the same model on the same GPU gets very different DVFS advice depending on the serving "
          "mode. In eager mode the GPU idles behind the host for most of each decode step, so the SM clock can "
          "fall until the GPU work fills the host time before latency moves; in compiled mode the GPU is busy "
          "all step and every clock step down shows up as latency. See docs/dvfs.md.", ""]
    return "\n".join(L)


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"eager": "tab:orange", "compiled": "tab:blue"}
    for mode in ("eager", "compiled"):
        mid = res["bands"]["mid"][mode]["rows"]
        f = [r["sm_clock_mhz"] for r in mid]
        for ax, key in ((axes[0], "energy_reduction_pct"), (axes[1], "latency_change_pct")):
            sign = -1 if key == "energy_reduction_pct" else 1
            y = [100 + sign * r[key] for r in mid]
            ax.plot(f, y, color=colors[mode], label=f"{mode} (uniform clock)")
            if mode == "eager":
                lo = [100 + sign * r[key] for r in res["bands"]["low"][mode]["rows"]]
                hi = [100 + sign * r[key] for r in res["bands"]["high"][mode]["rows"]]
                ax.fill_between(f, lo, hi, color=colors[mode], alpha=0.2, label="eager: GPU-busy estimate band")
            pkey = "phase_aware_" + key
            ax.plot(f, [100 + sign * r[pkey] for r in mid], color=colors[mode], ls="--",
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
