"""Sweeps end to end on tiny CPU models: ordering (each model built once), resume after an
interrupt, a failed trial stored while the sweep goes on, and bench results through the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

import wattlens.runner.trial as trial_mod  # noqa: E402
from wattlens.cli.app import app  # noqa: E402
from wattlens.core.spec import TrialSpec  # noqa: E402
from wattlens.runner.sweep import plan_from_dict  # noqa: E402
from wattlens.store.sqlite import ResultStore  # noqa: E402

runner = CliRunner()

SWEEP_YAML = """\
models: [tiny-llama, tiny-gqa]
ctx: [16, 24]
gen: 4
mode: eager
dtype: fp32
repeats: 2
warmups: 0
"""


def _sweep(spec: Path, db: Path):
    return runner.invoke(app, ["sweep", str(spec), "--db", str(db), "--quick"], env={"COLUMNS": "250"})


def _stored(db: Path):
    with ResultStore(db) as store:
        return store.load_trials()


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP_YAML)
    return path


@pytest.fixture
def count_builds(monkeypatch):
    built: list[str] = []
    real = trial_mod.build_model

    def counting(source, dtype, device, *args, **kwargs):
        built.append(source.name)
        return real(source, dtype, device, *args, **kwargs)

    monkeypatch.setattr(trial_mod, "build_model", counting)
    return built


def test_plan_groups_trials_so_each_model_is_built_once():
    plan = plan_from_dict({"models": ["tiny-llama", "tiny-gqa"], "ctx": [16, 24],
                           "set": [{"num_hidden_layers": 1}, {"num_hidden_layers": 2}], "gen": 4})
    keys = [s.model_key() for s in plan.specs]
    assert len(plan.specs) == 8
    # the grid varies `set` fastest; sorted, each model key forms one contiguous block
    blocks = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(blocks) == len(set(keys)) == 4
    assert [s.ctx_tokens for s in plan.specs[:2]] == [16, 24]  # YAML order kept within a model


def test_sweep_runs_stores_ok_trials_and_builds_each_model_once(sweep_file, tmp_path, count_builds):
    db = tmp_path / "r.sqlite"
    result = _sweep(sweep_file, db)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "4 trials stored" in result.stdout and "0 failed" in result.stdout
    assert count_builds == ["tiny-llama", "tiny-gqa"]
    trials = _stored(db)
    assert len(trials) == 4 and all(t.status == "ok" for t in trials)
    assert {(t.spec.model, t.spec.ctx_tokens) for t in trials} == {
        ("tiny-llama", 16), ("tiny-llama", 24), ("tiny-gqa", 16), ("tiny-gqa", 24)}
    for t in trials:
        assert len(t.repetitions) == 2
        assert all(r.output_tokens == 4 for r in t.repetitions)
        assert t.repetitions[0].input_tokens == t.spec.ctx_tokens
        assert t.weights == "random"
    assert len({t.run_id for t in trials}) == 1


def test_interrupted_sweep_exits_130_and_resumes(sweep_file, tmp_path, monkeypatch):
    db = tmp_path / "r.sqlite"
    real_run_trial = trial_mod.run_trial
    calls: list[str] = []

    def interrupting(spec, *args, **kwargs):
        calls.append(spec.trial_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_run_trial(spec, *args, **kwargs)

    monkeypatch.setattr(trial_mod, "run_trial", interrupting)
    first = _sweep(sweep_file, db)
    assert first.exit_code == 130, (first.output, first.exception)
    assert "interrupted" in first.stderr
    stored = _stored(db)
    assert len(stored) == 2 and all(t.status == "ok" for t in stored)

    resumed_calls: list[str] = []

    def counting(spec, *args, **kwargs):
        resumed_calls.append(spec.trial_id)
        return real_run_trial(spec, *args, **kwargs)

    monkeypatch.setattr(trial_mod, "run_trial", counting)
    second = _sweep(sweep_file, db)
    assert second.exit_code == 0, (second.output, second.exception)
    assert "resuming: 2 of 4 trials already stored, 2 to run" in second.stdout
    assert len(resumed_calls) == 2
    assert set(resumed_calls).isdisjoint({t.trial_id for t in stored})
    final = _stored(db)
    assert len(final) == 4 and all(t.status == "ok" for t in final)
    assert len({t.trial_id for t in final}) == 4
    assert len({t.run_id for t in final}) == 2

    third = _sweep(sweep_file, db)
    assert third.exit_code == 0 and "nothing to do" in third.stdout
    assert len(resumed_calls) == 2


def test_failed_trial_is_stored_with_its_error_and_the_sweep_goes_on(sweep_file, tmp_path, monkeypatch):
    db = tmp_path / "r.sqlite"
    real = trial_mod.build_model

    def oom_for_gqa(source, dtype, device, *args, **kwargs):
        if source.name == "tiny-gqa":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(source, dtype, device, *args, **kwargs)

    monkeypatch.setattr(trial_mod, "build_model", oom_for_gqa)
    result = _sweep(sweep_file, db)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "2 failed" in result.stdout
    assert "trial failed" in result.stderr
    trials = {(t.spec.model, t.spec.ctx_tokens): t for t in _stored(db)}
    assert len(trials) == 4
    for ctx in (16, 24):
        ok, failed = trials[("tiny-llama", ctx)], trials[("tiny-gqa", ctx)]
        assert ok.status == "ok" and ok.error is None and len(ok.repetitions) == 2
        assert failed.status == "failed"
        assert failed.error == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
        assert failed.repetitions == []
        assert "traceback" in failed.summary
    # a failed trial is not 'finished': a rerun retries exactly those
    monkeypatch.setattr(trial_mod, "build_model", real)
    rerun = _sweep(sweep_file, db)
    assert rerun.exit_code == 0
    assert "resuming: 2 of 4 trials already stored, 2 to run" in rerun.stdout
    with ResultStore(db) as store:
        assert len(store.finished_trial_ids("ok")) == 4


def test_trials_stored_from_another_gpu_are_run_again(sweep_file, tmp_path, monkeypatch):
    """A store that holds these trials from another GPU resumes nothing: the same spec has the
    same trial id on every GPU."""
    import sqlite3

    import wattlens.runner.session as session_mod

    monkeypatch.setattr(session_mod, "target_gpu_name", lambda device="auto": None)  # this sweep: the CPU
    db = tmp_path / "r.sqlite"
    assert _sweep(sweep_file, db).exit_code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE trials SET gpu_name = 'NVIDIA H100 80GB HBM3'")
    again = _sweep(sweep_file, db)
    assert again.exit_code == 0, (again.output, again.exception)
    assert "resuming" not in again.stdout and "nothing to do" not in again.stdout
    gpus = sorted(str(t.gpu_name) for t in _stored(db))
    assert gpus == ["NVIDIA H100 80GB HBM3"] * 4 + ["None"] * 4
    assert "nothing to do" in _sweep(sweep_file, db).stdout  # and on the CPU they are now done


def test_bench_result_round_trips_through_the_store(tmp_path):
    from cpu_trial import run_cpu_trial

    db = tmp_path / "r.sqlite"
    spec = TrialSpec(model="tiny-moe", ctx_tokens=16, gen_tokens=4, repeats=2, warmups=0, dtype="fp32",
                     overrides=(("num_hidden_layers", 1),))
    result = run_cpu_trial(db, spec)
    assert result.status == "ok", result.error
    assert "the trial runs on the CPU" in result.summary["energy_not_measured_reason"]

    with ResultStore(db) as store:
        (loaded,) = store.load_trials(trial_id=result.trial_id)
        runs = store.load_runs(result.run_id)
    assert loaded.spec == spec and loaded.trial_id == spec.trial_id
    assert loaded.status == "ok" and loaded.weights == "random" and loaded.run_id == result.run_id
    assert loaded.memory == result.memory
    assert loaded.repetitions == result.repetitions
    assert loaded.summary["tpot_s_median"] == pytest.approx(result.summary["tpot_s_median"])
    assert loaded.summary["itl_s_list"] == result.summary["itl_s_list"]
    assert loaded.summary["e2e_s_p95"] == result.summary["e2e_s_p95"]
    assert loaded.summary["energy_gpu_j_median"] is None
    assert loaded.model_facts["params_active"] == result.model_facts["params_active"]
    assert loaded.model_facts["params_active"] < loaded.model_facts["params_total"]  # MoE
    assert len(runs) == 1 and runs[0].command == "test" and runs[0].finished_at


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_trial_records_its_setup_time_and_where_compilation_went(tmp_path, mode):
    """Each trial keeps the wall time of its model preparation and warm-ups (compile and capture
    included) and, outside eager, torch.compile's seconds per phase: the GPT-OSS study's GPU time
    is mostly compilation, and this says which part of it."""
    from cpu_trial import run_cpu_trial

    spec = TrialSpec(model="tiny-llama", ctx_tokens=12, gen_tokens=4, repeats=1, warmups=1, dtype="fp32", mode=mode,
                     overrides=(("num_hidden_layers", 1),))
    result = run_cpu_trial(tmp_path / "r.sqlite", spec)
    assert result.status == "ok", result.error
    backend = result.model_facts["backend"]
    assert backend["setup_s"] >= 0 and backend["setup_warmups"] == 1
    if mode == "eager":
        assert "compile_s_by_phase" not in backend
    else:
        phases = backend["compile_s_by_phase"]  # phases of >= 0.5 s only: empty when caches were warm
        assert isinstance(phases, dict) and all(v >= 0.5 for v in phases.values())
        # dynamo's own time runs on this thread inside the setup; backend phases (C++/Triton builds
        # in worker processes) may add up to more than the wall time, so only this one is bounded
        assert phases.get("_compile.compile_inner", 0.0) <= backend["setup_s"] + 0.01


def test_compile_seconds_since_reports_the_phases_of_a_new_compile():
    import torch

    from wattlens.backends.hf import compile_seconds_by_phase, compile_seconds_since

    before = compile_seconds_by_phase()
    torch.compile(lambda x: (x * 3).cos())(torch.ones(4))
    grown = compile_seconds_since(before, min_s=0.0)
    assert grown.get("_compile.compile_inner", 0.0) > 0
    assert list(grown.values()) == sorted(grown.values(), reverse=True)
    assert compile_seconds_since(compile_seconds_by_phase(), min_s=0.01) == {}  # nothing compiled since
