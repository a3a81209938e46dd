"""Markdown report: columns, honest gaps ('n too small', 'not measured'), failed trials, header."""

from __future__ import annotations

from dataclasses import replace

from conftest_store import make_failed_trial, make_run, make_trial

from wattlens.analysis.report import TRIAL_COLUMNS, fmt_percentile_ms, render_markdown, render_trial_table


def _report():
    trials = [make_trial(), make_trial(model="tiny-qwen", measured=False), make_failed_trial()]
    return trials, render_markdown(trials, [make_run()])


def test_columns_present():
    _, md = _report()
    header = next(line for line in md.splitlines() if line.startswith("| model | weights | gpu |"))
    for col in ("TTFT ms", "TPOT ms", "decode tok/s", "E2E p50 ms (n)", "E2E p95 ms (n)", "peak GB",
                "KV measured / analytic MB", "energy J", "J/1k tok", "tok/J", "avg W",
                "decode roofline %", "prefill roofline %", "flags"):
        assert col in header


def test_header_weights_environment_and_units():
    _, md = _report()
    assert "**Weights: random**" in md
    for text in ("NVIDIA H100 80GB HBM3", "580.65.06", "2.8.0", "5.0.0"):
        assert text in md
    assert "decimal GB = 10^9 bytes" in md


def test_p95_too_few_samples_says_so_never_max():
    trials, md = _report()
    assert "n too small (n=3)" in md
    e2e_max_ms = max(r.e2e_s for r in trials[0].repetitions) * 1e3
    row = next(line for line in md.splitlines() if line.startswith("| tiny-llama |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    p95 = cells[TRIAL_COLUMNS.index("E2E p95 ms (n)")]
    assert p95 == "n too small (n=3)"
    assert f"{e2e_max_ms:.1f}" not in p95


def test_p95_shown_with_enough_samples():
    assert fmt_percentile_ms({"value": 0.2, "n": 25, "note": None}) == "200.0 (n=25)"


def test_energy_measured_and_not_measured():
    _, md = _report()
    assert "610.0 ± 3.50" in md
    assert "not measured: no NVIDIA GPU (FakeGPU off)" in md
    assert "throttle:sw_power_cap" in md


def test_failed_trials_table():
    _, md = _report()
    assert "## Failed trials" in md
    failed_part = md.split("## Failed trials", 1)[1]
    assert "big-model" in failed_part and "CUDA out of memory" in failed_part
    assert "\\| reserved 70 GiB" in failed_part  # a pipe in the error does not break the table
    assert "(2 ok, 1 failed)" in md


def test_one_table_per_model_gpu_group():
    _, md = _report()
    assert "### tiny-llama on NVIDIA H100 80GB HBM3" in md
    assert "### tiny-qwen on NVIDIA H100 80GB HBM3" in md


def test_mixed_weights_named():
    trials = [make_trial(), replace(make_trial(model="real"), weights="pretrained")]
    md = render_markdown(trials, [make_run()])
    assert "**Weights: mixed**" in md and "pretrained for 1 trials" in md


def test_render_trial_table_rows_of_strings():
    table = render_trial_table([make_trial(), make_failed_trial()])
    assert table.headers == TRIAL_COLUMNS
    assert len(table.rows) == 2
    assert all(isinstance(c, str) for row in table.rows for c in row)
    assert all(len(row) == len(TRIAL_COLUMNS) for row in table.rows)
    failed = next(r for r in table.rows if r[0] == "big-model")
    assert "failed" in failed and failed[-1].startswith("error: CUDA out of memory")


def test_empty_inputs_render():
    md = render_markdown([], [])
    assert "No successful trials." in md and "No run information stored." in md
