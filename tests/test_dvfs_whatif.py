"""What-if model: time/power forms, the study fit, eager vs compiled on H100 data, measured GPU busy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wattlens.analysis.dvfs_whatif import (
    BUSY_ESTIMATED,
    BUSY_GRAPH,
    BUSY_MEASURED,
    BusyTimeFile,
    PhaseModel,
    PowerModel,
    clock_share_from_slowdown,
    fit_study,
    h100_inputs_from_trials,
    load_busy_time,
    predict,
    study_tables,
    sweep_predictions,
)
from wattlens.core.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]


def test_phase_model_overlap_hides_gpu_slowdown_additive_does_not():
    ov = PhaseModel.from_wall(0.034, 0.007, 0.005, 1980.0, overlap_k=8.0)
    add = PhaseModel.from_wall(0.034, 0.007, 0.005, 1980.0, overlap_k=1.0)
    assert ov.time_s(1980) == pytest.approx(0.034) and add.time_s(1980) == pytest.approx(0.034)
    # at half clock the GPU part is 5 + 2*2 = 9 ms: hidden behind 34 ms of host time when overlapped
    assert ov.time_s(990) / ov.time_s(1980) - 1 < 0.001
    assert add.time_s(990) - add.time_s(1980) == pytest.approx(0.002)


def test_power_model_floor_and_max():
    pm = PowerModel(0.5, 0.4, 2000.0)
    assert pm.relative(2000) == pytest.approx(1.0)
    assert pm.relative(400) == pytest.approx(0.5 + 0.5 * 0.2 * 0.4**2)


def test_clock_share_inverts_the_additive_slowdown():
    c = clock_share_from_slowdown(23.3, 180.0, 2842.0)
    assert (1 - c) + c * 2842 / 180 == pytest.approx(1.233)
    assert clock_share_from_slowdown(-0.5, 180.0) == 0.0


def test_transcribed_tables_are_consistent():
    t = study_tables()
    assert len(t["xi"]) == 15 and len(t["xii"]) == 15 and len(t["xvi"]) == 5
    for r in t["xi"]:  # L = Pre% * PreD + Dec% * DecD, as the paper's numbers satisfy to rounding
        lat = (r["prefill_share_pct"] * r["prefill_change_pct"] + r["decode_share_pct"] * r["decode_change_pct"]) / 100
        assert lat == pytest.approx(r["latency_change_pct"], abs=0.35)
    for r in t["xvi"]:
        assert 100 * (1 - r["low_freq_j"] / r["baseline_j"]) == pytest.approx(r["savings_pct"], abs=0.5)


def test_fit_reproduces_published_energy_within_a_few_percent():
    fit = fit_study()
    assert 0.0 < fit.power.static_share < 1.0
    assert fit.mape_pct["xi_energy_reduction_given_latency"] < 5.0
    assert fit.mape_pct["xvi_low_freq_j_given_latency"] < 5.0
    assert fit.mape_pct["xii_energy_reduction_given_latency"] < 5.0


def test_h100_eager_saves_more_per_latency_than_compiled():
    from wattlens.store.export import results_from_json

    runs, trials = results_from_json(ROOT / "results/h100/core/store-8b.json")
    inputs = h100_inputs_from_trials(trials, "llama-3.1-8b", f_ref_mhz=1980.0, idle_power_w=runs[0].idle_power_w,
                                     decode_bytes_per_step=15.295e9, bandwidth_bytes_per_s=3.0e12)
    pm = PowerModel(0.55, 0.4, 1980.0)
    eager, comp = inputs["eager"], inputs["compiled"]
    assert comp.decode_step.host_s == 0.0 and eager.decode_step.host_s > 0.02
    base = predict(eager, pm, 1980, 1980)
    assert base["latency_s"] == pytest.approx(eager.ttft_s + 63 * eager.tpot_s, rel=1e-6)
    e = {r["sm_clock_mhz"]: r for r in sweep_predictions(eager, pm, [1980, 990])}
    c = {r["sm_clock_mhz"]: r for r in sweep_predictions(comp, pm, [1980, 990])}
    assert e[990]["decode_change_pct"] < 0.5 < c[990]["decode_change_pct"]
    assert e[990]["energy_reduction_pct"] > 5.0
    assert c[990]["latency_change_pct"] > 10 * e[990]["latency_change_pct"]


# ---- measured GPU busy time (benchmarks/busy_time.py, `wattlens dvfs whatif --busy`) ------------------------
def _trial(mode: str, tpot_s: float, ttft_s: float, model: str = "tiny-model", ctx_tokens: int = 2048) -> Any:
    """A stored trial, reduced to what h100_inputs_from_trials reads."""
    return SimpleNamespace(
        spec=SimpleNamespace(model=model, mode=mode, ctx_tokens=ctx_tokens, batch_size=1), status="ok",
        gpu_name="Test GPU",
        summary={"tpot_s_median": tpot_s, "ttft_s_median": ttft_s, "output_tokens": 9, "energy_gpu_j_median": 50.0,
                 "average_power_w": 200.0})


TRIALS = [_trial("eager", 0.030, 0.060), _trial("static", 0.010, 0.070), _trial("compiled", 0.006, 0.050)]


def _busy_json(path: Path, modes: list[dict[str, Any]], **top: Any) -> Path:
    doc = {"model": "tiny-model", "batch": 1, "ctx_tokens": 2048, "decode_steps": 32, "gpu": "Test GPU",
           "modes": modes, **top}
    path.write_text(json.dumps(doc))
    return path


def _busy_mode(mode: str, decode_busy_s: float, prefill_busy_s: float, decode_wall_s: float = 0.025,
               prefill_wall_s: float = 0.065) -> dict[str, Any]:
    return {"mode": mode, "decode_step_gpu_busy_s": decode_busy_s, "prefill_gpu_busy_s": prefill_busy_s,
            "decode_step_wall_s": decode_wall_s, "prefill_wall_s": prefill_wall_s}


def _inputs(busy: BusyTimeFile | None, overlap_k: float = 1.0) -> dict[str, Any]:
    return h100_inputs_from_trials(TRIALS, "tiny-model", f_ref_mhz=2000.0, idle_power_w=100.0,
                                   decode_bytes_per_step=3.0e9, bandwidth_bytes_per_s=3.0e12, overlap_k=overlap_k,
                                   busy=busy)


def test_measured_busy_replaces_the_estimate_with_the_trials_own_wall(tmp_path):
    # the busy_time run's eager step took 25 ms, the trial's 30 ms: busy seconds come from the measurement,
    # wall from the trial, so (additive form) host = 30 - 9 = 21 ms, not 25 - 9 = 16 ms
    busy = load_busy_time(_busy_json(tmp_path / "busy.json", [_busy_mode("eager", 0.009, 0.045)]), "tiny-model")
    measured, estimated = _inputs(busy), _inputs(None)

    eager = measured["eager"]
    assert eager.gpu_busy_source == BUSY_MEASURED
    assert eager.decode_step.gpu_s(2000.0) == pytest.approx(0.009)
    assert eager.decode_step.host_s == pytest.approx(0.021)
    assert eager.decode_step.mem_s == pytest.approx(0.001)  # 3 GB at 3 TB/s
    assert eager.prefill.gpu_s(2000.0) == pytest.approx(0.045)
    assert eager.prefill.host_s == pytest.approx(0.015)
    assert eager.decode_step.time_s(2000.0) == pytest.approx(0.030)  # the trial's TPOT is still reproduced
    assert any(BUSY_MEASURED in n for n in eager.notes)

    # without the measurement: the midpoint of compiled (6 ms) .. static (10 ms) steps, prefill busy = TTFT
    assert estimated["eager"].gpu_busy_source == BUSY_ESTIMATED
    assert estimated["eager"].decode_step.gpu_s(2000.0) == pytest.approx(0.008)
    assert estimated["eager"].prefill.host_s == pytest.approx(0.0)

    # modes absent from the file keep their handling
    assert measured["static"].gpu_busy_source == BUSY_ESTIMATED
    assert measured["static"].decode_step.gpu_s(2000.0) == pytest.approx(0.008)
    assert measured["compiled"].gpu_busy_source == BUSY_GRAPH
    assert measured["compiled"].decode_step.host_s == 0.0

    # the prediction moves with the measurement: more GPU time per step -> larger slowdown at a low clock
    pm = PowerModel(0.55, 0.4, 2000.0)
    slow_measured = predict(eager, pm, 2000, 400)["decode_s"] / predict(eager, pm, 2000, 2000)["decode_s"]
    slow_estimated = (predict(estimated["eager"], pm, 2000, 400)["decode_s"]
                      / predict(estimated["eager"], pm, 2000, 2000)["decode_s"])
    assert slow_measured > slow_estimated > 1.0


def test_measured_busy_above_the_trial_wall_is_clipped_with_a_note(tmp_path):
    busy = load_busy_time(_busy_json(tmp_path / "busy.json", [_busy_mode("eager", 0.040, 0.045)]), "tiny-model")
    eager = _inputs(busy, overlap_k=8.0)["eager"]
    assert eager.decode_step.gpu_s(2000.0) == pytest.approx(0.030)
    assert eager.decode_step.host_s == 0.0
    assert any("clipped" in n and "decode step" in n for n in eager.notes)
    assert not any("clipped" in n and "prefill" in n for n in eager.notes)  # 45 ms busy < 60 ms TTFT


def test_every_mode_measured_needs_no_compiled_anchor(tmp_path):
    busy = load_busy_time(_busy_json(tmp_path / "busy.json", [_busy_mode("eager", 0.009, 0.045)]), "tiny-model")
    only_eager = h100_inputs_from_trials(TRIALS[:1], "tiny-model", f_ref_mhz=2000.0, idle_power_w=100.0,
                                         decode_bytes_per_step=3.0e9, bandwidth_bytes_per_s=3.0e12, busy=busy)
    assert set(only_eager) == {"eager"}
    with pytest.raises(BadInput, match="compiled"):
        h100_inputs_from_trials(TRIALS[:1], "tiny-model", f_ref_mhz=2000.0, idle_power_w=100.0,
                                decode_bytes_per_step=3.0e9, bandwidth_bytes_per_s=3.0e12)


def test_busy_file_of_another_model_is_bad_input(tmp_path):
    path = _busy_json(tmp_path / "busy.json", [_busy_mode("eager", 0.009, 0.045)], model="other-model")
    with pytest.raises(BadInput, match="other-model"):
        load_busy_time(path, "tiny-model")


def test_busy_file_of_another_context_length_is_bad_input(tmp_path):
    busy = load_busy_time(_busy_json(tmp_path / "busy.json", [_busy_mode("eager", 0.009, 0.045)], ctx_tokens=512),
                          "tiny-model")
    with pytest.raises(BadInput, match="context length 512"):
        _inputs(busy)


@pytest.mark.parametrize("content, names", [
    (None, ["no such busy-time file"]),
    ("{not json", ["cannot read"]),
    ('{"model": "tiny-model", "modes": []}', ["modes"]),
    ('{"model": "tiny-model", "modes": [{"decode_step_gpu_busy_s": 0.01}]}', ["modes[0]", "mode"]),
    ('{"model": "tiny-model", "modes": [{"mode": "eager", "decode_step_gpu_busy_s": -1, "prefill_gpu_busy_s": 0.05,'
     ' "decode_step_wall_s": 0.03, "prefill_wall_s": 0.06}]}', ["decode_step_gpu_busy_s", "-1"]),
    ('{"model": "tiny-model", "modes": [{"mode": "eager", "decode_step_gpu_busy_s": 0.01,'
     ' "decode_step_wall_s": 0.03, "prefill_wall_s": 0.06}]}', ["prefill_gpu_busy_s", "None"]),
])
def test_bad_busy_file_is_bad_input(tmp_path, content, names):
    path = tmp_path / "busy.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BadInput) as info:
        load_busy_time(path, "tiny-model")
    for name in names:
        assert name in str(info.value)


def test_whatif_cli_busy_of_another_model_exits_2_before_writing(tmp_path, monkeypatch, capsys):
    from wattlens.cli import app as cli_app

    busy = _busy_json(tmp_path / "busy.json", [_busy_mode("eager", 0.009, 0.045)], model="llama-3.2-1b")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["wattlens", "dvfs", "whatif", "--store",
                                      str(ROOT / "results/h100/core/store-8b.json"), "--model", "llama-3.1-8b",
                                      "--busy", str(busy), "--out", str(out)])
    with pytest.raises(SystemExit) as info:
        cli_app.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error:") and "llama-3.2-1b" in err[0]
    assert not out.exists()


def test_whatif_report_with_measured_busy_on_the_h100_store(tmp_path):
    from wattlens.analysis.dvfs_whatif_report import write_whatif

    write_whatif(ROOT / "results/h100/core/store-8b.json", "llama-3.1-8b", tmp_path,
                 busy=ROOT / "results/h100/dvfs-whatif/busy-8b.json")
    res = json.loads((tmp_path / "whatif.json").read_text())
    assert list(res["bands"]) == ["measured"]  # eager and static measured, compiled a CUDA graph: nothing estimated
    modes = res["bands"]["measured"]
    assert modes["eager"]["inputs"]["gpu_busy_source"] == BUSY_MEASURED
    assert modes["eager"]["inputs"]["decode_gpu_busy_s"] == pytest.approx(0.008437, rel=1e-3)
    assert modes["compiled"]["inputs"]["gpu_busy_source"] == BUSY_GRAPH
    report = (tmp_path / "report.md").read_text()
    assert BUSY_MEASURED in report and "estimated (" not in report
    eager_edp, comp_edp = (modes[m]["summary"]["edp_optimal"] for m in ("eager", "compiled"))
    assert eager_edp["decode_change_pct"] < 0.5 < comp_edp["decode_change_pct"]
