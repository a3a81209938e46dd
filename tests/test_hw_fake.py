"""FakeGPU must behave like the real counter: exact integral, but only at update ticks."""

import math

import pytest

from wattlens.core.errors import BadInput
from wattlens.hw.device import GPUDevice, throttle_reason_names
from wattlens.hw.fake import FakeClock, FakeGPU, busy_all


def test_fake_gpu_is_a_gpu_device():
    assert isinstance(FakeGPU(FakeClock()), GPUDevice)


def test_counter_moves_only_at_ticks_and_holds_the_exact_integral():
    clock = FakeClock()
    gpu = FakeGPU(clock, 100.0, update_period_s=0.1, update_phase_s=0.0, energy_offset_mj=1000)
    e0 = gpu.energy_mj()
    assert e0 == 1000
    clock.advance(0.099)
    assert gpu.energy_mj() == e0  # no tick yet
    clock.advance(0.001)
    assert gpu.energy_mj() == 1000 + 10_000  # 100 W * 0.1 s = 10 J
    clock.advance(0.05)
    assert gpu.energy_mj() == 11_000  # still the value of the last tick
    assert gpu.power_w() == pytest.approx(100.0)


def test_busy_phase_scripting_and_true_energy():
    clock = FakeClock()
    gpu = FakeGPU(clock, 60.0)
    clock.advance(1.0)
    gpu.busy(0.070, 500.0)  # prefill 70 ms at 500 W
    gpu.busy(0.5, 300.0)  # decode 0.5 s at 300 W
    assert clock.now_s() == pytest.approx(1.57)
    assert gpu.true_energy_j(1.0, 1.07) == pytest.approx(35.0)
    assert gpu.true_energy_j(1.07, 1.57) == pytest.approx(150.0)
    assert gpu.true_energy_j(0.0, 1.0) == pytest.approx(60.0)
    clock.advance(0.2)
    assert gpu.true_energy_j(1.57, 1.77) == pytest.approx(12.0)  # back to base power


def test_step_list_and_function_profiles():
    clock = FakeClock()
    steps = FakeGPU(clock, [(0.0, 100.0), (1.0, 200.0)])
    assert steps.true_energy_j(0.5, 1.5) == pytest.approx(150.0)
    fn = FakeGPU(clock, lambda t: 100.0 + 100.0 * t)  # ramp
    assert fn.true_energy_j(0.0, 2.0) == pytest.approx(400.0, rel=1e-6)
    with pytest.raises(BadInput):
        fn.set_power_w(10.0)


def test_phase_and_other_period():
    clock = FakeClock()
    gpu = FakeGPU(clock, 100.0, update_period_s=0.05, update_phase_s=0.02)
    assert gpu.last_tick_s(0.019) == pytest.approx(-0.03)
    assert gpu.last_tick_s(0.02) == pytest.approx(0.02)
    assert gpu.last_tick_s(0.1) == pytest.approx(0.07)


def test_injected_glitches():
    clock = FakeClock()
    gpu = FakeGPU(clock, 100.0, temperature_c=lambda t: 30.0 + t)
    gpu.counter_jump(1.0, -50_000)
    gpu.add_process(4242, 0.5, 1.5)
    gpu.add_throttle("sw_power_cap", 0.8, 1.2)
    clock.set_s(0.95)
    before = gpu.energy_mj()
    assert gpu.compute_pids() == (4242,)
    assert gpu.throttle_reasons() == ("sw_power_cap",)
    assert gpu.temperature_c() == pytest.approx(30.95)
    clock.set_s(1.0)
    assert gpu.energy_mj() < before  # counter went backwards
    clock.set_s(1.6)
    assert gpu.compute_pids() == ()
    assert gpu.throttle_reasons() == ()


def test_busy_all_runs_one_phase_on_several_gpus():
    clock = FakeClock()
    gpus = [FakeGPU(clock, 50.0, index=i) for i in range(2)]
    busy_all(gpus, 1.0, [200.0, 300.0])
    assert [g.true_energy_j(0, 1.0) for g in gpus] == pytest.approx([200.0, 300.0])
    clock.advance(1.0)
    assert gpus[1].true_energy_j(1.0, 2.0) == pytest.approx(50.0)


def test_throttle_reason_names_drop_idle():
    assert throttle_reason_names(0x1 | 0x4 | 0x40) == ("sw_power_cap", "hw_thermal")
    assert throttle_reason_names(0) == ()
    assert throttle_reason_names(0x1000)[0].startswith("unknown_")
    assert math.isfinite(FakeGPU(FakeClock()).power_limit_w())
