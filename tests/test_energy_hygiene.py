"""Contamination flags reach the reports, cooldown records its start temperature, RAPL and carbon."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest_store import make_run, make_trial  # noqa: E402

from wattlens.analysis.carbon import J_PER_KWH, carbon_from_energy, grid_table  # noqa: E402
from wattlens.analysis.report import render_markdown  # noqa: E402
from wattlens.core.errors import BadInput  # noqa: E402
from wattlens.hw.fake import FakeClock, FakeGPU  # noqa: E402
from wattlens.hw.rapl import RaplMeter, delta_uj  # noqa: E402
from wattlens.meter.energy import EnergyMeter, cooldown  # noqa: E402
from wattlens.runner.trial import _cooldown_record  # noqa: E402


def test_throttle_foreign_process_and_backwards_counter_all_flagged_in_one_window():
    clock = FakeClock()
    gpu = FakeGPU(clock, 80.0)
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep, update_period_s=0.1)
    gpu.add_throttle("hw_thermal", 0.0, 10.0)
    gpu.add_process(4_000_000_001, 0.0, 10.0)  # not this process, not its child
    gpu.counter_jump(0.5, -2_000_000)  # a reset-sized drop: the window ends below its start
    with meter.window("contaminated") as h:
        gpu.busy(3.0, 400.0)
    w = h.result
    assert "throttle:hw_thermal" in w.flags
    assert "foreign_process:4000000001" in w.flags
    assert "counter_backwards" in w.flags and w.energy_gpu_j is None


def test_phase_table_and_flags_shown_in_the_report():
    t = make_trial()
    t.summary.update({
        "phase_methods": ["subtraction", "boundary"], "prefill_time_s": 0.07, "decode_time_s": 1.9,
        "prefill_energy_gpu_j_subtraction": 36.4, "prefill_energy_gpu_uncertainty_j_subtraction": 0.8,
        "decode_energy_gpu_j_subtraction": 610.0, "decode_energy_gpu_uncertainty_j_subtraction": 2.0,
        "prefill_share_pct_subtraction": 5.63, "decode_share_pct_subtraction": 94.37,
        "phase_flags_subtraction": ["throttle:sw_power_cap"],
        "prefill_energy_gpu_j_boundary": 37.0, "phase_flags_boundary": [], "start_temperature_c": 41.0,
    })
    md = render_markdown([t], [make_run()])
    assert "## Prefill and decode" in md
    assert "36.4 ± 0.8" in md and "5.63" in md and "| boundary |" in md
    assert "subtraction:throttle:sw_power_cap" in md  # in the main table's flags too
    assert "41" in md


def test_phase_table_shows_the_time_each_method_measured_and_its_mean_power():
    """A method's energy goes with its own duration (a one-token call, its own runs), not the
    repetitions' TTFT: energy / that duration is the mean power a reader can check."""
    t = make_trial()
    t.summary.update({
        "phase_methods": ["subtraction", "boundary"], "prefill_time_s": 0.032, "decode_time_s": 0.551,
        "prefill_energy_gpu_j_subtraction": 8.82, "prefill_time_s_subtraction": 0.0397,
        "decode_energy_gpu_j_subtraction": 200.0, "decode_time_s_subtraction": 0.5486,
        "prefill_energy_gpu_j_boundary": 4.97, "prefill_time_s_boundary": 0.0380,
        "decode_energy_gpu_j_boundary": 202.1,
    })
    md = render_markdown([t], [make_run()])
    sub = next(line for line in md.splitlines() if "| subtraction |" in line)
    bnd = next(line for line in md.splitlines() if "| boundary |" in line)
    assert "| 39.7 | 548.6 | 222.2 | 364.6 |" in sub
    assert "| 38.0 | 551.0 | 130.8 | — |" in bnd  # no boundary decode time stored: the reps' median, no power


def test_cooldown_waits_until_within_n_degrees_of_idle_and_records_start_temperature():
    clock = FakeClock()
    gpu = FakeGPU(clock, 60.0, temperature_c=lambda t: 35.0 + 30.0 * math.exp(-t / 20.0))
    info = cooldown([gpu], max_wait_s=300, within_c=5.0, idle_temp_c=35.0, poll_s=1.0,
                    sleep=clock.sleep, clock_ns=clock.now_ns)
    assert info["reached"] and info["end_temperature_c"][0] <= 40.0
    assert info["start_temperature_c"][0] == pytest.approx(65.0)
    assert 20 * math.log(6) - 1 <= info["waited_s"] <= 20 * math.log(6) + 1.01
    rec = _cooldown_record(info)
    assert rec["start_temperature_c"] == info["end_temperature_c"][0] and rec["cooldown_reached"] is True


def test_idle_power_gives_active_energy():
    clock = FakeClock()
    gpu = FakeGPU(clock, 70.0, update_phase_s=0.03)
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep, update_period_s=0.1)
    assert meter.measure_idle_power(3.0) == pytest.approx(70.0, rel=0.01)
    with meter.window("w") as h:
        gpu.busy(4.0, 370.0)
    assert h.result.energy_gpu_active_j == pytest.approx(300.0 * 4.0, abs=h.result.energy_gpu_uncertainty_j + 3)


def _zone(root: Path, name: str, zone: str, energy_uj: int, max_uj: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(zone + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def test_rapl_reads_package_and_dram_with_wraparound(tmp_path):
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", 262_143_000_000, 262_143_328_850)
    dram = _zone(tmp_path, "intel-rapl:0:0", "dram", 5_000_000, 65_712_999_613)
    _zone(tmp_path, "intel-rapl:0:1", "core", 1, 100)  # not a package or DRAM zone: ignored
    m = RaplMeter(tmp_path)
    assert m.available and len(m.zones) == 2
    m.start()
    (pkg / "energy_uj").write_text("1000000\n")  # wrapped past max_energy_range_uj
    (dram / "energy_uj").write_text("7500000\n")
    e = m.stop()
    assert e.not_measured_reason is None
    assert e.energy_cpu_j == pytest.approx((262_143_328_850 - 262_143_000_000 + 1 + 1_000_000) / 1e6)
    assert e.energy_dram_j == pytest.approx(2.5)
    assert e.to_dict()["host_energy_label"] == "measured (RAPL)"
    assert delta_uj(10, 5, 20) == 16


def test_rapl_absent_or_unreadable_says_not_measured(tmp_path):
    e = RaplMeter(tmp_path / "nope").stop()
    assert e.energy_cpu_j is None and "no powercap sysfs" in e.not_measured_reason
    assert e.to_dict()["host_energy_label"].startswith("not measured: ")
    (tmp_path / "empty").mkdir()
    assert "no intel-rapl zones" in RaplMeter(tmp_path / "empty").stop().not_measured_reason
    broken = _zone(tmp_path / "b", "intel-rapl:0", "package-0", 1, 10)
    (broken / "energy_uj").unlink()
    (broken / "energy_uj").mkdir()  # unreadable as a file
    assert RaplMeter(tmp_path / "b").stop().not_measured_reason


def test_carbon_is_modelled_from_a_sourced_table():
    table = grid_table()
    assert all(row.source and row.year for row in table.values())
    est = carbon_from_energy(J_PER_KWH, "fr")  # 1 kWh in France
    assert est.carbon_gco2e == pytest.approx(table["FR"].gco2e_per_kwh)
    assert est.to_dict()["carbon_label"] == "modelled"
    with_pue = carbon_from_energy(3.6e6, "US", pue=1.5)
    assert with_pue.carbon_gco2e == pytest.approx(1.5 * table["US"].gco2e_per_kwh)
    assert carbon_from_energy(7.2e6, gco2e_per_kwh=100).carbon_gco2e == pytest.approx(200)
    with pytest.raises(BadInput, match="no sourced grid intensity"):
        carbon_from_energy(1.0, "atlantis")
    with pytest.raises(BadInput, match="PUE"):
        carbon_from_energy(1.0, "US", pue=0.9)


def test_phase_agreement_table_states_the_difference():
    from wattlens.analysis.phase_agreement import phase_agreement_markdown

    t = make_trial()
    t.summary.update({"phase_methods": ["subtraction", "boundary"], "prefill_time_s": 0.07, "decode_time_s": 0.6,
                      "prefill_energy_gpu_j_subtraction": 40.0, "prefill_energy_gpu_uncertainty_j_subtraction": 0.6,
                      "prefill_energy_gpu_j_boundary": 41.0, "prefill_energy_gpu_uncertainty_j_boundary": 0.8,
                      "decode_energy_gpu_j_subtraction": 200.0, "decode_energy_gpu_j_boundary": 198.0})
    md = phase_agreement_markdown([t])
    assert "| 2.50 | 1.0 | yes |" in md  # +2.5%, 1.0 combined sigma, within 5%
    assert "prefill: methods differ by at most 2.50%" in md and "1 of 1 trials agree within 2 combined sigma" in md
    assert "| 40.00 ± 0.60 | 1.50 ✓ |" in md  # sigma in % of the energy against the 5% target
    assert "1 sigma within 5%: subtraction 1 of 1, boundary 1 of 1" in md
    t.summary.update({"prefill_energy_gpu_j_boundary": 30.0, "prefill_energy_gpu_uncertainty_j_boundary": 3.0})
    md = phase_agreement_markdown([t])
    assert "| 30.00 ± 3.00 | 10.00 ✗ |" in md and "| -25.00 | 3.3 | no |" in md


def test_delay_sensitivity_inverts_a_late_counter():
    """Fitted powers made by a counter 15 ms late map back to the true ones at 15 ms, not at 0."""
    from wattlens.analysis.phase_agreement import _fit_late_counter, delay_sensitivity
    from wattlens.meter.phases import RunMarks, spread_offset_s

    marks, t = [], 1.0
    for j in range(8):
        t += spread_offset_s(j, 0.1)
        marks.append(RunMarks(int(t * 1e9), int((t + 0.04) * 1e9), int((t + 0.6) * 1e9)))
        t += 0.6
    true = (120.0, 400.0, 360.0)
    fits = [_fit_late_counter(marks, true, 0.015, 0.1, k / 160) for k in range(16)]
    fitted = {s: sum(f["power_w"][s] for f in fits) / len(fits) for s in ("other", "prefill", "decode")}
    assert fitted["prefill"] < 0.9 * true[1]  # the late counter hides prefill energy
    marks_ns = [[m.start_ns, m.first_token_ns, m.end_ns] for m in marks]
    back = delay_sensitivity(marks_ns, fitted, 0.015)["power_w"]
    assert [back[s] for s in ("other", "prefill", "decode")] == pytest.approx(true, rel=1e-6)
    assert delay_sensitivity(marks_ns, fitted, 0.0)["power_w"]["prefill"] == pytest.approx(fitted["prefill"])


def test_report_carbon_section_is_labelled_modelled():
    from wattlens.analysis.report import carbon_section

    t = make_trial()
    md = carbon_section([t], "FR", pue=1.2)
    e = t.summary["energy_gpu_j_median"]
    expected = e / J_PER_KWH * 1.2 * grid_table()["FR"].gco2e_per_kwh
    assert "Carbon (modelled)" in md and "PUE 1.2" in md and "Our World in Data" in md
    assert f"{expected:.4g}" in md


def test_counter_poller_thread_records_ticks():
    import time

    from wattlens.meter.phases import CounterPoller

    class Ticking:  # a counter that moves every 5 ms of real time
        index = 0

        def __init__(self):
            self.t0 = time.perf_counter()

        def energy_mj(self):
            return int((time.perf_counter() - self.t0) / 0.005) * 100

    p = CounterPoller([Ticking()], poll_s=0.0005).start()
    time.sleep(0.06)
    p.stop()
    ticks = p.ticks(0)
    assert len(ticks) >= 5
    gaps = [b[0] - a[0] for a, b in zip(ticks, ticks[1:])]
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(0.005, abs=0.002)


def test_small_backwards_step_inside_a_window_is_caught_by_the_sampler():
    from wattlens.meter.sampler import PowerSampler

    clock = FakeClock()
    gpu = FakeGPU(clock, 80.0)
    sampler = PowerSampler([gpu], interval_s=0.05, clock_ns=clock.now_ns)
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep, update_period_s=0.1, sampler=sampler)
    gpu.counter_jump(1.0, -60_000)  # -60 J: more than one tick gains (40 J), far less than the window (1190 J)
    with meter.window("w") as h:
        for _ in range(60):
            gpu.set_power_w(400.0)
            clock.advance(0.05)
            sampler.sample_once()
    assert "counter_backwards" in h.result.flags and h.result.energy_gpu_j is None
    with meter.window("clean") as h2:
        for _ in range(30):
            clock.advance(0.05)
            sampler.sample_once()
    assert "counter_backwards" not in h2.result.flags and h2.result.energy_gpu_j is not None
