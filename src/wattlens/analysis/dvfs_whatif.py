"""What-if DVFS without touching a clock: time and energy per phase vs SM clock, from a measured trial.

Time model (per phase, per request):

    gpu_s(f)  = mem_s + compute_s * f_ref / f        # memory-bound part does not move with the SM
                                                     # clock, clock-bound part scales as 1/f
    time_s(f) = (host_s^k + gpu_s(f)^k)^(1/k)        # 'overlap' (default, k = 8): the host launches
                                                     # work while the GPU runs, so a step takes about
                                                     # max(host, GPU); k smooths the corner
    time_s(f) = host_s + gpu_s(f)                    # 'additive' (k = 1): nothing overlaps

Why the overlap form: in a host-bound stack (HF eager at batch 1) the GPU finishes each kernel
before the next is launched, so GPU work can get several times slower before the step gets slower
at all. The additive form would charge every GPU microsecond to the step. Both are available;
`host_s` is solved so that time_s(f_ref) equals the measured wall time.

Power model (busy GPU, relative to the maximum clock f_max):

    v(f) = max(v_floor, f / f_max)                   # voltage: flat at its floor at low clocks,
                                                     # then rising ~linearly to V_max at f_max
    g(f) = (f / f_max) * v(f)^2                      # dynamic power ~ f V^2
    P(f) / P(f_max) = s + (1 - s) * g(f)             # s = share of power that does not scale

For a measured trial the floor is the measured idle power; the power above it is drawn while the
GPU is busy (busy share u = gpu_s / time_s; P_busy = (P_avg - P_idle) / u_ref, from the trial's own
average power). Of that active energy a share `a` is clock-invariant and fixed per unit of work
(memory traffic), the rest is drawn for the GPU busy time at f V^2:
    E(f) = P_idle * time_s(f) + P_busy * (a * gpu_s(f_ref) + (1 - a) * gpu_s(f) * g(f) / g(f_ref)).
By default `a` is the study fit's static share (an assumption: the same split on another GPU).

`fit_study` fits (s, v_floor) to the published Table XI / XII figures of seeds/003 (transcribed in
analysis/data/dvfs_study_*.csv) and reports the mean absolute percentage error per table.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

DATA = Path(__file__).with_name("data")
STUDY_F_MAX_MHZ = 2842.0
STUDY_CLOCKS_MHZ = (180, 487, 960, 1500, 2000, 2505, 2842)


# ---- models ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerModel:
    """P(f)/P(f_max) = s + (1 - s) * (f/f_max) * max(v_floor, f/f_max)^2."""

    static_share: float
    v_floor: float
    f_max_mhz: float

    def g(self, f_mhz: float) -> float:
        x = f_mhz / self.f_max_mhz
        return x * max(self.v_floor, x) ** 2

    def relative(self, f_mhz: float) -> float:
        return self.static_share + (1.0 - self.static_share) * self.g(f_mhz)


@dataclass(frozen=True)
class PhaseModel:
    """One phase of one request: host, memory-bound and clock-bound time at `f_ref_mhz`."""

    host_s: float
    mem_s: float
    compute_s: float
    f_ref_mhz: float
    overlap_k: float = 8.0  # 1.0 = additive

    @classmethod
    def from_wall(cls, wall_s: float, gpu_s: float, mem_s: float, f_ref_mhz: float,
                  overlap_k: float = 8.0) -> "PhaseModel":
        """Solve host_s so that time_s(f_ref) == wall_s, given the GPU busy time and its memory floor."""
        gpu_s = min(gpu_s, wall_s)
        mem_s = min(mem_s, gpu_s)
        if overlap_k == 1.0:
            host = wall_s - gpu_s
        else:
            host = max(wall_s ** overlap_k - gpu_s ** overlap_k, 0.0) ** (1.0 / overlap_k)
        return cls(host, mem_s, gpu_s - mem_s, f_ref_mhz, overlap_k)

    def gpu_s(self, f_mhz: float) -> float:
        return self.mem_s + self.compute_s * self.f_ref_mhz / f_mhz

    def time_s(self, f_mhz: float) -> float:
        g = self.gpu_s(f_mhz)
        if self.overlap_k == 1.0:
            return self.host_s + g
        k = self.overlap_k
        return (self.host_s ** k + g ** k) ** (1.0 / k)

    def busy_share(self, f_mhz: float) -> float:
        return min(1.0, self.gpu_s(f_mhz) / self.time_s(f_mhz))


# ---- the published study -------------------------------------------------------------------------
def _read_csv(name: str) -> list[dict[str, Any]]:
    with open(DATA / name, encoding="utf-8") as f:
        rows = list(csv.DictReader(ln for ln in f if not ln.startswith("#")))
    out = []
    for r in rows:
        out.append({k: (v if k == "model" else float(v)) for k, v in r.items()})
    return out


def study_tables() -> dict[str, list[dict[str, Any]]]:
    return {"xi": _read_csv("dvfs_study_table_xi.csv"), "xii": _read_csv("dvfs_study_table_xii.csv"),
            "xvi": _read_csv("dvfs_study_table_xvi.csv")}


def clock_share_from_slowdown(change_pct: float, f_low_mhz: float, f_max_mhz: float = STUDY_F_MAX_MHZ) -> float:
    """Additive model: share c of a phase that scales as 1/f, from its slowdown at f_low (>= 0)."""
    return max(change_pct / 100.0, 0.0) / (f_max_mhz / f_low_mhz - 1.0)


def _study_latency_ratio(row: dict[str, Any], f_mhz: float) -> float:
    """Modelled end-to-end latency at f / at f_max for one Table XI row (additive per phase)."""
    total = 0.0
    for phase in ("prefill", "decode"):
        c = clock_share_from_slowdown(row[f"{phase}_change_pct"], 180.0)
        share = row[f"{phase}_share_pct"] / 100.0
        total += share * ((1.0 - c) + c * STUDY_F_MAX_MHZ / f_mhz)
    return total


def _mape(pred: Sequence[float], true: Sequence[float]) -> float:
    return 100.0 * sum(abs(p - t) / abs(t) for p, t in zip(pred, true)) / len(true)


@dataclass
class StudyFit:
    power: PowerModel
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mape_pct: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"power": asdict(self.power), "mape_pct": self.mape_pct, "rows": self.rows, "notes": self.notes}


def fit_study() -> StudyFit:
    """Fit (static_share, v_floor) to Tables XI + XII, then score XI, XII and XVI.

    Energy ratio at clock f for a row = latency ratio x power ratio. For the fit the latency ratio
    is the published one (so only the power model is being fitted); the scores are given twice:
    'given latency' (published latency, tests the power model) and 'modelled' (latency from the
    per-phase clock shares derived from Table XI's prefill / decode slowdowns, i.e. the full what-if).
    """
    from scipy.optimize import least_squares

    t = study_tables()
    xi_by = {(r["model"], int(r["batch_size"])): r for r in t["xi"]}
    obs: list[tuple[float, float, float]] = []  # (f, published latency ratio, published energy ratio)
    for r in t["xi"]:
        obs.append((180.0, 1 + r["latency_change_pct"] / 100, 1 - r["energy_reduction_pct"] / 100))
    for r in t["xii"]:
        obs.append((r["edp_optimal_mhz"], 1 + r["latency_change_pct"] / 100, 1 - r["energy_reduction_pct"] / 100))

    def resid(p: Sequence[float]) -> list[float]:
        pm = PowerModel(p[0], p[1], STUDY_F_MAX_MHZ)
        return [100 * (lat * pm.relative(f) - e) for f, lat, e in obs]

    sol = least_squares(resid, x0=[0.5, 0.7], bounds=([0.0, 0.05], [1.0, 1.0]))
    pm = PowerModel(float(sol.x[0]), float(sol.x[1]), STUDY_F_MAX_MHZ)
    fit = StudyFit(pm)

    def e_red(lat_ratio: float, f: float) -> float:
        return 100 * (1 - lat_ratio * pm.relative(f))

    xi_rows = []
    for r in t["xi"]:
        lat_m = _study_latency_ratio(r, 180.0)
        xi_rows.append({"model": r["model"], "batch_size": int(r["batch_size"]),
                        "published_energy_reduction_pct": r["energy_reduction_pct"],
                        "fit_given_latency_pct": e_red(1 + r["latency_change_pct"] / 100, 180.0),
                        "modelled_pct": e_red(lat_m, 180.0),
                        "published_latency_change_pct": r["latency_change_pct"],
                        "modelled_latency_change_pct": 100 * (lat_m - 1)})
    fit.rows["xi"] = xi_rows
    pub = [r["published_energy_reduction_pct"] for r in xi_rows]
    fit.mape_pct["xi_energy_reduction_given_latency"] = _mape([r["fit_given_latency_pct"] for r in xi_rows], pub)
    fit.mape_pct["xi_energy_reduction_modelled"] = _mape([r["modelled_pct"] for r in xi_rows], pub)

    xii_rows = []
    for r in t["xii"]:
        f = r["edp_optimal_mhz"]
        base = xi_by[(r["model"], int(r["batch_size"]))]
        lat_m = {c: _study_latency_ratio(base, c) for c in STUDY_CLOCKS_MHZ}
        edp = {c: lat_m[c] ** 2 * pm.relative(c) for c in STUDY_CLOCKS_MHZ}
        f_opt = min(edp, key=edp.get)  # type: ignore[arg-type]
        xii_rows.append({"model": r["model"], "batch_size": int(r["batch_size"]), "published_mhz": int(f),
                         "modelled_edp_optimal_mhz": f_opt,
                         "published_energy_reduction_pct": r["energy_reduction_pct"],
                         "fit_given_latency_pct": e_red(1 + r["latency_change_pct"] / 100, f),
                         "modelled_pct_at_published_mhz": e_red(lat_m[f], f),
                         "published_latency_change_pct": r["latency_change_pct"],
                         "modelled_latency_change_pct": 100 * (lat_m[f] - 1)})
    fit.rows["xii"] = xii_rows
    pub = [r["published_energy_reduction_pct"] for r in xii_rows]
    fit.mape_pct["xii_energy_reduction_given_latency"] = _mape([r["fit_given_latency_pct"] for r in xii_rows], pub)
    fit.mape_pct["xii_energy_reduction_modelled"] = _mape([r["modelled_pct_at_published_mhz"] for r in xii_rows], pub)
    fit.mape_pct["xii_latency_abs_error_points_modelled"] = sum(
        abs(r["modelled_latency_change_pct"] - r["published_latency_change_pct"]) for r in xii_rows) / len(xii_rows)
    fit.mape_pct["xii_edp_clock_matches_of_15"] = float(sum(
        r["modelled_edp_optimal_mhz"] == r["published_mhz"] for r in xii_rows))

    xvi_rows = []
    for r in t["xvi"]:
        base = xi_by[(r["model"], 1)]
        lat_m = _study_latency_ratio(base, 180.0)
        low_given = r["baseline_j"] * (1 + r["latency_change_pct"] / 100) * pm.relative(180.0)
        low_model = r["baseline_j"] * lat_m * pm.relative(180.0)
        xvi_rows.append({"model": r["model"], "baseline_j": r["baseline_j"], "published_low_j": r["low_freq_j"],
                         "fit_given_latency_low_j": low_given, "modelled_low_j": low_model})
    fit.rows["xvi"] = xvi_rows
    pub = [r["published_low_j"] for r in xvi_rows]
    fit.mape_pct["xvi_low_freq_j_given_latency"] = _mape([r["fit_given_latency_low_j"] for r in xvi_rows], pub)
    fit.mape_pct["xvi_low_freq_j_modelled"] = _mape([r["modelled_low_j"] for r in xvi_rows], pub)
    fit.notes += [
        "Latency per phase: additive model (host + memory time fixed, clock-bound share c scales as 1/f); "
        "c per row and phase solved from Table XI's prefill / decode change at 180 MHz (clipped at 0), so "
        "Table XI latencies are inputs, not predictions. The two published clocks per row cannot tell the "
        "overlap form from the additive one.",
        "Table XII's negative latency changes (e.g. -36.5% for Qwen2.5-32B at 960 MHz, batch 1) mean the "
        "2842 MHz baseline was slower than 960 MHz; no model in which time does not increase as the clock "
        "falls can reproduce them. The 'given latency' scores take the published latency as input.",
        "Table XVI is presented as the phase-aware policy but its savings and latency equal Table XI's "
        "uniform-180 MHz batch-1 rows; it is scored here as uniform 180 MHz.",
    ]
    return fit


# ---- H100 what-if from measured trials -----------------------------------------------------------
@dataclass
class TrialInputs:
    """What the what-if needs from one measured trial (one mode), with the estimates spelled out."""

    mode: str
    model: str
    f_ref_mhz: float
    output_tokens: int
    ttft_s: float
    tpot_s: float
    energy_j: float
    average_power_w: float
    idle_power_w: float
    prefill: PhaseModel
    decode_step: PhaseModel
    notes: list[str] = field(default_factory=list)

    @property
    def decode_steps(self) -> int:
        return max(self.output_tokens - 1, 0)

    def busy_share_ref(self) -> float:
        gpu = self.prefill.gpu_s(self.f_ref_mhz) + self.decode_steps * self.decode_step.gpu_s(self.f_ref_mhz)
        wall = self.prefill.time_s(self.f_ref_mhz) + self.decode_steps * self.decode_step.time_s(self.f_ref_mhz)
        return gpu / wall


def predict(inp: TrialInputs, power: PowerModel, f_prefill_mhz: float, f_decode_mhz: float,
            active_static_share: float | None = None) -> dict[str, float]:
    """Time (s) and energy (J) of one request with prefill at f_prefill and decode at f_decode.

    `active_static_share` (a): share of the above-idle power that does not scale with the clock;
    default: the power model's static_share."""
    a = power.static_share if active_static_share is None else active_static_share
    u_ref = inp.busy_share_ref()
    active_w = inp.average_power_w - inp.idle_power_w
    g_ref = power.g(inp.f_ref_mhz)

    busy_w = active_w / u_ref  # above-idle power while the GPU is busy, at f_ref

    def phase(pm: PhaseModel, f: float, n: int) -> tuple[float, float]:
        t = pm.time_s(f) * n
        # clock-invariant active energy is fixed per unit of work (bytes moved); the clock-scaled part
        # is drawn for as long as the GPU is busy, at f V^2 relative to f_ref
        e_active = busy_w * n * (a * pm.gpu_s(pm.f_ref_mhz) + (1 - a) * pm.gpu_s(f) * power.g(f) / g_ref)
        return t, inp.idle_power_w * t + e_active

    tp, ep = phase(inp.prefill, f_prefill_mhz, 1)
    td, ed = phase(inp.decode_step, f_decode_mhz, inp.decode_steps)
    return {"prefill_s": tp, "decode_s": td, "latency_s": tp + td, "prefill_j": ep, "decode_j": ed,
            "energy_j": ep + ed}


def sweep_predictions(inp: TrialInputs, power: PowerModel, clocks_mhz: Sequence[float],
                      active_static_share: float | None = None) -> list[dict[str, Any]]:
    """Uniform clock and phase-aware (prefill at f_ref, decode at f) predictions, relative to f_ref."""
    a = active_static_share
    base = predict(inp, power, inp.f_ref_mhz, inp.f_ref_mhz, a)
    out = []
    for f in clocks_mhz:
        u = predict(inp, power, f, f, a)
        pa = predict(inp, power, inp.f_ref_mhz, f, a)
        out.append({"sm_clock_mhz": f,
                    "latency_s": u["latency_s"], "energy_j": u["energy_j"],
                    "latency_change_pct": 100 * (u["latency_s"] / base["latency_s"] - 1),
                    "energy_reduction_pct": 100 * (1 - u["energy_j"] / base["energy_j"]),
                    "prefill_change_pct": 100 * (u["prefill_s"] / base["prefill_s"] - 1),
                    "decode_change_pct": 100 * (u["decode_s"] / base["decode_s"] - 1),
                    "edp_ratio": (u["energy_j"] * u["latency_s"]) / (base["energy_j"] * base["latency_s"]),
                    "phase_aware_latency_change_pct": 100 * (pa["latency_s"] / base["latency_s"] - 1),
                    "phase_aware_energy_reduction_pct": 100 * (1 - pa["energy_j"] / base["energy_j"])})
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    low = min(rows, key=lambda r: r["sm_clock_mhz"])
    edp = min(rows, key=lambda r: r["edp_ratio"])
    return {"lowest_clock": low, "edp_optimal": edp}


def h100_inputs_from_trials(trials: Sequence[Any], model: str, *, f_ref_mhz: float, idle_power_w: float,
                            decode_bytes_per_step: float, bandwidth_bytes_per_s: float,
                            eager_gpu_share: str = "mid", overlap_k: float = 8.0) -> dict[str, TrialInputs]:
    """TrialInputs for each mode of `model`, with GPU busy time ESTIMATED from the other modes.

    - compiled: the decode step is one CUDA-graph replay, so GPU busy = step wall time (the kernel
      profile in results/h100/core/benchmark.log agrees: 34.99 ms of CUDA time over 5 steps).
    - eager: the GPU work of a step is at least the compiled step's (same bytes, less fusion) and at
      most the `static` mode's step (same eager kernels with a static cache, less host work):
      `eager_gpu_share` = 'low' | 'mid' | 'high' picks the lower bound, the midpoint or the upper bound.
      The rest of the step is host time. A CUDA-event measurement (benchmarks/busy_time.py) replaces
      this estimate.
    - memory floor of a step: bytes read per step / `bandwidth_bytes_per_s`; the rest of the GPU time
      scales with the SM clock. Prefill: GPU-bound (2048-token GEMMs), same memory floor for weights.
    """
    by_mode = {t.spec.mode: t for t in trials if t.spec.model == model and t.status == "ok"}
    if "compiled" not in by_mode:
        raise ValueError(f"no compiled trial of {model}: the compiled step time anchors the GPU busy estimate")
    comp = by_mode["compiled"].summary
    static_tpot = by_mode["static"].summary["tpot_s_median"] if "static" in by_mode else comp["tpot_s_median"]
    mem_s = decode_bytes_per_step / bandwidth_bytes_per_s
    out: dict[str, TrialInputs] = {}
    for mode, t in by_mode.items():
        s = t.summary
        tpot, ttft = s["tpot_s_median"], s["ttft_s_median"]
        notes = []
        if mode == "compiled":
            gpu_step = tpot
            notes.append("decode GPU busy = step wall time (CUDA graph replay)")
        else:
            lo, hi = min(comp["tpot_s_median"], tpot), min(static_tpot, tpot)
            gpu_step = {"low": lo, "mid": 0.5 * (lo + hi), "high": hi}[eager_gpu_share]
            notes.append(f"decode GPU busy per step estimated in [{lo * 1e3:.2f}, {hi * 1e3:.2f}] ms "
                         f"(compiled step .. static step); using {eager_gpu_share} = {gpu_step * 1e3:.2f} ms "
                         f"of a {tpot * 1e3:.2f} ms step")
        decode = PhaseModel.from_wall(tpot, gpu_step, mem_s, f_ref_mhz, overlap_k)
        prefill = PhaseModel.from_wall(ttft, ttft, mem_s, f_ref_mhz, overlap_k)
        out[mode] = TrialInputs(mode, model, f_ref_mhz, int(s["output_tokens"]), ttft, tpot,
                                s["energy_gpu_j_median"], s["average_power_w"], idle_power_w, prefill, decode,
                                notes)
    return out


def predicted_average_power_w(inp: TrialInputs, per_busy_active_w: float) -> float:
    """Consistency check: trial-average power if active power were `per_busy_active_w` x busy share."""
    return inp.idle_power_w + per_busy_active_w * inp.busy_share_ref()


def nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [nan_to_none(v) for v in x]
    return x
