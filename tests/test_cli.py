"""The command line, in-process with typer's CliRunner (plus a few real `python -m wattlens` runs
for the start-up cost and the exit-status contract of `main()`)."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wattlens.cli import app as cli_app
from wattlens.core.errors import BadInput

SRC = Path(__file__).resolve().parents[1] / "src"
runner = CliRunner()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "200"
    return env


def _python(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=_env(), cwd=cwd,
                          timeout=timeout)


def invoke(*args: str):
    return runner.invoke(cli_app.app, [str(a) for a in args], env={"COLUMNS": "250"})


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Call the real entry point `main()` in-process; return (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["wattlens", *[str(a) for a in args]])
    with pytest.raises(SystemExit) as info:
        cli_app.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else code), out, err


# -- start-up ------------------------------------------------------------------------------------

def test_help_exits_zero_quickly_via_python_m():
    start = time.perf_counter()
    proc = _python("-m", "wattlens", "--help")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    for command in ("bench", "sweep", "report", "export", "env", "models"):
        assert command in proc.stdout
    assert elapsed < 10.0  # torch alone takes seconds; --help must not pay for it


def test_importing_the_cli_and_help_do_not_import_torch():
    code = (
        "import sys, json\n"
        "import wattlens.cli.app as a\n"
        "after_import = sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules)\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(a.app, ['--help'])\n"
        "r2 = CliRunner().invoke(a.app, ['bench', '--help'])\n"
        "heavy = 'torch' in sys.modules or 'transformers' in sys.modules\n"
        "print(json.dumps({'import': after_import, 'help': heavy,"
        " 'codes': [r.exit_code, r2.exit_code]}))\n"
    )
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "torch" not in data["import"] and "transformers" not in data["import"]
    assert data["help"] is False
    assert data["codes"] == [0, 0]


# -- bench, report, export -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real bench of tiny-llama on the CPU, shared by the tests that read its outputs."""
    folder = tmp_path_factory.mktemp("bench")
    db = folder / "results.sqlite"
    result = invoke("bench", "--json", "--model", "tiny-llama", "--ctx", 16, "--gen", 4, "--repeats", 3,
                    "--quick", "--db", db)
    assert result.exit_code == 0, (result.output, result.exception)
    return db, json.loads(result.stdout)


def test_bench_json_says_weights_random_and_stores_the_trial(bench_run):
    db, data = bench_run
    assert data["status"] == "ok" and data["error"] is None
    assert data["weights"] == "random"
    assert data["spec"]["model"] == "tiny-llama" and data["spec"]["ctx_tokens"] == 16
    assert db.exists()
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT trial_id FROM trials")]
    assert ids == [data["trial_id"]]


def test_bench_json_has_every_latency_metric(bench_run):
    _, data = bench_run
    mt = data["metrics"]
    assert mt["n_repetitions"] == 3 and mt["output_tokens"] == 4 and mt["input_tokens"] == 16
    assert mt["ttft_s_median"] > 0
    assert mt["tpot_s_median"] > 0
    assert mt["decode_tokens_per_s"] == pytest.approx(1 / mt["tpot_s_median"])
    assert len(mt["itl_s_list"]) == 3 and all(len(gaps) == 3 for gaps in mt["itl_s_list"])
    assert mt["e2e_s_p50"]["n"] == 3 and mt["e2e_s_p50"]["value"] > 0
    for q in ("e2e_s_p95", "e2e_s_p99"):
        assert mt[q]["n"] == 3
        assert mt[q]["value"] is None and "n too small" in mt[q]["note"]
    reps = data["repetitions"]
    assert len(reps) == 3
    for r in reps:
        assert r["output_tokens"] == 4 and r["input_tokens"] == 16
        assert len(r["token_times_s"]) == 4 and r["ttft_s"] <= r["e2e_s"]


def test_bench_json_memory_fields_present_and_none_on_cpu_with_reason(bench_run):
    _, data = bench_run
    mem = data["memory"]
    for key in ("peak_allocated_bytes", "reserved_bytes", "nvml_used_bytes", "weights_bytes",
                "kv_measured_bytes", "activation_peak_bytes"):
        assert key in mem and mem[key] is None, key
    assert mem["not_measured_reason"]
    # analytic KV: 2 x layers x kv heads x head dim x 2 bytes (bf16) x 20 tokens
    from wattlens.models.catalog import resolve_model

    cfg = resolve_model("tiny-llama").config
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    expected = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head_dim * 2 * (16 + 4)
    assert mem["kv_analytic_bytes"] == expected


def test_bench_json_energy_is_none_with_reason_never_zero(bench_run):
    _, data = bench_run
    mt = data["metrics"]
    assert mt["energy_measured"] is False
    assert isinstance(mt["energy_not_measured_reason"], str) and mt["energy_not_measured_reason"].strip()
    for key in ("energy_gpu_j_median", "energy_gpu_j_uncertainty", "energy_gpu_active_j_median",
                "energy_gpu_j_per_output_token", "energy_gpu_j_per_1k_output_tokens", "output_tokens_per_j",
                "average_power_w"):
        assert key in mt and mt[key] is None, key
    for rep in data["repetitions"]:
        assert rep["energy"]["energy_gpu_j"] is None and rep["energy"]["not_measured_reason"]


def test_bench_json_has_ape_and_roofline_keys(bench_run):
    _, data = bench_run
    mt = data["metrics"]
    assert mt["ape_decode_tokens_per_s_per_active_b"] == pytest.approx(
        mt["decode_tokens_per_s"] / (data["model"]["params_active"] / 1e9))
    assert mt["ape_inv_ttft_per_s_per_active_b"] > 0
    assert mt["ape_output_tokens_per_j_per_active_b"] is None  # no energy on the CPU
    assert "decode_tokens_per_s_per_peak_gb" in mt
    for key in ("decode_roofline_pct", "prefill_roofline_pct", "decode_roofline_tokens_per_s",
                "prefill_roofline_s"):
        assert key in mt and mt[key] is None, key  # no GPU spec row on the CPU


def test_bench_human_output_states_weights_and_missing_energy(tmp_path):
    result = invoke("bench", "--model", "tiny-llama", "--ctx", 16, "--gen", 4, "--repeats", 2, "--quick",
                    "--db", tmp_path / "h.sqlite")
    assert result.exit_code == 0, result.output
    assert "weights: random" in result.stdout
    assert "energy: not measured" in result.stdout


def test_report_after_bench_renders_markdown_with_the_trial(bench_run, tmp_path):
    db, data = bench_run
    result = invoke("report", "--db", db)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("# wattlens results")
    assert "| tiny-llama | random |" in text
    assert "n too small (n=3)" in text
    out = tmp_path / "report.md"
    result = invoke("report", "--db", db, "--out", out)
    assert result.exit_code == 0 and "| tiny-llama |" in out.read_text()


def test_report_without_database_is_exit_2(tmp_path):
    db = tmp_path / "none.sqlite"
    result = invoke("report", "--db", db)
    assert result.exit_code == 2
    assert str(db) in result.stderr
    assert not db.exists()


def test_export_csv_and_json(bench_run, tmp_path):
    db, data = bench_run
    out_csv = tmp_path / "trials.csv"
    result = invoke("export", "--out", out_csv, "--format", "csv", "--db", db)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and rows[0]["trial_id"] == data["trial_id"]

    out_json = tmp_path / "all.json"
    result = invoke("export", "--out", out_json, "--format", "json", "--table", "all", "--db", db)
    assert result.exit_code == 0, result.output
    exported = json.loads(out_json.read_text())
    assert data["trial_id"] in json.dumps(exported)

    out_reps = tmp_path / "reps.csv"
    result = invoke("export", "--out", out_reps, "--table", "repetitions", "--db", db)
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(out_reps.open()))) == 3


def test_models_lists_catalog_with_params():
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("tiny-llama", "tiny-gqa", "tiny-moe", "tiny-gpt-oss"):
        assert name in rows
        assert rows[name]["params_total"] > 0
        assert 0 < rows[name]["params_active"] <= rows[name]["params_total"]
    assert rows["tiny-moe"]["params_active"] < rows["tiny-moe"]["params_total"]
    table = invoke("models")
    assert table.exit_code == 0 and "tiny-llama" in table.stdout and "active params" in table.stdout


def test_env_json():
    result = invoke("env", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["libraries"]["wattlens"]
    assert data["python"]
    if not data.get("gpu_count"):
        assert data["energy_not_measured_reason"]


# -- bad input: one line, exit 2, nothing written --------------------------------------------------

TINY = ("--model", "tiny-llama", "--ctx", "16", "--gen", "4", "--repeats", "2", "--quick")


def _bench_args(db: Path, **changes: str) -> list[str]:
    args = dict(zip(TINY[0:-1:2], TINY[1:-1:2]))
    for key, value in changes.items():
        args[f"--{key}"] = value
    return ["bench", *[x for kv in args.items() for x in kv], "--quick", "--db", str(db)]


def _assert_one_line_error(code: int, err: str, *must_name: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    for text in must_name:
        assert text in lines[0], (text, lines[0])


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_BENCH = {
    "unknown_model": ({"model": "no-such-model"}, ["no-such-model"]),
    "ctx_beyond_max_positions": ({"ctx": "100000"}, ["100000", "4096"]),
    "gen_zero": ({"gen": "0"}, ["gen", "0"]),
    "batch_zero": ({"batch": "0"}, ["batch", "0"]),
    "batch_negative": ({"batch": "-2"}, ["-2"]),
    "dtype_fp8": ({"dtype": "fp8"}, ["'fp8'"]),
    "mode_turbo": ({"mode": "turbo"}, ["'turbo'"]),
    "temperature_negative": ({"temperature": "-1"}, ["temperature", "-1"]),
    "top_p_zero": ({"top-p": "0"}, ["top_p", "0"]),
    "prompt_kind": ({"prompt": "essay"}, ["'essay'"]),
    "set_without_value": ({"set": "num_hidden_layers"}, ["num_hidden_layers"]),
    "set_bad_value": ({"set": "num_hidden_layers=abc"}, ["num_hidden_layers", "abc"]),
    "device_not_a_device": ({"device": "bogus:x"}, ["'bogus:x'"]),
    # the bundled GPT-2 tokenizer (50257 ids) does not fit tiny-llama's 1000-token vocabulary
    "text_prompt_vocab_too_small": ({"prompt": "text"}, ["tokenizer", "1000"]),
}


@pytest.mark.parametrize("case", list(BAD_BENCH))
def test_bad_bench_input_exit_2_one_line_no_database(case, tmp_path, monkeypatch, capsys):
    changes, names = BAD_BENCH[case]
    db = tmp_path / "r.sqlite"
    code, out, err = run_main(monkeypatch, capsys, *_bench_args(db, **changes))
    _assert_one_line_error(code, err, *names)
    assert _files(tmp_path) == set()


def test_unavailable_cuda_device_exit_2_no_database(tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    db = tmp_path / "r.sqlite"
    code, _, err = run_main(monkeypatch, capsys, *_bench_args(db, device="cuda"))
    _assert_one_line_error(code, err, "'cuda'", "not available")
    assert _files(tmp_path) == set()


def test_missing_sweep_file_exit_2(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "sweep", tmp_path / "absent.yaml",
                            "--db", tmp_path / "r.sqlite")
    _assert_one_line_error(code, err, "absent.yaml")
    assert _files(tmp_path) == set()


def test_db_that_is_not_a_database_exit_2_and_unchanged(tmp_path, monkeypatch, capsys):
    db = _write(tmp_path / "notes.sqlite", "these are my notes, not a database\n" * 100)
    before = db.read_bytes()
    code, _, err = run_main(monkeypatch, capsys, *_bench_args(db))
    _assert_one_line_error(code, err, str(db))
    assert db.read_bytes() == before and _files(tmp_path) == {"notes.sqlite"}


def test_malformed_config_json_as_model_exit_2(tmp_path, monkeypatch, capsys):
    bad = _write(tmp_path / "broken.json", '{"model_type": "llama", "hidden_size": ')
    db = tmp_path / "r.sqlite"
    code, _, err = run_main(monkeypatch, capsys, *_bench_args(db, model=str(bad)))
    _assert_one_line_error(code, err, "broken.json", "not valid JSON")
    assert _files(tmp_path) == {"broken.json"}


def test_missing_config_file_as_model_exit_2(tmp_path, monkeypatch, capsys):
    db = tmp_path / "r.sqlite"
    code, _, err = run_main(monkeypatch, capsys, *_bench_args(db, model=str(tmp_path / "absent.json")))
    _assert_one_line_error(code, err, "absent.json")
    assert _files(tmp_path) == set()


def test_malformed_sweep_yaml_exit_2(tmp_path, monkeypatch, capsys):
    spec = _write(tmp_path / "sweep.yaml", "models: [tiny-llama\nctx: 16\n")
    db = tmp_path / "r.sqlite"
    code, _, err = run_main(monkeypatch, capsys, "sweep", spec, "--db", db, "--quick")
    _assert_one_line_error(code, err, "malformed sweep YAML", "sweep.yaml")
    assert _files(tmp_path) == {"sweep.yaml"}


def test_unknown_sweep_key_exit_2(tmp_path, monkeypatch, capsys):
    spec = _write(tmp_path / "sweep.yaml", "models: [tiny-llama]\nctx: [16]\ngen: 4\ncontext_len: 32\n")
    db = tmp_path / "r.sqlite"
    code, _, err = run_main(monkeypatch, capsys, "sweep", spec, "--db", db, "--quick")
    _assert_one_line_error(code, err, "context_len")
    assert _files(tmp_path) == {"sweep.yaml"}


BAD_SWEEPS = {
    "unknown_model": ("models: [tiny-llama, no-such-model]\nctx: 16\ngen: 4\n", ["no-such-model"]),
    "gen_zero": ("models: tiny-llama\nctx: 16\ngen: 0\n", ["gen", "0"]),
    "batch_zero": ("models: tiny-llama\nctx: 16\ngen: 4\nbatch: [1, 0]\n", ["batch", "0"]),
    "dtype_fp8": ("models: tiny-llama\nctx: 16\ngen: 4\ndtype: [bf16, fp8]\n", ["'fp8'"]),
    "mode_turbo": ("models: tiny-llama\nctx: 16\ngen: 4\nmode: turbo\n", ["'turbo'"]),
    "ctx_not_a_number": ("models: tiny-llama\nctx: sixteen\ngen: 4\n", ["sixteen"]),
    "no_models": ("ctx: 16\ngen: 4\n", ["names no models"]),
    "empty_list": ("models: tiny-llama\nctx: []\n", ["'ctx'", "empty"]),
    "not_a_mapping": ("- tiny-llama\n- tiny-gqa\n", ["must be a mapping"]),
    "unknown_sampling_key": ("models: tiny-llama\nsampling: [{temp: 0.7}]\n", ["temp"]),
    "bad_device": ("models: tiny-llama\nctx: 16\ngen: 4\nrepeats: 1\ndevice: 'bogus:x'\n", ["bogus:x"]),
    # one bad point of an otherwise good grid stops the sweep before any trial runs
    "one_bad_grid_point": ("models: [tiny-llama, tiny-gqa]\nctx: [16, 100000]\ngen: 4\nrepeats: 1\n", ["100000"]),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
def test_bad_sweep_spec_exit_2_one_line_no_database(case, tmp_path, monkeypatch, capsys):
    text, names = BAD_SWEEPS[case]
    spec = _write(tmp_path / "sweep.yaml", text)
    db = tmp_path / "r.sqlite"
    code, _, err = run_main(monkeypatch, capsys, "sweep", spec, "--db", db, "--quick")
    _assert_one_line_error(code, err, *names)
    assert _files(tmp_path) == {"sweep.yaml"}


def test_db_in_missing_directory_exit_2(tmp_path, monkeypatch, capsys):
    db = Path("/nonexistent/dir/x.sqlite")
    code, _, err = run_main(monkeypatch, capsys, *_bench_args(db))
    _assert_one_line_error(code, err, str(db))
    assert not Path("/nonexistent").exists()


def test_db_path_that_is_a_directory_exit_2(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    code, _, err = run_main(monkeypatch, capsys, *_bench_args(folder))
    _assert_one_line_error(code, err, str(folder), "directory")
    assert _files(folder) == set() and _files(tmp_path) == {"adir"}


def _newer_schema_db(path: Path) -> bytes:
    from wattlens.store.sqlite import ResultStore

    with ResultStore(path):
        pass
    with sqlite3.connect(path) as conn:
        version = int(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version + 1),))
    conn.close()
    return path.read_bytes()


def test_database_from_newer_schema_exit_2_and_unchanged(tmp_path, monkeypatch, capsys):
    db = tmp_path / "new.sqlite"
    before = _newer_schema_db(db)
    files_before = _files(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, *_bench_args(db))
    _assert_one_line_error(code, err, str(db), "schema version")
    assert db.read_bytes() == before
    assert _files(tmp_path) == files_before
    spec = _write(tmp_path / "sweep.yaml", "models: tiny-llama\nctx: 16\ngen: 4\nrepeats: 1\n")
    code, _, err = run_main(monkeypatch, capsys, "sweep", spec, "--db", db, "--quick")
    _assert_one_line_error(code, err, "schema version")
    assert db.read_bytes() == before


def test_bad_input_raises_badinput_inside_the_app(tmp_path):
    """The typer app itself raises BadInput; mapping it to exit 2 is main()'s job."""
    result = invoke(*_bench_args(tmp_path / "r.sqlite", dtype="fp8"))
    assert isinstance(result.exception, BadInput)
    assert "fp8" in str(result.exception)


@pytest.mark.parametrize("args, name", [
    (["bench", "--model", "no-such-model", "--quick"], "no-such-model"),
    (["bench", "--model", "tiny-llama", "--mode", "turbo", "--quick"], "turbo"),
    (["bench", "--model", "tiny-llama", "--ctx", "16", "--gen", "2", "--quick",
      "--db", "/nonexistent/dir/x.sqlite"],
     "/nonexistent/dir/x.sqlite"),
])
def test_python_m_wattlens_bad_input_exit_2_single_line(args, name, tmp_path):
    proc = _python("-m", "wattlens", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert _files(tmp_path) == set()  # the default ./wattlens.sqlite was not created


def test_bad_input_brackets_are_printed_not_read_as_markup(tmp_path):
    """An error that names an install extra ('wattlens[hf]') or a bracketed name keeps its brackets."""
    config = tmp_path / "weird.json"
    config.write_text(json.dumps({"model_type": "weird[arch]", "hidden_size": 64}))
    proc = _python("-m", "wattlens", "predict", "--model", str(config), "--gpu", "H100", "--input", "10",
                   "--output", "10", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "weird[arch]" in proc.stderr, proc.stderr
