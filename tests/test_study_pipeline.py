"""The GPT-OSS-20B study end to end on the CPU: tiny catalog models stand in for the three study
models, every part runs (repetitions capped), and every table of the report renders with its columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wattlens.cli import app as cli_app
from wattlens.core.errors import BadInput
from wattlens.runner.study import (TINY_STANDINS, bytes_needed, fit_verdict, load_study, parse_mapping)

runner = CliRunner()
# Every part: the compiled trials (one compiled decoder-layer body) take seconds on tiny models.
PARTS = ["--part", "moe", "--part", "moe_ablations", "--part", "dense_a", "--part", "dense_b"]

# Table number -> the column headers it must carry (a subset; ours / published / ratio everywhere).
EXPECTED_COLUMNS = {
    1: ["model", "TTFT ms ours", "TTFT ms published", "ratio", "E2E p50 ms ours (n)", "E2E p95 ms ours (n)",
        "tok/s (gen/E2E) ours", "'TPOT' tok/s published", "decode tok/s (1/TPOT) ours"],
    2: ["context", "GPT-OSS-20B (stand-in: tiny-gpt-oss) ours", "published", "ratio"],
    3: ["context", "Qwen3-32B (stand-in: tiny-llama) ours", "published", "ratio"],
    4: ["model", "Δ tok/s (gen/E2E) % ours", "Δ % published"],
    5: ["model", "peak MB ours", "peak MB published", "ratio", "KV measured MB ours", "KV analytic MB",
        "activations MB ours"],
    6: ["model", "tok/J ours", "'tokens/W' (= tok/J) published", "J/1k tok ours", "J/1k published"],
    7: ["model", "J/1k @128 ours", "J/1k @2048 ours", "published", "ratio"],
    8: ["model", "active B ours (analytic)", "active B published", "APE-tok/s ours", "APE-1/TTFT ours",
        "APE-energy (tok/J/B) ours", "tok/s per peak GB ours"],
    9: ["method", "sampling", "p50 tok/s (gen/E2E p50) ours", "published", "ratio", "Δ vs greedy % ours"],
    10: ["context", "p50 tok/s (gen/E2E p50) ours", "published", "ratio", "Δ vs first % ours"],
    11: ["model", "precision", "p50 tok/s (gen/E2E p50) ours", "published", "status ours", "published note"],
    12: ["model", "serving", "context", "p50 tok/s (gen/E2E p50) ours", "published", "ratio"],
    13: ["model", "licence (catalog)", "class (ours)", "licence class published", "safety features published "
         "(as documented)"],
}


def _tables(md: str) -> dict[int, tuple[list[str], list[list[str]]]]:
    out = {}
    for block in re.split(r"\n## ", md):
        m = re.match(r"Table (\d+):", block)
        if not m:
            continue
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        headers = [h.strip() for h in lines[0].strip("|").split(" | ")]
        rows = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]
        out[int(m.group(1))] = (headers, rows)
    return out


def test_shipped_study_expands_and_checks_fit():
    study = load_study("gpt-oss-20b")
    assert set(study.roles.values()) == {"gpt-oss-20b", "qwen3-32b", "yi-34b"}
    specs = study.all_specs()
    assert {s.ctx_tokens for s in specs} >= {128, 512, 1024, 2048, 4096}
    assert {s.mode for s in specs} == {"eager", "static", "compiled"}
    assert {s.dtype for s in specs} == {"bf16", "fp16", "fp32"}
    assert all(s.gen_tokens == 64 for s in specs)
    core = [s for s in specs if s.ctx_tokens == 2048 and s.mode == "eager" and s.dtype == "bf16"]
    assert all(s.repeats >= 20 for s in core)  # p95 needs >= 20 samples
    from wattlens.models.arithmetic import model_facts
    from wattlens.models.catalog import resolve_model

    qwen_fp32 = next(s for s in specs if s.model == "qwen3-32b").with_(dtype="fp32", ctx_tokens=128)
    facts = model_facts(resolve_model("qwen3-32b").config)
    reason = fit_verdict(qwen_fp32, facts, 85_000_000_000, "an H100 80GB")
    assert reason.startswith("cannot fit: ") and "> 85,000,000,000 bytes available" in reason
    assert bytes_needed(qwen_fp32, facts)["weights_bytes"] > 120e9
    assert fit_verdict(qwen_fp32.with_(dtype="bf16"), facts, 85_000_000_000) is None


def test_mapping_and_bad_overrides():
    assert parse_mapping("tiny") == TINY_STANDINS
    assert parse_mapping("gpt-oss-20b=tiny-moe") == {"gpt-oss-20b": "tiny-moe"}
    with pytest.raises(BadInput):
        parse_mapping("gpt-oss-20b")
    with pytest.raises(BadInput):
        load_study("gpt-oss-20b", {"llama-3.1-8b": "tiny-llama"})
    with pytest.raises(BadInput):
        load_study("no-such-study")


@pytest.mark.slow
def test_whole_study_on_tiny_models_renders_every_table(tmp_path: Path):
    db = tmp_path / "study.sqlite"
    run = runner.invoke(cli_app.app, ["study", "run", "gpt-oss-20b", "--models-override", "tiny", "--device", "cpu",
                                      "--repeats-cap", "1", "--quick", "--db", str(db), *PARTS], env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    out = tmp_path / "report"
    rep = runner.invoke(cli_app.app, ["study", "report", "gpt-oss-20b", "--models-override", "tiny", "--db", str(db),
                                      "--out", str(out)], env={"COLUMNS": "200"})
    assert rep.exit_code == 0, rep.output
    md = (out / "report.md").read_text()
    assert (out / "context_sweeps.png").stat().st_size > 10_000
    assert (out / "memory_breakdown.png").stat().st_size > 5_000
    assert "Stand-in models" in md and "stand-in: tiny-gpt-oss" in md
    assert "NVIDIA H100 NVL" in md and "## Measurement differences from the published study" in md
    for word in ("TPOT", "KV accounting", "Energy", "Weights", "GPU"):
        assert word in md.split("## Measurement differences")[1].split("## Answers")[0]
    assert "true KV footprint per token" in md
    tables = _tables(md)
    assert sorted(tables) == list(range(1, 14))
    for number, wanted in EXPECTED_COLUMNS.items():
        headers, rows = tables[number]
        for col in wanted:
            assert col in headers, (number, col, headers)
        assert rows and all(len(r) == len(headers) for r in rows), number
    # the tiny stand-ins ran: real numbers in our columns, the published ones beside them
    t1_headers, t1_rows = tables[1]
    gpt = t1_rows[0]
    assert gpt[0].startswith("GPT-OSS-20B (stand-in")
    assert float(gpt[t1_headers.index("TTFT ms ours")]) > 0
    assert gpt[t1_headers.index("TTFT ms published")] == "459.7"
    # decoding: every setting measured; precision (the MoE model's ablation, as published): all three
    # dtypes ran on the CPU, and no empty rows for the dense models, whose parts do not run it
    assert all(r[2] != "not measured" for r in tables[9][1])
    assert [r[-2] for r in tables[11][1]] == ["ran"] * 3
    assert all(r[0].startswith("GPT-OSS-20B") for r in tables[11][1])
    compiled = [r for r in tables[12][1] if "compiled" in r[1]]
    assert len(compiled) == 3 and all("regional" in r[1] and float(r[3]) > 0 for r in compiled)
    # p95 with 1 sample is refused, not the max
    assert "n too small" in md
    # the time the study held the device, per run, split by mode, and in all
    gpu_time = md.split("## GPU time")[1]
    assert "| run | command | started | wall s | trials ok / failed | eager s | static s | compiled s |" in gpu_time
    assert "Total: **" in gpu_time and "setup (model preparation and warm-ups" in gpu_time
    # rerunning resumes: nothing left to do
    again = runner.invoke(cli_app.app, ["study", "run", "gpt-oss-20b", "--models-override", "tiny", "--device", "cpu",
                                        "--repeats-cap", "1", "--quick", "--db", str(db), *PARTS])
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_cannot_fit_is_stored_as_failed_trial(tmp_path: Path):
    from wattlens.runner.session import SessionOptions, open_session
    from wattlens.runner.study import run_specs

    study = load_study("gpt-oss-20b", parse_mapping("tiny"), device="cpu", repeats_cap=1)
    spec = study.parts["moe"][0]
    session = open_session(tmp_path / "fit.sqlite", device="cpu", options=SessionOptions(calibrate=False))
    try:
        [result] = run_specs([spec], session, available_bytes=1000)
    finally:
        session.close()
    assert result.status == "failed" and result.error.startswith("cannot fit: ")
    from wattlens.store.sqlite import ResultStore

    with ResultStore(tmp_path / "fit.sqlite") as store:
        [stored] = store.load_trials()
    assert stored.status == "failed" and "bytes available" in stored.error


def test_a_model_larger_than_host_ram_is_a_failed_trial_not_a_killed_process(tmp_path, monkeypatch):
    """On the CPU the fit check uses the host's RAM: a model that cannot fit is stored as failed
    with the bytes needed, before anything is built, and the sweep goes on."""
    import wattlens.runner.study as study_mod
    from wattlens.core.spec import TrialSpec
    from wattlens.runner.session import SessionOptions, open_session
    from wattlens.runner.trial import ModelHolder, run_trial

    assert study_mod.device_memory_bytes("cpu") > 1_000_000_000  # this host's physical RAM
    monkeypatch.setattr(study_mod, "device_memory_bytes", lambda device: 50_000_000)  # a 50 MB host
    session = open_session(tmp_path / "r.sqlite", command="test", device="cpu", options=SessionOptions(calibrate=False))
    try:
        too_big = run_trial(TrialSpec(model="llama-3.1-8b", device="cpu", repeats=1, gen_tokens=2), session, ModelHolder())
        fits = run_trial(TrialSpec(model="tiny-llama", device="cpu", dtype="fp32", repeats=1, gen_tokens=2,
                                   ctx_tokens=8), session, ModelHolder())
    finally:
        session.close()
    assert too_big.status == "failed" and too_big.error.startswith("MemoryError: cannot fit: ")
    assert "bytes available on this host's RAM" in too_big.error
    assert fits.status == "ok"
