"""EnergyMeter against FakeGPUs whose true energy is known exactly."""

import os
import random

import pytest

from wattlens.core.errors import NotMeasured
from wattlens.core.results import EnergyWindow
from wattlens.hw.fake import FakeClock, FakeGPU, busy_all
from wattlens.meter.energy import MIN_UPDATES, EnergyMeter, cooldown


def rig(n_gpus=1, idle_w=60.0, **kw):
    clock = FakeClock()
    gpus = [FakeGPU(clock, idle_w, index=i, **kw) for i in range(n_gpus)]
    meter = EnergyMeter(gpus, clock_ns=clock.now_ns, sleep=clock.sleep)
    return clock, gpus, meter


def truth(gpu, w: EnergyWindow) -> float:
    return gpu.true_energy_j(w.start_ns / 1e9, w.end_ns / 1e9)


@pytest.mark.parametrize("period_s, phase_s", [(0.1, 0.0), (0.1, 0.0371), (0.05, 0.013), (0.02, 0.0)])
def test_detect_update_period(period_s, phase_s):
    clock, (gpu,), meter = rig(update_period_s=period_s, update_phase_s=phase_s)
    clock.advance(0.2345)
    got = meter.detect_update_period(max_wait_s=1.0)
    assert got == pytest.approx(period_s, abs=0.0011)  # poll step is 1 ms
    assert meter.update_period_s == got
    assert clock.now_s() < 0.2345 + 1.0  # stopped as soon as it had enough ticks


def test_detect_update_period_frozen_counter_is_not_measured():
    clock, (gpu,), meter = rig(idle_w=0.0)
    with pytest.raises(NotMeasured, match="moved 0 times"):
        meter.detect_update_period(max_wait_s=0.5)


def test_long_window_equals_true_integral_within_stated_uncertainty():
    clock, (gpu,), meter = rig(update_phase_s=0.043)
    meter.detect_update_period()
    clock.advance(0.0123)
    with meter.window("generate") as w:
        gpu.busy(0.070, 500.0)  # prefill
        gpu.busy(2.93, 300.0)  # decode
    r = w.result
    true_j = truth(gpu, r)
    assert r.measured and r.not_measured_reason is None
    assert r.counter_updates == 30 and "short_window" not in r.flags
    assert abs(r.energy_gpu_j - true_j) <= r.energy_gpu_uncertainty_j
    assert r.energy_gpu_uncertainty_j == pytest.approx(0.1 * 300.0, rel=0.05)  # P * power
    assert abs(r.energy_gpu_j - true_j) / true_j < 0.04
    assert r.per_gpu_energy_j == (r.energy_gpu_j,)
    assert r.energy_gpu_active_j is None  # no idle baseline measured yet


def test_short_window_flagged_and_uncertainty_covers_true_error():
    rnd = random.Random(1)
    worst_ratio = 0.0
    for _ in range(300):
        clock, (gpu,), meter = rig(idle_w=300.0, update_phase_s=rnd.uniform(0, 0.1))
        meter.update_period_s = 0.1
        clock.advance(rnd.uniform(0.2, 0.5))
        with meter.window("short") as w:
            gpu.busy(rnd.uniform(0.01, 1.5), 300.0)
        r = w.result
        err = abs(r.energy_gpu_j - truth(gpu, r))
        assert "short_window" in r.flags
        assert r.counter_updates < MIN_UPDATES
        assert err <= r.energy_gpu_uncertainty_j + 1e-3
        worst_ratio = max(worst_ratio, err / r.energy_gpu_uncertainty_j)
    assert worst_ratio > 0.8  # the bound is tight, not vacuous


def test_uncertainty_covers_a_phase_starting_with_the_window():
    """Idle before the window, busy inside (>= 2 periods): the boundary power readings cover it."""
    rnd = random.Random(2)
    for _ in range(200):
        clock, (gpu,), meter = rig(idle_w=60.0, update_phase_s=rnd.uniform(0, 0.1))
        meter.update_period_s = 0.1
        clock.advance(1.0)
        with meter.window("w") as w:
            gpu.busy(rnd.uniform(0.2, 1.0), 450.0)
        r = w.result
        assert abs(r.energy_gpu_j - truth(gpu, r)) <= r.energy_gpu_uncertainty_j + 1e-3


def test_counter_backwards_gives_no_energy_and_says_why():
    clock, (gpu,), meter = rig()
    meter.update_period_s = 0.1
    gpu.counter_jump(1.05, -1_000_000)
    with meter.window("w") as w:
        clock.advance(2.0)
    r = w.result
    assert "counter_backwards" in r.flags
    assert r.energy_gpu_j is None and r.energy_gpu_uncertainty_j is None and r.energy_gpu_active_j is None
    assert "backwards" in r.not_measured_reason and not r.measured


def test_foreign_process_flagged_own_and_allowed_not():
    clock, (gpu,), meter = rig()
    meter.update_period_s = 0.1
    gpu.add_process(os.getpid())
    gpu.add_process(999_999_1, 0.0, 0.5)  # gone before the window: not flagged
    gpu.add_process(999_999_2, 1.5)  # appears during the window: seen at the end boundary
    gpu.add_process(999_999_3)
    meter.allowed_pids.add(999_999_3)
    clock.advance(1.0)
    with meter.window("w") as w:
        clock.advance(2.0)
    flags = w.result.flags
    assert "foreign_process:9999992" in flags
    assert not any(f in flags for f in ("foreign_process:9999991", "foreign_process:9999993",
                                       f"foreign_process:{os.getpid()}"))
    assert w.result.measured  # flagged, still measured


def test_throttle_flagged_at_boundaries_and_from_sampler():
    clock, (gpu,), meter = rig()
    meter.update_period_s = 0.1
    gpu.add_throttle("sw_power_cap", 0.0, 0.5)
    gpu.add_throttle("hw_thermal", 1.0, 1.2)  # only inside the window: needs the sampler
    gpu.add_throttle("applications_clocks_setting", 0.0)  # clocks set on purpose: ignored
    from wattlens.meter.sampler import PowerSampler

    sampler = PowerSampler([gpu], interval_s=0.05, clock_ns=clock.now_ns)
    meter.sampler = sampler
    with meter.window("w") as w:
        for _ in range(40):
            sampler.sample_once()
            clock.advance(0.05)
    assert "throttle:sw_power_cap" in w.result.flags
    assert "throttle:hw_thermal" in w.result.flags
    assert "throttle:applications_clocks_setting" not in w.result.flags
    meter.sampler = None
    with meter.window("after") as w2:
        clock.advance(2.0)
    assert not any(f.startswith("throttle:") and "applications" not in f for f in w2.result.flags)


def test_several_gpus_summed():
    clock, gpus, meter = rig(n_gpus=3)
    meter.update_period_s = 0.1
    with meter.window("tp") as w:
        busy_all(gpus, 3.0, [200.0, 300.0, 400.0])
    r = w.result
    assert len(r.per_gpu_energy_j) == 3
    assert r.energy_gpu_j == pytest.approx(sum(r.per_gpu_energy_j))
    assert r.per_gpu_energy_j == pytest.approx([600.0, 900.0, 1200.0], abs=0.1 * 400)
    true_j = sum(truth(g, r) for g in gpus)
    assert abs(r.energy_gpu_j - true_j) <= r.energy_gpu_uncertainty_j
    assert r.energy_gpu_uncertainty_j == pytest.approx(0.1 * (200 + 300 + 400), rel=0.1)


def test_idle_power_measured_and_subtracted():
    clock, gpus, meter = rig(n_gpus=2, idle_w=70.0, update_phase_s=0.031)
    meter.detect_update_period()
    idle_w = meter.measure_idle_power(5.0)
    assert idle_w == pytest.approx(140.0, rel=0.005)
    assert meter.idle_power_w == idle_w
    with meter.window("w") as w:
        busy_all(gpus, 3.0, 370.0)
    r = w.result
    assert r.idle_power_w == idle_w
    assert r.energy_gpu_active_j == pytest.approx(r.energy_gpu_j - idle_w * r.duration_s)
    assert r.energy_gpu_active_j == pytest.approx(2 * 300.0 * 3.0, abs=r.energy_gpu_uncertainty_j + 5)


def test_no_gpu_windows_say_not_measured_never_zero():
    clock = FakeClock()
    meter = EnergyMeter([], clock_ns=clock.now_ns, sleep=clock.sleep,
                        not_measured_reason="NVML Library Not Found")
    assert meter.detect_update_period() is None and meter.measure_idle_power(1.0) is None
    with meter.window("outer") as outer:
        with meter.window("inner") as inner:
            clock.advance(1.0)
    for r in (outer.result, inner.result):
        assert r.energy_gpu_j is None and r.energy_gpu_active_j is None and r.per_gpu_energy_j == ()
        assert r.not_measured_reason == "no NVIDIA GPU: NVML Library Not Found"
    assert inner.result.duration_s == 1.0
    amp = meter.measure_amplified(lambda: clock.advance(0.07), min_updates=5)
    assert amp.energy_per_call_j is None and "no NVIDIA GPU" in amp.not_measured_reason


def test_for_visible_gpus_without_driver_gives_a_meter_that_says_why():
    meter = EnergyMeter.for_visible_gpus()
    if meter.gpus:
        pytest.skip("a real GPU is present")
    with meter.window("w") as w:
        pass
    assert w.result.not_measured_reason.startswith("no NVIDIA GPU: ")
    assert w.result.energy_gpu_j is None


def test_nested_and_overlapping_windows_and_sync_calls():
    clock = FakeClock()
    gpu = FakeGPU(clock, 100.0)
    syncs = []
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep,
                        sync=lambda: syncs.append(clock.now_s()))
    meter.update_period_s = 0.1
    with meter.window("generate") as gen:
        with meter.window("prefill") as pre:
            gpu.busy(1.0, 500.0)
        with meter.window("decode") as dec:
            gpu.busy(2.0, 300.0)
    assert len(syncs) == 6
    assert gen.result.start_ns == pre.result.start_ns and dec.result.end_ns == gen.result.end_ns
    assert gen.result.energy_gpu_j == pytest.approx(pre.result.energy_gpu_j + dec.result.energy_gpu_j)
    assert pre.result.energy_gpu_j == pytest.approx(500.0, abs=pre.result.energy_gpu_uncertainty_j)


def test_window_result_set_when_block_raises():
    clock, (gpu,), meter = rig()
    with pytest.raises(ValueError):
        with meter.window("boom") as w:
            clock.advance(0.5)
            raise ValueError("x")
    assert "exception" in w.result.flags and "update_period_assumed" in w.result.flags


def _amplify(min_updates, phase_s, spread=True):
    clock, (gpu,), meter = rig(idle_w=60.0, update_phase_s=phase_s)
    meter.update_period_s = 0.1
    meter.idle_power_w = 60.0
    return meter.measure_amplified(lambda: gpu.busy(0.070, 500.0), min_updates=min_updates,
                                   spread_phase=spread)


def test_amplification_recovers_a_70ms_phase_within_5_percent():
    true_j = 0.070 * 500.0
    for phase in (0.0, 0.013, 0.029, 0.051, 0.077, 0.093):
        amp = _amplify(20, phase)
        assert amp.calls >= 4 * 29
        assert abs(amp.energy_per_call_j - true_j) / true_j < 0.05
        assert abs(amp.energy_per_call_j - true_j) <= amp.uncertainty_per_call_j
        assert amp.energy_active_per_call_j == pytest.approx(amp.energy_per_call_j - 60.0 * 0.07, rel=1e-6)
        assert amp.duration_per_call_s == pytest.approx(0.07)
        assert len(amp.windows) == 4 and all("short_window" not in w.flags for w in amp.windows)
        assert amp.window.energy_gpu_j == pytest.approx(sum(w.energy_gpu_j for w in amp.windows))


def test_amplification_error_shrinks_with_more_calls_as_predicted():
    true_j = 35.0
    phases = [i * 0.0097 for i in range(10)]
    small = [_amplify(20, p) for p in phases]
    large = [_amplify(200, p) for p in phases]
    for a in small + large:
        assert abs(a.energy_per_call_j - true_j) <= a.uncertainty_per_call_j
    ratio = small[0].uncertainty_per_call_j / large[0].uncertainty_per_call_j
    assert ratio == pytest.approx(large[0].calls / small[0].calls, rel=0.05)  # worst case ~ 1/calls
    mean_err_small = sum(abs(a.energy_per_call_j - true_j) for a in small) / len(small)
    mean_err_large = sum(abs(a.energy_per_call_j - true_j) for a in large) / len(large)
    assert mean_err_large < mean_err_small / 4
    # the statistical estimate is the right size: mean |error| within a few std
    assert mean_err_small < 3 * small[0].uncertainty_per_call_std_j


def test_amplification_without_spread_is_one_window():
    amp = _amplify(20, 0.05, spread=False)
    assert len(amp.windows) == 1 and amp.calls == 29
    assert abs(amp.energy_per_call_j - 35.0) <= amp.uncertainty_per_call_j


def test_cooldown_waits_until_near_idle_temperature():
    clock = FakeClock()
    gpu = FakeGPU(clock, 60.0, temperature_c=lambda t: 35.0 + 40.0 * 0.5 ** (t / 10.0))  # halves every 10 s
    out = cooldown([gpu], max_wait_s=120, idle_temp_c=35.0, within_c=5.0, sleep=clock.sleep,
                   clock_ns=clock.now_ns)
    assert out["reached"] is True
    assert out["start_temperature_c"] == [75.0]
    assert out["end_temperature_c"][0] <= 40.0
    assert 29.0 <= out["waited_s"] <= 31.0  # 40 C -> 5 C above idle takes 3 half-lives


def test_cooldown_target_gives_up_at_max_wait_and_fixed_wait():
    clock = FakeClock()
    gpu = FakeGPU(clock, 60.0, temperature_c=80.0)
    out = cooldown([gpu], max_wait_s=10, target_temp_c=50.0, sleep=clock.sleep, clock_ns=clock.now_ns)
    assert out["reached"] is False and out["waited_s"] == pytest.approx(10.0)
    out = cooldown([gpu], max_wait_s=7, sleep=clock.sleep, clock_ns=clock.now_ns)
    assert out["reached"] is True and out["waited_s"] == pytest.approx(7.0) and "fixed" in out["criterion"]
    cool = FakeGPU(clock, 60.0, temperature_c=30.0)
    out = cooldown([cool], max_wait_s=10, target_temp_c=50.0, min_wait_s=2.0, sleep=clock.sleep,
                   clock_ns=clock.now_ns)
    assert out["reached"] is True and out["waited_s"] == pytest.approx(2.0)
    assert "not_measured_reason" in cooldown([], max_wait_s=1)
