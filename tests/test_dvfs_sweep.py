"""DVFS sweep and phase-aware policy against a FakeGPU whose time and power follow the clock."""

from __future__ import annotations

import pytest

from wattlens.core.errors import ClockControlRefused
from wattlens.dvfs.sweep import (
    FakePhaseWorkload,
    SweepPlan,
    aggregate,
    render_markdown,
    run_sweep,
    table_xi,
    table_xii,
    table_xvi,
)
from wattlens.hw.fake import FakeClock, FakeClockControl, FakeGPU
from wattlens.meter.energy import EnergyMeter


def _setup():
    clock = FakeClock()
    gpu = FakeGPU(clock, power_w=60.0, update_period_s=1e-4)
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep, update_period_s=1e-4, idle_power_w=60.0)
    return gpu, meter


def test_sweep_refuses_without_opt_in_and_calls_no_setter():
    gpu, meter = _setup()
    spy = FakeClockControl(gpu)
    wl = FakePhaseWorkload(gpu)
    with pytest.raises(ClockControlRefused, match="--allow-clock-control"):
        run_sweep(gpu, meter, [wl], SweepPlan((1980, 960)), control=spy)
    assert spy.calls == []
    assert gpu.locked_sm_mhz is None
    assert gpu.clock.now_s() == 0.0  # not a single request ran


def test_sweep_host_bound_vs_gpu_bound_and_tables():
    gpu, meter = _setup()
    # eager-like: 30 ms host per step hides a 7 ms GPU step; compiled-like: GPU-bound 7 ms steps
    eager = FakePhaseWorkload(gpu, model="eager", step_host_s=0.030)
    compiled = FakePhaseWorkload(gpu, model="compiled")
    plan = SweepPlan((1980, 990, 495, 195), repeats=2, phase_policies=((1980, 495),))
    spy = FakeClockControl(gpu)
    pts = run_sweep(gpu, meter, [eager, compiled], plan, allow_clock_control=True, control=spy,
                    controller_kwargs={"sleep": gpu.clock.sleep})
    assert len(pts) == 2 * (4 + 1) * 2
    assert gpu.locked_sm_mhz is None and spy.calls[-1][0] == "reset_sm_clocks"
    # requested vs achieved stored for every window
    for p in pts:
        assert p.achieved_prefill_sm_clock_mhz == p.prefill_clock_mhz
        assert p.achieved_decode_sm_clock_mhz == p.decode_clock_mhz
        assert p.clock_windows[1]["requested_sm_clock_mhz"] == p.decode_clock_mhz
    stats = aggregate(pts)
    xi = {r["model"]: r for r in table_xi(stats)}
    # host-bound decode does not slow down at 195 MHz: GPU step 5 + 2 * 1980/195 = 25 ms < 30 ms host
    assert abs(xi["eager"]["decode_change_pct"]) < 0.5
    assert xi["eager"]["energy_reduction_pct"] > 30
    # GPU-bound decode slows down a lot
    assert xi["compiled"]["decode_change_pct"] > 100
    assert xi["compiled"]["prefill_change_pct"] > 500
    xii = {r["model"]: r for r in table_xii(stats)}
    assert xii["eager"]["edp_optimal_mhz"] < 1980
    xvi = {r["model"]: r for r in table_xvi(stats)}
    # phase-aware: prefill at full clock, so its latency cost is below the uniform-low one
    assert xvi["eager"]["prefill_mhz"] == 1980 and xvi["eager"]["decode_mhz"] == 495
    assert xvi["eager"]["savings_pct"] > 20
    assert xvi["eager"]["latency_change_pct"] < xi["eager"]["latency_change_pct"] + 1e-9
    md = render_markdown(stats)
    assert "Table XI" in md and "Table XVI" in md and "eager" in md


def test_energy_windows_match_truth():
    gpu, meter = _setup()
    wl = FakePhaseWorkload(gpu, decode_steps=10)
    pts = run_sweep(gpu, meter, [wl], SweepPlan((960,), repeats=1), allow_clock_control=True,
                    controller_kwargs={"sleep": gpu.clock.sleep})
    p = pts[0]
    # prefill at 960 MHz: time = 5 ms + 45 ms * 1980/960
    assert p.prefill_s == pytest.approx(0.005 + 0.045 * 1980 / 960, rel=1e-6)
    watts = 120 + 480 * (960 / 1980) ** 3
    assert p.prefill_j == pytest.approx(watts * p.prefill_s, rel=1e-2)
