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

GPU busy time per phase: measured by benchmarks/busy_time.py where a busy-time JSON is given
(`load_busy_time`), otherwise estimated (`h100_inputs_from_trials`). The measurement comes from a
different run than the trial, so the model takes the measured busy *seconds* and the trial's own
wall time: the GPU work of a step is stable across runs, the host-bound wall time is not.

`fit_study` fits (s, v_floor) to the published Table XI / XII figures of seeds/003 (transcribed in
analysis/data/dvfs_study_*.csv) and reports the mean absolute percentage error per table.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from wattlens.core.errors import BadInput

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
BUSY_MEASURED = "measured (benchmarks/busy_time.py)"
BUSY_ESTIMATED = "estimated"
BUSY_GRAPH = "CUDA graph: busy = wall (assumed)"


@dataclass(frozen=True)
class BusyTime:
    """GPU busy and wall time of one mode, as benchmarks/busy_time.py measured them.

    The wall times belong to the busy_time run, not to the trial; they are kept for the report only."""

    mode: str
    prefill_gpu_busy_s: float
    decode_step_gpu_busy_s: float
    prefill_wall_s: float
    decode_step_wall_s: float


@dataclass(frozen=True)
class BusyTimeFile:
    """A busy_time JSON: which model / context / batch it measured, and the modes it has."""

    path: str
    model: str
    modes: dict[str, BusyTime]
    ctx_tokens: int | None = None
    batch_size: int | None = None
    gpu: str | None = None


def _positive_s(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BadInput(f"{where} must be a positive number of seconds, got {value!r}")
    return float(value)


def load_busy_time(path: str | Path, model: str) -> BusyTimeFile:
    """Read and check a benchmarks/busy_time.py JSON for `model`; BadInput names what is wrong."""
    p = Path(path).expanduser()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"no such busy-time file: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"cannot read busy-time file {p}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("modes"), list) or not doc["modes"]:
        raise BadInput(f"{p} is not a benchmarks/busy_time.py result (needs a non-empty 'modes' list)")
    if doc.get("model") != model:
        raise BadInput(f"busy-time file {p} measured model {doc.get('model')!r}, not {model!r}")
    modes: dict[str, BusyTime] = {}
    for i, row in enumerate(doc["modes"]):
        mode = row.get("mode") if isinstance(row, dict) else None
        if not isinstance(mode, str) or not mode:
            raise BadInput(f"{p}: modes[{i}] has no 'mode' name")
        if mode in modes:
            raise BadInput(f"{p}: mode {mode!r} appears twice")
        modes[mode] = BusyTime(
            mode,
            prefill_gpu_busy_s=_positive_s(row.get("prefill_gpu_busy_s"), f"{p}: {mode} prefill_gpu_busy_s"),
            decode_step_gpu_busy_s=_positive_s(row.get("decode_step_gpu_busy_s"),
                                               f"{p}: {mode} decode_step_gpu_busy_s"),
            prefill_wall_s=_positive_s(row.get("prefill_wall_s"), f"{p}: {mode} prefill_wall_s"),
            decode_step_wall_s=_positive_s(row.get("decode_step_wall_s"), f"{p}: {mode} decode_step_wall_s"))

    def _int_or_none(key: str) -> int | None:
        v = doc.get(key)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    gpu = doc.get("gpu") if isinstance(doc.get("gpu"), str) else None
    return BusyTimeFile(str(p), model, modes, _int_or_none("ctx_tokens"), _int_or_none("batch"), gpu)


def _check_busy_matches(busy: BusyTimeFile, trial: Any, model: str) -> None:
    """The busy time of another model, context length or batch would silently give wrong host times."""
    if busy.model != model:
        raise BadInput(f"busy-time file {busy.path} measured model {busy.model!r}, not {model!r}")
    spec = trial.spec
    for what, theirs, ours in (("context length", busy.ctx_tokens, spec.ctx_tokens),
                               ("batch size", busy.batch_size, spec.batch_size)):
        if theirs is not None and theirs != ours:
            raise BadInput(f"busy-time file {busy.path} measured {what} {theirs}, but the {spec.mode} trial "
                           f"of {model} ran {what} {ours}")
    gpu = getattr(trial, "gpu_name", None)
    if busy.gpu and gpu and busy.gpu != gpu:
        raise BadInput(f"busy-time file {busy.path} was measured on {busy.gpu!r}, the trials on {gpu!r}")


def _busy_within_wall(busy_s: float, wall_s: float, phase: str, notes: list[str]) -> float:
    """Measured busy time, clipped at the trial's wall time (they come from different runs)."""
    if busy_s <= wall_s:
        return busy_s
    notes.append(f"{phase}: measured GPU busy {busy_s * 1e3:.2f} ms exceeds the trial's wall time "
                 f"{wall_s * 1e3:.2f} ms (different runs); clipped to the wall, host time 0")
    return wall_s

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
    gpu_busy_source: str = BUSY_ESTIMATED  # where the GPU busy time of the phases came from

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
                            eager_gpu_share: str = "mid", overlap_k: float = 8.0,
                            busy: BusyTimeFile | None = None) -> dict[str, TrialInputs]:
    """TrialInputs for each mode of `model`, with the GPU busy time of each phase measured or estimated.

    - a mode present in `busy` (benchmarks/busy_time.py): the measured GPU busy seconds of the
      prefill and of a decode step, set against the TRIAL's wall times (TTFT, TPOT); the host time
      is what is left of the trial's wall (additive: wall - busy; overlap: solved with k). The busy
      run's own wall times are not used: the host-bound wall varies from run to run (eager 28.8 vs
      35.95 ms per step on the same H100 minutes apart) while the GPU work did not (8.44 ms both).
      Busy > wall (possible across runs) is clipped to the wall, with a note.
    - compiled, when not in `busy`: the decode step is one CUDA-graph replay, so GPU busy = step
      wall time (the kernel profile in results/h100/core/benchmark.log: 31.85 ms of CUDA time over
      5 steps = 6.37 ms vs a 6.42 ms step, ~99%); prefill busy = TTFT.
    - any other mode not in `busy` (estimated): the GPU work of a step is at least the compiled
      step's (same bytes, less fusion) and at most the `static` mode's step (same eager kernels with
      a static cache, less host work): `eager_gpu_share` = 'low' | 'mid' | 'high' picks the lower
      bound, the midpoint or the upper bound; prefill busy = TTFT.
    - memory floor of a step: bytes read per step / `bandwidth_bytes_per_s`; the rest of the GPU time
      scales with the SM clock. Prefill: same memory floor for the weights.
    """
    by_mode = {t.spec.mode: t for t in trials if t.spec.model == model and t.status == "ok"}
    if not by_mode:
        raise BadInput(f"no successful trial of {model} in the store")
    measured = busy.modes if busy is not None else {}
    if busy is not None:
        for t in by_mode.values():
            _check_busy_matches(busy, t, model)
    estimated = [m for m in by_mode if m != "compiled" and m not in measured]
    if estimated and "compiled" not in by_mode:
        raise BadInput(f"no compiled trial of {model}: the compiled step time anchors the GPU busy estimate "
                       f"of {', '.join(estimated)} (or measure them: benchmarks/busy_time.py, --busy)")
    comp_tpot_s = by_mode["compiled"].summary["tpot_s_median"] if "compiled" in by_mode else None
    static_tpot_s = by_mode["static"].summary["tpot_s_median"] if "static" in by_mode else comp_tpot_s
    mem_s = decode_bytes_per_step / bandwidth_bytes_per_s
    out: dict[str, TrialInputs] = {}
    for mode, t in by_mode.items():
        s = t.summary
        tpot_s, ttft_s = s["tpot_s_median"], s["ttft_s_median"]
        notes: list[str] = []
        if mode in measured:
            m = measured[mode]
            source = BUSY_MEASURED
            step_gpu_s = _busy_within_wall(m.decode_step_gpu_busy_s, tpot_s, "decode step", notes)
            prefill_gpu_s = _busy_within_wall(m.prefill_gpu_busy_s, ttft_s, "prefill", notes)
            notes.insert(0, f"GPU busy {source}: decode step {m.decode_step_gpu_busy_s * 1e3:.2f} ms of the "
                            f"trial's {tpot_s * 1e3:.2f} ms step (the busy_time run's own step took "
                            f"{m.decode_step_wall_s * 1e3:.2f} ms), prefill {m.prefill_gpu_busy_s * 1e3:.2f} ms "
                            f"of the trial's {ttft_s * 1e3:.2f} ms TTFT (busy_time run: "
                            f"{m.prefill_wall_s * 1e3:.2f} ms); host time solved from the trial's wall and the measured busy")
        elif mode == "compiled":
            source = BUSY_GRAPH
            step_gpu_s, prefill_gpu_s = tpot_s, ttft_s
            notes.append("decode GPU busy = step wall time (CUDA graph replay); prefill busy = TTFT")
        else:
            source = BUSY_ESTIMATED
            lo, hi = min(comp_tpot_s, tpot_s), min(static_tpot_s, tpot_s)  # type: ignore[type-var]
            step_gpu_s = {"low": lo, "mid": 0.5 * (lo + hi), "high": hi}[eager_gpu_share]
            prefill_gpu_s = ttft_s
            notes.append(f"decode GPU busy per step estimated in [{lo * 1e3:.2f}, {hi * 1e3:.2f}] ms "
                         f"(compiled step .. static step); using {eager_gpu_share} = {step_gpu_s * 1e3:.2f} ms "
                         f"of a {tpot_s * 1e3:.2f} ms step; prefill busy = TTFT (estimated)")
        decode = PhaseModel.from_wall(tpot_s, step_gpu_s, mem_s, f_ref_mhz, overlap_k)
        prefill = PhaseModel.from_wall(ttft_s, prefill_gpu_s, mem_s, f_ref_mhz, overlap_k)
        out[mode] = TrialInputs(mode, model, f_ref_mhz, int(s["output_tokens"]), ttft_s, tpot_s,
                                s["energy_gpu_j_median"], s["average_power_w"], idle_power_w, prefill, decode,
                                notes, source)
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
