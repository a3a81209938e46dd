"""`wattlens predict` / `wattlens train`: the shipped predictor, the uncalibrated fallback, refitting."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wattlens.analysis import predictor as P
from wattlens.cli.app import app

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src"


def test_shipped_predictor_is_calibrated_json_on_measured_rows():
    bundle = P.load_bundle()
    assert P.DEFAULT_PREDICTOR.suffix == ".json" and bundle.calibrated and bundle.learner == "physics_residual"
    assert bundle.trained_on["rows"] >= 100 and len(bundle.trained_on["gpus"]) >= 2
    lo, hi = bundle.log_interval
    assert lo < 0 < hi and all(v >= 0 for v in bundle.model.theta)


def test_fresh_install_predicts_with_shipped_predictor_without_dataset_or_sklearn(tmp_path):
    """A fresh process, run from an empty folder (no dataset anywhere near): calibrated answer, no sklearn."""
    code = ("import sys, json, contextlib, io; from wattlens.cli.app import main\n"
            "sys.argv=['wattlens','predict','--model','llama-3.1-8b','--gpu','H100','--input','300','--output','300',"
            "'--batch','8','--json']\nbuf = io.StringIO()\nwith contextlib.redirect_stdout(buf):\n"
            "    try: main()\n    except SystemExit: pass\n"
            "doc = json.loads(buf.getvalue()); print(doc['calibrated'], doc['learner'], 'sklearn' in sys.modules, "
            "doc['total_energy_low_j'] < doc['total_energy_per_prompt_j'] < doc['total_energy_high_j'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(SRC)})
    assert out.stdout.split() == ["True", "physics_residual", "False", "True"], out.stderr


def test_predict_prints_a_bracketed_model_name_as_text(tmp_path):
    """A config file named 'helium[v2].json' is named so in the output, not read as rich markup."""
    from wattlens.models.catalog import resolve_model

    config = tmp_path / "helium[v2].json"
    config.write_text(json.dumps(resolve_model("helium-1-preview").config))
    result = runner.invoke(app, ["predict", "--model", str(config), "--gpu", "H100", "--input", "100", "--output",
                                 "100", "--batch", "8"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("helium[v2] on 1 x"), result.output


def test_predict_says_when_a_decode_steps_gemms_are_estimated(tmp_path):
    """Measured GEMMs for a catalog model on an H100; a width the table lacks, or a GPU it lacks, is
    estimated and the output says so."""
    from wattlens.models.catalog import resolve_model

    def notes(model, gpu):
        r = runner.invoke(app, ["predict", "--model", model, "--gpu", gpu, "--input", "100", "--output", "100",
                                "--batch", "8"])
        assert r.exit_code == 0, r.output
        return [line for line in r.output.splitlines() if "GEMMs of a decode step" in line]

    assert notes("llama-3.2-1b", "H100") == []
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**resolve_model("llama-3.2-1b").config, "intermediate_size": 8000}))
    (note,) = notes(str(wider), "H100")
    assert "estimated for 48 of 113 Linears (fitted to NVIDIA H100 SXM 80GB's table)" in note
    (note,) = notes("llama-3.2-1b", "A100 80GB")
    assert "estimated for 113 of 113 Linears (scaled by HBM bandwidth from" in note


def test_predict_without_any_predictor_is_labelled_uncalibrated(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "DEFAULT_PREDICTOR", tmp_path / "none.json")
    assert not P.load_bundle().calibrated
    r = runner.invoke(app, ["predict", "--model", "llama-3.1-8b", "--gpu", "H100", "--input", "300", "--output", "300",
                            "--batch", "8", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    e = doc["total_energy_per_prompt_j"]
    assert doc["calibrated"] is False and "UNCALIBRATED" in doc["learner"]
    assert doc["total_energy_low_j"] == pytest.approx(e / 3) and doc["total_energy_high_j"] == pytest.approx(e * 3)
    assert e > 0 and doc["total_time_s"] > 0


def test_predict_any_config_file_and_batch_lowers_per_prompt_energy(tmp_path):
    cfg = dict(model_type="qwen3_moe", vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
               num_attention_heads=8, num_key_value_heads=2, head_dim=32, num_experts=16, num_experts_per_tok=2,
               moe_intermediate_size=128)
    (tmp_path / "my.json").write_text(json.dumps(cfg))
    vals = []
    for b in ("1", "16"):
        r = runner.invoke(app, ["predict", "--model", str(tmp_path / "my.json"), "--batch", b, "--json"])
        assert r.exit_code == 0, r.output
        vals.append(json.loads(r.output)["total_energy_per_prompt_j"])
    assert vals[1] < vals[0]


def test_conversation_energy_and_carbon(tmp_path):
    turns = [{"role": "user", "tokens": 100}, {"role": "assistant", "tokens": 200},
             {"role": "user", "content": "x" * 400}, {"role": "assistant", "tokens": 50}]
    (tmp_path / "c.json").write_text(json.dumps(turns))
    r = runner.invoke(app, ["predict", "--conversation", str(tmp_path / "c.json"), "--grid-gco2-per-kwh", "400", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert [(q["input_tokens"], q["output_tokens"]) for q in doc["requests"]] == [(100, 200), (400, 50)]
    assert doc["total_energy_per_prompt_j"] == pytest.approx(sum(q["energy_per_prompt_j"] for q in doc["requests"]))
    assert doc["carbon_gco2"] == pytest.approx(doc["total_energy_per_prompt_j"] / 3.6e6 * 400)


def test_bad_gpu_exits_2():
    r = runner.invoke(app, ["predict", "--gpu", "H900"])
    assert r.exit_code != 0


def test_fresh_process_imports_no_sklearn():
    code = ("import sys; from wattlens.cli.app import main; sys.argv=['wattlens','predict','--json']; "
            "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n    try: main()\n    except SystemExit: pass\n"
            "print('sklearn' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert out.stdout.strip() == "False False", out.stderr


def test_train_then_predict_with_fitted_model(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setattr(P, "N_TREES", {"random_forest": 20, "physics_residual": 20, "physics_residual_boosting": 20, "xgb_tree": 20, "xgb_linear": 20})
    # SYNTHETIC rows from a known formula (test-only)
    from test_predict_pipeline import synthetic_frame

    df, X, y = synthetic_frame(seed=3)
    df["time_s"] = P.time_basis(X) @ np.array([2.0, 1.0, 1.5, 1.2, 1.5, 3.0, 0.5])
    df.to_csv(tmp_path / "d.csv", index=False)
    r = runner.invoke(app, ["train", "--dataset", str(tmp_path / "d.csv"), "--learner", "physics",
                            "--out", str(tmp_path / "p.pkl")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", "--predictor", str(tmp_path / "p.pkl"), "--json"])
    doc = json.loads(r.output)
    assert doc["calibrated"] is True and doc["learner"] == "physics"


def test_train_from_a_store_records_each_runs_software_versions(tmp_path):
    """Rows built from a results store carry the versions of the run that measured them, and a
    missing store is a clear error rather than an empty new database."""
    pytest.importorskip("sklearn")
    from conftest_store import make_run, make_trial

    from wattlens.store.sqlite import ResultStore

    run = make_run()
    run.environment = {"libraries": {"wattlens": "0.1.0", "torch": "2.11.0", "transformers": "5.17.0"},
                       "driver_version": "580.159.04"}
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        store.start_run(run)
        for seed in range(12):  # 12 one-row trials: enough rows to fit
            store.save_trial(make_trial(run_id=run.run_id, seed=seed))
    r = runner.invoke(app, ["train", "--db", str(db), "--learner", "physics", "--out", str(tmp_path / "p.pkl"),
                            "--dataset-out", str(tmp_path / "d.csv")])
    assert r.exit_code == 0, r.output
    rows = P.load_dataset(tmp_path / "d.csv")
    assert len(rows) > 0
    assert set(rows["torch_version"].astype(str)) == {"2.11.0"}
    assert set(rows["transformers_version"].astype(str)) == {"5.17.0"}
    assert set(rows["driver_version"].astype(str)) == {"580.159.04"}
    r = runner.invoke(app, ["train", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "q.pkl")])
    assert r.exit_code != 0 and "no results store" in str(r.exception)
    assert not (tmp_path / "none.sqlite").exists()


def test_training_leaves_out_rows_whose_decode_attention_copies_kv_heads(tmp_path):
    """The features charge a decode step for its KV cache once; rows whose backend recorded a decode
    attention that copies KV heads (Falcon's own SDPA) are left out of a fit and named, rows with no
    record (older stores, other modes) are kept, and the backend's own record carries the mark."""
    pytest.importorskip("sklearn")
    from test_predict_pipeline import synthetic_frame

    df, _, _ = synthetic_frame(seed=4)  # SYNTHETIC rows (test-only)
    df["mode"] = "graphed"
    df["decode_attention"] = f"wattlens_decode_grouped_sdpa (auto; {P.KV_READ_ONCE_MARK} per step)"
    df.loc[df.index[:3], "decode_attention"] = ""
    df.loc[df.index[3:7], "decode_attention"] = "sdpa"
    kept, note = P.kv_heads_read_once(df)
    assert len(kept) == len(df) - 4 and "sdpa" not in set(kept["decode_attention"])
    assert note.startswith("decode attention 'sdpa': 4 rows (")
    assert P.kv_heads_read_once(df.drop(columns="decode_attention"))[0].shape[0] == len(df)
    df.to_csv(tmp_path / "d.csv", index=False)
    r = runner.invoke(app, ["train", "--dataset", str(tmp_path / "d.csv"), "--learner", "physics",
                            "--out", str(tmp_path / "p.pkl")])
    assert r.exit_code == 0, r.output
    assert "decode attention 'sdpa': 4 rows" in r.output
    assert P.load_bundle(tmp_path / "p.pkl").trained_on["rows"] == len(df) - 4


def test_the_backend_records_the_kv_read_once_mark():
    """`kv_heads_read_once` recognises the lean loop by the words its describe() records."""
    torch = pytest.importorskip("torch")
    from wattlens.backends.hf import HFBackend
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    backend = HFBackend(build_model(resolve_model("tiny-gqa"), "fp32", "cpu"), "graphed")
    ids = torch.randint(5, 500, (2, 6))
    backend.generate(ids, torch.ones_like(ids), 3)
    assert P.KV_READ_ONCE_MARK in backend.describe()["decode_attention"]


def test_an_attention_that_copies_its_kv_cache_is_not_recorded_as_read_once():
    """DiffLlama's own attention repeats V over the whole cache and attends twice each step, whichever
    decode attention it calls: the backend must not record the mark, a trial recorded with it before
    (session 16's stores) loses it in the dataset, so `kv_heads_read_once` leaves both out, and
    `predict_request` says why its charge of one KV read per step is too low for this architecture."""
    torch = pytest.importorskip("torch")
    from wattlens.analysis.predict_dataset import recorded_decode_attention
    from wattlens.backends.hf import HFBackend
    from wattlens.models.build import build_model, kv_cache_copied_per_step
    from wattlens.models.catalog import resolve_model

    tiny = (("num_hidden_layers", 2), ("hidden_size", 64), ("num_attention_heads", 4), ("num_key_value_heads", 4),
            ("intermediate_size", 128), ("vocab_size", 512))
    model = build_model(resolve_model("diffllama-1.2b", tiny), "fp32", "cpu")
    backend = HFBackend(model, "graphed")
    ids = torch.randint(5, 500, (2, 6))
    backend.generate(ids, torch.ones_like(ids), 3)
    recorded = backend.describe()["decode_attention"]
    assert P.KV_READ_ONCE_MARK not in recorded and kv_cache_copied_per_step("diffllama") in recorded

    old = {"model_type": "diffllama", "backend": {"decode_attention": "wattlens_decode_grouped_sdpa (auto; "
                                                                      f"{P.KV_READ_ONCE_MARK} per step)"}}
    mended = recorded_decode_attention(old)
    assert P.KV_READ_ONCE_MARK not in mended and mended.startswith("wattlens_decode_grouped_sdpa, called by")
    assert recorded_decode_attention({**old, "backend": {"decode_attention": recorded}}) == recorded  # kept as is
    llama = {"model_type": "llama", "backend": old["backend"]}
    assert recorded_decode_attention(llama) == old["backend"]["decode_attention"]
    pd = pytest.importorskip("pandas")
    kept, note = P.kv_heads_read_once(pd.DataFrame({"model": ["diffllama-1.2b", "llama-3.2-1b"],
                                                     "decode_attention": [mended, recorded_decode_attention(llama)]}))
    assert list(kept["model"]) == ["llama-3.2-1b"] and "diffllama-1.2b" in note

    from wattlens.analysis.predict_features import Request
    from wattlens.hw.specs import gpu_spec_by_name
    bundle = P.load_bundle()  # the shipped predictor
    config = resolve_model("diffllama-1.2b").config
    out = P.predict_request(config, Request(128, 64, 8), gpu_spec_by_name("H100"), bundle)
    assert out["kv_cache_copied"] == kv_cache_copied_per_step("diffllama")
    assert P.predict_request(resolve_model("llama-3.2-1b").config, Request(128, 64, 8), gpu_spec_by_name("H100"),
                             bundle)["kv_cache_copied"] is None


def test_training_keeps_one_serving_mode_and_says_what_it_left_out(tmp_path):
    """static and graphed rows share every feature but not their cost: a fit uses one mode (the one
    with most rows unless asked), names the rows it left out, and refuses a mode the data lacks."""
    pytest.importorskip("sklearn")
    from test_predict_pipeline import synthetic_frame

    from wattlens.core.errors import BadInput

    df, _, _ = synthetic_frame(seed=3)  # SYNTHETIC rows (test-only)
    df["mode"] = "graphed"
    df.loc[df.index[:5], "mode"] = "static"
    kept, mode, note = P.one_serving_mode(df)
    assert mode == "graphed" and len(kept) == len(df) - 5 and set(kept["mode"]) == {"graphed"}
    assert note.startswith("static: 5 rows (")
    kept, mode, note = P.one_serving_mode(df, "static")
    assert len(kept) == 5 and note.startswith(f"graphed: {len(df) - 5} rows")
    with pytest.raises(BadInput, match="no rows in mode 'eager'"):
        P.one_serving_mode(df, "eager")
    df.to_csv(tmp_path / "d.csv", index=False)
    r = runner.invoke(app, ["train", "--dataset", str(tmp_path / "d.csv"), "--learner", "physics",
                            "--out", str(tmp_path / "p.pkl")])
    assert r.exit_code == 0, r.output
    assert "left out (other serving modes): static: 5 rows" in r.output
    assert P.load_bundle(tmp_path / "p.pkl").trained_on["modes"] == ["graphed"]
