"""`wattlens plot timeline` draws a stored timeline with prefill/decode shaded."""

from pathlib import Path

from typer.testing import CliRunner

from wattlens.cli.app import app
from wattlens.hw.fake import FakeClock, FakeGPU
from wattlens.meter.sampler import PowerSampler
from wattlens.store.sqlite import ResultStore


def _timeline_payload():
    clock = FakeClock()
    gpu = FakeGPU(clock, 70.0, sm_clock_mhz=lambda t: 1980 if t < 1.0 else 1755,
                  temperature_c=lambda t: 40 + 5 * t)
    gpu.add_throttle("sw_power_cap", 1.0, 1.2)
    sampler = PowerSampler([gpu], interval_s=0.05, clock_ns=clock.now_ns)
    for k in range(40):
        gpu.set_power_w(500.0 if 10 <= k < 12 else 300.0 if 12 <= k < 30 else 70.0)
        sampler.sample_once()
        clock.advance(0.05)
    payload = sampler.stop().to_compact()
    payload["phase_marks_s"] = [[0.5, 0.6, 1.5]]
    return payload


def test_plot_timeline_writes_a_png(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest_store import make_run, make_trial

    db = tmp_path / "r.sqlite"
    trial = make_trial()
    with ResultStore(db) as store:
        store.start_run(make_run())
        store.save_trial(trial)
        store.save_artifact(trial.run_id, "power_timeline", "trial", _timeline_payload(), trial_id=trial.trial_id)
    out = tmp_path / "t.png"
    r = CliRunner().invoke(app, ["plot", "timeline", trial.trial_id, "--db", str(db), "--out", str(out)])
    assert r.exit_code == 0, r.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    r = CliRunner().invoke(app, ["plot", "timeline", "nosuchtrial", "--db", str(db), "--out", str(out)])
    assert r.exit_code == 2
