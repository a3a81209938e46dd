"""Host CPU use per window (/proc/stat busy and steal, this process's CPU time), with a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest_store import make_run, make_trial

from wattlens.analysis.report import render_markdown
from wattlens.hw.host_cpu import HostCpuMeter, parse_proc_stat


def _stat(user, nice, system, idle, iowait, irq, softirq, steal) -> str:
    return (f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} 0 0\n"
            f"cpu0 {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} 0 0\nintr 1 2 3\n")


def test_parse_proc_stat_groups_busy_idle_and_steal():
    t = parse_proc_stat(_stat(100, 5, 20, 800, 10, 3, 2, 60))
    assert (t.busy, t.idle, t.steal, t.total) == (130, 810, 60, 1000)
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1 2 3\n")


def test_window_shares_own_cpu_time_and_steal_flag(tmp_path: Path):
    (tmp_path / "stat").write_text(_stat(1000, 0, 0, 9000, 0, 0, 0, 0))
    (tmp_path / "loadavg").write_text("1.50 1.00 0.50 2/300 1234\n")
    clock = iter([0, 2_000_000_000])
    own = iter([10.0, 11.8])
    meter = HostCpuMeter(tmp_path, clock_ns=lambda: next(clock), process_cpu_s=lambda: next(own))
    meter.start()
    # 1000 ticks later: 300 busy, 600 idle, 100 stolen by the hypervisor
    (tmp_path / "stat").write_text(_stat(1300, 0, 0, 9600, 0, 0, 0, 100))
    use = meter.stop()
    assert use.busy_pct == pytest.approx(30.0) and use.steal_pct == pytest.approx(10.0)
    assert use.own_cpu_s == pytest.approx(1.8) and use.duration_s == pytest.approx(2.0)
    assert use.loadavg_1m_start == 1.5 and use.flags == ["host_cpu_steal:10%"]
    assert use.to_dict()["host_cpu_steal_pct"] == pytest.approx(10.0)


def test_no_proc_stat_says_why(tmp_path: Path):
    meter = HostCpuMeter(tmp_path / "missing")
    meter.start()
    use = meter.stop()
    assert use.busy_pct is None and use.steal_pct is None
    assert "cannot read" in use.not_measured_reason and use.own_cpu_s is not None


def test_steal_flag_shown_in_the_report():
    t = make_trial()
    t.summary["host_cpu_flags"] = ["host_cpu_steal:7%"]
    assert "host_cpu_steal:7%" in render_markdown([t], [make_run()])


def test_cpu_trial_records_host_cpu_use(tmp_path: Path):
    """A real (tiny, CPU) trial stores the host figures; on Linux /proc/stat is readable."""
    from cpu_trial import run_cpu_trial

    from wattlens.core.spec import TrialSpec

    result = run_cpu_trial(tmp_path / "h.sqlite",
                           TrialSpec(model="tiny-llama", ctx_tokens=8, gen_tokens=4, repeats=2, device="cpu"))
    s = result.summary
    assert result.status == "ok" and s["host_process_cpu_s"] >= 0 and s["host_cpu_window_s"] > 0
    if Path("/proc/stat").exists():
        assert s["host_cpu_not_measured_reason"] is None or "tick" in s["host_cpu_not_measured_reason"]
