"""Mixed-size (ragged) batches end to end: the spec and its stable id, the left-padded synthetic
batch, sweep YAML, the runner on CPU (eager and static), the store, and the dataset rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest_store import make_run, make_trial

from wattlens.core.errors import BadInput
from wattlens.core.spec import TrialSpec
from wattlens.runner.sweep import plan_from_dict
from wattlens.workloads.mixed import mixed_batches

# Ids computed before prompt_lengths existed: stored trials must keep them.
PINNED_IDS = {
    "130536551ebff786": TrialSpec(model="tiny-llama"),
    "670700ddaa99e75f": TrialSpec(model="llama-3.2-1b", ctx_tokens=1000, gen_tokens=1000, batch_size=8,
                                  mode="static", overrides=(("num_hidden_layers", 8),)),
}


def test_uniform_spec_ids_unchanged_and_field_left_out():
    for trial_id, spec in PINNED_IDS.items():
        assert spec.trial_id == trial_id
        assert "prompt_lengths" not in spec.to_dict()
        assert TrialSpec.from_dict(spec.to_dict()) == spec


def test_ragged_spec_validates_and_round_trips_from_lists():
    spec = TrialSpec.ragged_batch("tiny-llama", [30, 7, 12], gen_tokens=4)
    assert (spec.batch_size, spec.ctx_tokens, spec.prompt_lengths) == (3, 30, (30, 7, 12))
    spec.validate()
    d = json.loads(json.dumps(spec.to_dict()))  # what the store writes: a list
    assert d["prompt_lengths"] == [30, 7, 12]
    back = TrialSpec.from_dict(d)
    assert back == spec and back.trial_id == spec.trial_id and back.trial_id not in PINNED_IDS
    assert spec.row_input_tokens() == (30, 7, 12)
    assert TrialSpec(model="m", batch_size=2).row_input_tokens() == (128, 128)
    for bad in (dict(prompt_lengths=(5, 3), batch_size=3, ctx_tokens=5),  # batch != count
                dict(prompt_lengths=(5, 3), batch_size=2, ctx_tokens=8),  # ctx != longest
                dict(prompt_lengths=(5, 0), batch_size=2, ctx_tokens=5)):
        with pytest.raises(BadInput):
            TrialSpec(model="tiny-llama", **bad).validate()
    with pytest.raises(BadInput):
        TrialSpec.ragged_batch("tiny-llama", [])


def test_ragged_synthetic_batch_left_pads_and_keeps_seeded_rows():
    pytest.importorskip("torch")
    from wattlens.workloads.inputs import ragged_synthetic_batch, synthetic_batch, verify_lengths

    lengths = [6, 2, 9, 1]
    b = ragged_synthetic_batch(lengths, 50, seed=3, avoid_token_ids=[7, None], pad_token_id=5)
    assert tuple(b.input_ids.shape) == (4, 9) and b.input_tokens == 9 and b.row_tokens == tuple(lengths)
    assert b.ragged and b.attention_mask.sum(dim=1).tolist() == lengths
    uniform = synthetic_batch(4, 9, 50, seed=3, avoid_token_ids=[7, 5])
    for row, n in enumerate(lengths):
        assert b.attention_mask[row, : 9 - n].tolist() == [0] * (9 - n)
        assert b.input_ids[row, : 9 - n].tolist() == [5] * (9 - n)
        assert b.input_ids[row, 9 - n :].tolist() == uniform.input_ids[row, 9 - n :].tolist()
        real = b.input_ids[row, 9 - n :]
        assert not bool(((real == 5) | (real == 7)).any())  # pad and avoided ids never drawn
    assert (ragged_synthetic_batch(lengths, 50).input_ids[1, :7] == 0).all()  # no pad id given: 0
    b.attention_mask[0, -1] = 0  # a broken mask is a bug, caught
    with pytest.raises(RuntimeError):
        verify_lengths(b, 9)
    for bad in ([], [3, 0], "abc", [2, True]):
        with pytest.raises(BadInput):
            ragged_synthetic_batch(bad, 50)
    with pytest.raises(BadInput):
        ragged_synthetic_batch([3], 50, pad_token_id=50)


def test_mixed_batches_log_uniform_seeded():
    a = mixed_batches(6, [8, 16, 32], 32, 1000, seed=1)
    assert a == mixed_batches(6, [8, 16, 32], 32, 1000, seed=1)
    assert a != mixed_batches(6, [8, 16, 32], 32, 1000, seed=2)
    assert [len(x) for x in a] == [8, 16, 32, 8, 16, 32]
    flat = [n for x in a for n in x]
    assert min(flat) >= 32 and max(flat) <= 1000
    assert sum(n < 178 for n in flat) > 0.25 * len(flat)  # log-uniform: ~half below the geometric mean
    for bad in ((0, [8], 1, 2), (1, [], 1, 2), (1, [8], 0, 2), (1, [8], 5, 2), (1, [8.0], 1, 2)):
        with pytest.raises(BadInput):
            mixed_batches(*bad)


def test_sweep_yaml_prompt_lengths_sets_batch_and_ctx():
    plan = plan_from_dict({"models": "tiny-llama", "prompt_lengths": [[3, 9, 5], [4, 2]], "gen": 4,
                           "mode": ["eager", "static"]})
    assert len(plan.specs) == 4
    shapes = {(s.prompt_lengths, s.batch_size, s.ctx_tokens) for s in plan.specs}
    assert shapes == {((3, 9, 5), 3, 9), ((4, 2), 2, 4)}
    ok = plan_from_dict({"models": "tiny-llama", "prompt_lengths": [[3, 9]], "batch": 2, "ctx": 9})
    assert ok.specs[0].prompt_lengths == (3, 9)
    for bad in ({"batch": 3}, {"ctx": 8}, {"batch": [2, 3]}):
        with pytest.raises(BadInput, match="contradicts prompt_lengths"):
            plan_from_dict({"models": "tiny-llama", "prompt_lengths": [[3, 9]], **bad})
    for lengths in ([3, 9], [[]], [[3, "x"]], [[0, 2]]):
        with pytest.raises(BadInput, match="prompt_lengths"):
            plan_from_dict({"models": "tiny-llama", "prompt_lengths": lengths})


def test_check_spec_refuses_compiled_and_text():
    pytest.importorskip("torch")
    from wattlens.runner.trial import check_spec

    spec = TrialSpec.ragged_batch("tiny-llama", [3, 8], gen_tokens=2, device="cpu")
    check_spec(spec)
    with pytest.raises(BadInput, match="use eager, static or graphed"):
        check_spec(spec.with_(mode="compiled"))
    check_spec(spec.with_(mode="graphed"))
    with pytest.raises(BadInput, match="synthetic prompts only"):
        check_spec(spec.with_(prompt="text"))


@pytest.mark.parametrize("mode,model_name", [("eager", "tiny-llama"), ("static", "tiny-llama"), ("graphed", "tiny-llama"),
                                             ("graphed", "tiny-gqa"), ("graphed", "tiny-moe")])
def test_ragged_generation_matches_each_prompt_alone(mode, model_name):
    """The mask does its job: a left-padded row generates what the prompt generates unbatched."""
    pytest.importorskip("transformers")
    from wattlens.backends.hf import HFBackend
    from wattlens.core.spec import SamplingSpec
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model
    from wattlens.workloads.inputs import ragged_synthetic_batch

    model = build_model(resolve_model(model_name), "fp32", "cpu")
    batch = ragged_synthetic_batch([11, 4, 7], model.config.vocab_size, seed=2)
    backend = HFBackend(model, mode, SamplingSpec())
    out = backend.generate(batch.input_ids, batch.attention_mask, 5)
    assert tuple(out.output_ids.shape) == (3, 5)
    for row, n in enumerate(batch.row_tokens):
        ids = batch.input_ids[row : row + 1, 11 - n :]
        alone = HFBackend(model, mode, SamplingSpec()).generate(ids, ids.new_ones(ids.shape), 5)
        assert alone.output_ids[0].tolist() == out.output_ids[row].tolist()


def test_ragged_sweep_runs_on_cpu_and_round_trips_through_store_and_json(tmp_path):
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from wattlens.cli.app import app
    from wattlens.store import ResultStore, export
    from wattlens.store.export import import_json, results_from_json

    sweep = tmp_path / "ragged.yaml"
    sweep.write_text("models: tiny-llama\nprompt_lengths: [[3, 9, 5]]\ngen: 4\nmode: [eager, static]\n"
                     "dtype: fp32\nrepeats: 2\nwarmups: 0\n")
    db = tmp_path / "r.sqlite"
    res = CliRunner().invoke(app, ["sweep", str(sweep), "--db", str(db), "--quick"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    with ResultStore(db) as store:
        trials = store.load_trials()
        out = export(store, tmp_path / "all.json", table="all")
    assert len(trials) == 2 and all(t.status == "ok" for t in trials)
    for t in trials:
        assert t.spec.prompt_lengths == (3, 9, 5) and t.spec.batch_size == 3 and t.spec.ctx_tokens == 9
        assert all(r.output_tokens == 4 and r.batch_size == 3 for r in t.repetitions)
    _, back = results_from_json(out)
    assert {t.trial_id for t in back} == {t.trial_id for t in trials}
    assert all(t.spec.prompt_lengths == (3, 9, 5) for t in back)
    with ResultStore(tmp_path / "b.sqlite") as other:
        import_json(other, out)
        assert {t.spec for t in other.load_trials()} == {t.spec for t in trials}


def test_store_round_trip_of_a_hand_built_ragged_trial(tmp_path):
    from wattlens.store import ResultStore

    t = make_trial(prompt_lengths=(40, 128))
    with ResultStore(tmp_path / "s.sqlite") as s:
        s.start_run(make_run())
        s.save_trial(t)
        (loaded,) = s.load_trials()
    assert loaded.spec == t.spec and loaded.trial_id == t.trial_id


def test_dataset_rows_skip_ragged_and_mixed_rows_keep_them():
    from wattlens.analysis.predict_dataset import MIXED_COLUMNS, mixed_rows_from_trials, rows_from_trials

    uniform, ragged = make_trial(), make_trial(prompt_lengths=(40, 128))
    rows = rows_from_trials([uniform, ragged])
    assert {r["trial_id"] for r in rows} == {uniform.trial_id}
    (m,) = mixed_rows_from_trials([uniform, ragged])
    assert set(m) == set(MIXED_COLUMNS)
    assert json.loads(m["prompt_lengths_json"]) == [40, 128] and m["padded_input_tokens"] == 128
    assert m["energy_batch_j"] == pytest.approx(610.0)  # median of 600, 610, 620 J
    assert m["energy_batch_uncertainty_j"] == pytest.approx(5.0)  # half the IQR beats the windows' 3.5 J
    assert m["batch_size"] == 2 and m["output_tokens"] == 8 and m["trial_id"] == ragged.trial_id


# ---- results/predictor/analyse.py: the mixed-size path on a synthetic set ----------------------

GPU = "NVIDIA H100 80GB HBM3"
SCALE = {"llama-3.2-1b": 1.0, "llama-3.2-3b": 2.4, "qwen2.5-0.5b": 0.5}


def _energy_batch_j(model: str, lengths, gen: int) -> float:
    """A known, made-up formula (test only): per prompt, input and output terms, times model size."""
    return SCALE[model] * sum(0.02 * n + 0.5 * gen + 3.0 for n in lengths)


def _trial(model: str, lengths, gen: int = 256):
    from wattlens.core.results import EnergyWindow, Repetition, TrialResult

    ragged = len(set(lengths)) > 1
    spec = (TrialSpec.ragged_batch(model, lengths, gen_tokens=gen, mode="static", repeats=2) if ragged else
            TrialSpec(model, ctx_tokens=lengths[0], gen_tokens=gen, batch_size=len(lengths), mode="static",
                      repeats=2))
    e = _energy_batch_j(model, lengths, gen)
    reps = [Repetition(index=i, input_tokens=spec.ctx_tokens, output_tokens=gen, batch_size=spec.batch_size,
                       token_times_s=tuple(0.01 * (k + 1) for k in range(gen)), e2e_s=0.01 * gen + 0.001,
                       energy=EnergyWindow(name=f"rep{i}", start_ns=i * 10**10, end_ns=i * 10**10 + 10**9,
                                           energy_gpu_j=e * (1 + 0.01 * i), energy_gpu_uncertainty_j=0.5,
                                           update_period_s=0.1, per_gpu_energy_j=(e,)))
            for i in range(2)]
    return TrialResult(spec=spec, run_id=make_run().run_id, weights="random", gpu_name=GPU, repetitions=reps,
                       started_at="2026-11-21T10:01:00+00:00")


def _load_analyse():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "results" / "predictor" / "analyse.py"
    spec = importlib.util.spec_from_file_location("predictor_analyse", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_analyse_writes_mixed_size_validation(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from wattlens.analysis import predictor as P
    from wattlens.store import ResultStore, export

    monkeypatch.setattr(P, "N_TREES", {"random_forest": 30, "physics_residual": 20, "physics_residual_boosting": 20, "xgb_tree": 30,
                                       "xgb_linear": 30})
    trials = [_trial(m, [c] * b) for m in SCALE for c in (32, 128, 512, 1000) for b in (8, 16, 32)]
    mixed_sets = mixed_batches(4, [8, 16], 32, 1000, seed=0)
    trials += [_trial(m, lengths) for m in ("llama-3.2-1b", "qwen2.5-0.5b") for lengths in mixed_sets]
    with ResultStore(tmp_path / "s.sqlite") as s:
        s.start_run(make_run())
        for t in trials:
            s.save_trial(t)
        exported = export(s, tmp_path / "all.json", table="all")
    out = tmp_path / "out"
    assert _load_analyse().main([str(exported), "--dataset", str(tmp_path / "d.csv"), "--out", str(out),
                                 "--repeats", "1"]) == 0
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "d.csv")) == 36  # ragged trials are not training rows
    md = (out / "mixed_size.md").read_text()
    assert "8 measured batches" in md and "own input length" in md and "padded input length" in md
    assert md.count("| llama-3.2-1b | static |") == 4 and md.count("| qwen2.5-0.5b | static |") == 4
    learner = md.split("Learner: `")[1].split("`")[0]
    assert learner in P.available_learners()
    assert (out / "mixed_size.png").stat().st_size > 1000


def test_bench_prompt_lengths_runs_a_ragged_trial_and_rejects_bad_lists(tmp_path, monkeypatch, capsys):
    """`wattlens bench --prompt-lengths 5,9,13`: batch 3, ctx 13, every row gets its output tokens;
    a malformed list or a lean-loop mode (compiled, graphed) exits 2 with one line and stores nothing."""
    from typer.testing import CliRunner

    from wattlens.cli.app import app

    db = tmp_path / "r.sqlite"
    res = CliRunner().invoke(app, ["bench", "--model", "tiny-llama", "--prompt-lengths", "5,9,13", "--gen", "4",
                                   "--repeats", "2", "--device", "cpu", "--quick", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["status"] == "ok" and out["spec"]["prompt_lengths"] == [5, 9, 13]
    assert (out["spec"]["batch_size"], out["spec"]["ctx_tokens"]) == (3, 13)
    assert [r["output_tokens"] for r in out["repetitions"]] == [4, 4]
    import sys

    from wattlens.cli.app import main

    for bad in (["--prompt-lengths", "5,x"], ["--prompt-lengths", "5,9", "--mode", "compiled"]):
        other = tmp_path / "bad.sqlite"
        monkeypatch.setattr(sys, "argv", ["wattlens", "bench", "--model", "tiny-llama", "--device", "cpu",
                                          "--db", str(other), *bad])
        with pytest.raises(SystemExit) as info:
            main()
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
        assert not other.exists()


def test_dataset_rows_carry_the_static_cache_the_decode_steps_attended_over():
    from dataclasses import replace

    from wattlens.analysis.predict_dataset import rows_from_trials

    fresh = make_trial(mode="graphed")  # no record: input + generation, the lean loop's fresh allocation
    reused = replace(make_trial(mode="graphed"), model_facts={"backend": {"static_cache_tokens": 2000}})
    eager = make_trial(mode="eager")
    assert {r["cache_tokens"] for r in rows_from_trials([fresh])} == {128 + 8}
    assert {r["cache_tokens"] for r in rows_from_trials([reused])} == {2000}
    assert {r["cache_tokens"] for r in rows_from_trials([eager])} == {""}
    recorded = replace(make_trial(mode="graphed"), model_facts={"backend": {"decode_attention": "sdpa"}})
    assert {r["decode_attention"] for r in rows_from_trials([recorded])} == {"sdpa"}  # what kv_heads_read_once reads
    assert {r["decode_attention"] for r in rows_from_trials([fresh])} == {""}
