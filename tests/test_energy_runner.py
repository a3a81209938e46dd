"""Phase energy wired into the trial runner: a FakeGPU session with a scripted backend, and a CPU trial."""

from types import SimpleNamespace

import pytest

from wattlens.core.results import EnergyWindow, Repetition
from wattlens.core.spec import TrialSpec
from wattlens.hw.fake import FakeClock, FakeGPU
from wattlens.meter.energy import EnergyMeter
from wattlens.runner import trial as trial_mod

IDLE_W, PREFILL_W, DECODE_W = 70.0, 600.0, 350.0
PREFILL_S, STEP_S = 0.065, 0.008  # per decode token


class ScriptedBackend:
    """Generates on the fake clock: prefill at PREFILL_W, then one STEP_S step per token at DECODE_W."""

    def __init__(self, clock, gpu):
        self.clock, self.gpu, self.calls = clock, gpu, []

    def generate(self, input_ids, attention_mask, gen_tokens, on_token=None):
        self.calls.append(gen_tokens)
        self.gpu.set_power_w(PREFILL_W)
        self.clock.advance(PREFILL_S)
        if on_token:
            on_token(0, self.clock.now_ns())
        self.gpu.set_power_w(DECODE_W)
        self.clock.advance(STEP_S * (gen_tokens - 1))
        self.gpu.set_power_w(IDLE_W)


def test_measure_phases_stores_both_methods_with_named_keys(monkeypatch):
    clock = FakeClock()
    gpu = FakeGPU(clock, IDLE_W, update_phase_s=0.042)
    meter = EnergyMeter([gpu], clock_ns=clock.now_ns, sleep=clock.sleep, update_period_s=0.1, idle_power_w=IDLE_W)
    session = SimpleNamespace(gpus=[gpu], meter=meter)
    backend = ScriptedBackend(clock, gpu)
    spec = TrialSpec(model="tiny-llama", ctx_tokens=16, gen_tokens=64)
    w = EnergyWindow("rep0", 0, 1)
    reps = [Repetition(0, 16, 64, 1, (PREFILL_S,), PREFILL_S + 63 * STEP_S, w)]

    # A thread cannot poll a fake clock: the poller reads the counter at the hook and when stopped.
    # Make the poller read every ms of fake time instead, by wrapping the clock's advance.
    import wattlens.meter.phases as phases_mod
    real_poller = phases_mod.CounterPoller
    pollers = []

    def poller_factory(*a, **k):
        p = real_poller(*a, **k)
        pollers.append(p)
        p.start = lambda: p
        p.stop = lambda: p.sample_once()
        return p

    monkeypatch.setattr(phases_mod, "CounterPoller", poller_factory)
    real_advance = clock.advance

    def advance(s):
        n = int(s / 0.001)
        for _ in range(n):
            real_advance(0.001)
            for p in pollers:
                p.sample_once()
        real_advance(s - n * 0.001)

    monkeypatch.setattr(clock, "advance", advance)
    prompt = SimpleNamespace(input_ids=None, attention_mask=None)
    payload = trial_mod.measure_phases(session, backend, prompt, spec, reps, min_updates=30, boundary_runs=10)
    s = payload["summary"]
    true_pre, true_dec = PREFILL_W * PREFILL_S, DECODE_W * STEP_S * 63
    for m in ("subtraction", "boundary"):
        assert s[f"prefill_energy_gpu_j_{m}"] == pytest.approx(true_pre, rel=0.05), m
        assert s[f"decode_energy_gpu_j_{m}"] == pytest.approx(true_dec, rel=0.03), m
        assert s[f"prefill_energy_gpu_uncertainty_j_{m}"] is not None
        assert payload["methods"][m]["method"] == m
    assert 1 in backend.calls and 64 in backend.calls  # a prefill-only pass and full generations ran
    assert s["prefill_time_s"] == pytest.approx(PREFILL_S)
    assert s["phase_share_method"] == "subtraction"
    assert s["prefill_share_pct"] + s["decode_share_pct"] == pytest.approx(100.0)
    assert abs(s["prefill_energy_methods_rel_diff_pct"]) < 5.0
    assert len(payload["boundary_marks_ns"]) >= 10


@pytest.mark.slow
def test_cpu_trial_with_phases_stores_times_and_says_why_no_energy(tmp_path):
    from cpu_trial import run_cpu_trial

    from wattlens.store.sqlite import ResultStore

    db = tmp_path / "r.sqlite"
    spec = TrialSpec(model="tiny-llama", ctx_tokens=16, gen_tokens=4, repeats=2, warmups=0, dtype="fp32",
                     overrides=(("num_hidden_layers", 1),))
    result = run_cpu_trial(db, spec, phases=True)
    assert result.status == "ok", result.error
    s = result.summary
    assert s["prefill_time_s"] > 0 and s["decode_time_s"] > 0
    assert "CPU" in s["phase_energy_not_measured_reason"]
    assert s["host_energy_label"].startswith(("measured", "not measured: "))
    with ResultStore(db) as store:
        (art,) = store.load_artifacts(trial_id=result.trial_id, kind="phase_energy")
    assert art.payload["summary"]["prefill_time_s"] == s["prefill_time_s"]
