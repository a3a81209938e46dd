"""Quality scoring through a tiny random-weight model, quality CSV import, and the CLI wiring."""

import pytest

torch = pytest.importorskip("torch")

from wattlens.analysis.workload import QualityTable, read_quality_csv  # noqa: E402
from wattlens.runner.quality import choice_logprobs, load_scoring_model, score_requests, write_quality_csv  # noqa: E402
from wattlens.workloads.datasets import load_dataset  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return load_scoring_model("tiny-llama")


def test_choice_logprob_is_the_models_next_token_logprob(tiny):
    model, tok, params_b, weights = tiny
    assert weights == "random" and 0 < params_b < 0.01
    prompt = "The sky is"
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    yes, no = tok(" yes", add_special_tokens=False)["input_ids"], tok(" no", add_special_tokens=False)["input_ids"]
    assert len(yes) == len(no) == 1
    got = choice_logprobs(model, tok, prompt, [" yes", " no"])
    assert got == pytest.approx([float(lp[yes[0]]), float(lp[no[0]])], abs=1e-4)


def test_score_requests_and_csv_roundtrip(tiny, tmp_path):
    model, tok, params_b, _ = tiny
    reqs = load_dataset("boolq", limit=2) + load_dataset("truthfulqa", limit=1)
    rows = score_requests(model, tok, reqs, "tiny", params_b, gen_tokens=4)
    assert [r.metric for r in rows] == ["accuracy", "accuracy", "rouge_l_f1"]
    assert all(r.quality in (0.0, 1.0) for r in rows[:2]) and 0.0 <= rows[2].quality <= 1.0
    path = tmp_path / "q.csv"
    write_quality_csv(rows, path)
    table = QualityTable(read_quality_csv([path]))
    assert table.models == ["tiny"] and table.q.shape == (3, 1)


def test_cli_help_lists_workload_commands():
    from typer.testing import CliRunner

    from wattlens.cli.app import app

    out = CliRunner().invoke(app, ["workload", "--help"]).output
    for cmd in ("features", "score", "analyze", "route"):
        assert cmd in out
