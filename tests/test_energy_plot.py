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


def test_counter_overlays_come_from_the_energy_windows_and_the_phase_figures(tmp_path):
    """The power reading is a long average; the plot adds each repetition's counter mean (with its
    worst case) and a phase method's prefill / decode mean power."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest_store import make_trial

    from wattlens.analysis.timeline_plot import phase_mean_power, plot_timeline, repetition_mean_power

    trial = make_trial()
    first = trial.repetitions[0].energy
    bars = repetition_mean_power(trial, t0_s=first.start_ns / 1e9 - 0.25)
    assert len(bars) == len(trial.repetitions)
    start, end, watts, unc = bars[0]
    assert start == 0.25 and end == 0.25 + 2.0
    assert watts == 600.0 / 2.0 and unc == 3.5 / 2.0
    summary = {"prefill_energy_gpu_j_subtraction": 47.0, "prefill_time_s_subtraction": 0.0705,
               "decode_energy_gpu_j_subtraction": 228.0, "decode_time_s_subtraction": 0.6}
    method, pre, dec = phase_mean_power(summary)
    assert method == "subtraction" and round(pre) == 667 and dec == 380.0
    assert phase_mean_power({}) is None
    out = plot_timeline(_timeline_payload(), tmp_path / "o.png", "t", counter_power=[(0.5, 1.5, 320.0, 20.0)],
                        phase_power=("subtraction", 500.0, 300.0))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
