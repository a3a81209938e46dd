"""The Zeus cross-check on a FakeGPU, with a stand-in for ZeusMonitor that reads the same counter."""

import builtins
from dataclasses import dataclass

import pytest

from wattlens.core.errors import NotMeasured
from wattlens.hw.fake import FakeClock, FakeGPU
from wattlens.meter.energy import EnergyMeter
from wattlens.meter.zeus_check import ZeusCrossCheck, crosscheck_markdown, make_zeus_monitor


@dataclass
class _Measurement:  # the fields of zeus.monitor.Measurement this module uses
    time: float
    gpu_energy: dict


class FakeZeusMonitor:
    """begin/end windows on the fake clock and the FakeGPU's counter, like ZeusMonitor on Volta+."""

    def __init__(self, clock, gpus):
        self.clock, self.gpus, self.open = clock, gpus, {}
        self.calls = []

    def begin_window(self, key, sync_execution=True):
        self.calls.append(("begin", key))
        self.open[key] = (self.clock.now_s(), [g.energy_mj() for g in self.gpus])
        self.clock.advance(0.0002)  # the two tools cannot read at the same instant

    def end_window(self, key, sync_execution=True):
        self.calls.append(("end", key))
        self.clock.advance(0.0002)
        t0, e0 = self.open.pop(key)
        return _Measurement(self.clock.now_s() - t0,
                            {i: (g.energy_mj() - e) / 1000 for i, (g, e) in enumerate(zip(self.gpus, e0))})


def test_crosscheck_rows_agree_within_one_percent_for_long_windows():
    clock = FakeClock()
    gpus = [FakeGPU(clock, 80.0, index=i, update_phase_s=0.03 * i) for i in range(2)]
    meter = EnergyMeter(gpus, clock_ns=clock.now_ns, sleep=clock.sleep, update_period_s=0.1)
    zeus = FakeZeusMonitor(clock, gpus)
    check = ZeusCrossCheck(meter, monitor=zeus)
    targets = [0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 12, 20, 30]
    for k, t in enumerate(targets):
        clock.advance(0.0137 * k)
        with check.window(f"w{k}", target_s=t):
            for g in gpus:
                g.set_power_w(450.0)
            clock.advance(t)
            for g in gpus:
                g.set_power_w(80.0)
    rows = check.rows
    assert len(rows) == 11 and {r.outer for r in rows} == {"zeus", "wattlens"}
    for r in rows:
        assert r.zeus_energy_j > 0 and r.rel_diff_pct is not None
        if r.wattlens_time_s >= 1.0:
            assert abs(r.rel_diff_pct) <= 1.0
        # a difference is explained by the counter's quantisation, which the row states
        assert abs(r.wattlens_energy_j - r.zeus_energy_j) <= r.wattlens_uncertainty_j
    md = crosscheck_markdown(rows)
    assert md.count("\n| w") == 11 and "within 1.0%: 9 of 9" in md


def test_missing_zeus_is_not_measured(monkeypatch):
    real_import = builtins.__import__

    def no_zeus(name, *a, **k):
        if name.startswith("zeus"):
            raise ImportError("No module named 'zeus'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_zeus)
    with pytest.raises(NotMeasured, match="zeus not installed"):
        make_zeus_monitor([0])
