import json
import math
import time

import numpy as np
import pytest

from wattlens.core.errors import BadInput
from wattlens.hw.fake import FakeClock, FakeGPU
from wattlens.meter.sampler import PowerSampler


def test_manual_sampling_follows_the_script():
    clock = FakeClock()
    gpus = [FakeGPU(clock, 100.0, index=0, sm_clock_mhz=lambda t: 1980 if t < 1.0 else 1500),
            FakeGPU(clock, 200.0, index=1, temperature_c=lambda t: 40.0 + t)]
    gpus[0].add_throttle("sw_power_cap", 1.0, 1.5)
    s = PowerSampler(gpus, interval_s=0.05, clock_ns=clock.now_ns)
    for _ in range(40):  # 2 s
        s.sample_once()
        clock.advance(0.05)
    tl = s.stop()
    assert len(tl) == 40 and tl.power_w.shape == (40, 2)
    assert tl.t_s[1] - tl.t_s[0] == pytest.approx(0.05)
    assert np.allclose(tl.power_w[5:, 0], 100.0) and np.allclose(tl.power_w[5:, 1], 200.0)
    assert tl.sm_clock_mhz[0, 0] == 1980 and tl.sm_clock_mhz[-1, 0] == 1500
    assert tl.temperature_c[-1, 1] == pytest.approx(40.0 + 1.95)
    assert tl.throttle_reasons_between(1.0, 1.49) == ("sw_power_cap",)
    assert tl.throttle_reasons_between(0.0, 0.99) == ()
    assert s.throttle_reasons_between(1.2, 1.3) == ("sw_power_cap",)  # live query, as windows use it
    assert len(tl.between(0.5, 1.0)) == 11
    c = tl.to_compact()
    json.dumps(c)
    assert c["t_s"][:3] == [0.0, 0.05, 0.1] and c["power_w"][1][10] == 200.0
    assert c["gpu_indices"] == [0, 1] and c["throttle_reasons"]["20"] == [["sw_power_cap"], []]


def test_failed_reads_are_nan_not_zero():
    clock = FakeClock()
    gpu = FakeGPU(clock, 100.0)
    gpu.power_w = lambda: (_ for _ in ()).throw(RuntimeError("NVML Unknown Error"))
    s = PowerSampler([gpu], clock_ns=clock.now_ns)
    s.sample_once()
    tl = s.stop()
    assert math.isnan(tl.power_w[0, 0]) and tl.failed_reads == 1
    assert tl.to_compact()["power_w"] == [[None]]


def test_must_sample_twice_per_counter_update():
    with pytest.raises(BadInput):
        PowerSampler([], interval_s=0.06)
    with pytest.raises(BadInput):
        PowerSampler([], interval_s=0.03, update_period_s=0.05)
    PowerSampler([], interval_s=0.025, update_period_s=0.05)


def test_real_thread_samples_and_stops():
    clock = FakeClock()
    gpu = FakeGPU(clock, 123.0)
    with PowerSampler([gpu], interval_s=0.01) as s:  # real perf_counter timestamps
        time.sleep(0.12)
    tl = s.result
    assert 4 <= len(tl) <= 20
    assert np.all(np.diff(tl.t_s) > 0)
    assert abs(tl.t_s[-1] - time.perf_counter()) < 5.0  # same clock as the meter's windows
    assert s._thread is None
