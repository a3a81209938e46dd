"""The shipped predictor campaign (results/predictor/campaign): every part is a valid sweep whose
trials pass every check that needs no GPU, uniform batches run `graphed` except where a sliding
window rules the lean loop out, and the generator's estimates drop the per-layer compile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from wattlens.runner.sweep import check_plan, plan_from_dict
from wattlens.runner.trial import check_spec

CAMPAIGN = Path(__file__).resolve().parents[1] / "results" / "predictor" / "campaign"


def _make_campaign():
    spec = importlib.util.spec_from_file_location("make_campaign", CAMPAIGN / "make_campaign.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parts(tier: str) -> list[Path]:
    return sorted((CAMPAIGN / f"parts-{tier}").glob("*.yaml"))


@pytest.mark.parametrize("tier", ["core", "extended", "mixed"])
def test_every_campaign_part_is_a_valid_sweep(tier):
    files = _parts(tier)
    assert files, f"no parts for tier {tier}"
    for f in files:
        plan = plan_from_dict(yaml.safe_load(f.read_text()), str(f))
        check_plan(plan, check_spec)  # raises BadInput on any bad trial
        assert plan.specs
        for s in plan.specs:
            assert s.dtype == "bf16"
            if tier == "mixed":
                assert s.ragged and s.mode == "static"
            elif s.model.startswith("gemma-2"):
                assert s.mode == "static"  # its 4096-token sliding window exceeds ctx 128 / 1000
            else:
                assert s.mode == "graphed"


def test_variants_of_one_base_model_share_a_sweep():
    core = [yaml.safe_load(f.read_text()) for f in _parts("core")]
    llama_1b = [d for d in core if d["models"] == ["llama-3.2-1b"]]
    variants = [ov for d in llama_1b for ov in d.get("set", [{}])]
    assert len(variants) == 11 and len(llama_1b) < len(variants)
    assert sum(1 for ov in variants if not ov) == 1  # the unedited model once


def test_campaign_mode_follows_the_sliding_window():
    mc = _make_campaign()
    assert mc.campaign_mode({"sliding_window": 4096}) == "static"
    assert mc.campaign_mode({"sliding_window": 131072, "use_sliding_window": False}) == "graphed"
    assert mc.campaign_mode({"sliding_window": None}) == "graphed"
    assert mc.campaign_mode({}) == "graphed"


def test_graphed_estimate_has_no_per_layer_compile():
    mc = _make_campaign()
    from wattlens.models.catalog import resolve_model

    cfg = resolve_model("llama-3.2-1b").config
    deep = resolve_model("llama-3.2-1b", (("num_hidden_layers", 64),)).config
    static_gap = mc.estimate_trial_s(deep, 128, 8, 1, "static") - mc.estimate_trial_s(cfg, 128, 8, 1, "static")
    graphed_gap = mc.estimate_trial_s(deep, 128, 8, 1, "graphed") - mc.estimate_trial_s(cfg, 128, 8, 1, "graphed")
    assert static_gap > mc.STATIC_COMPILE_S_PER_LAYER * 48 - 1e-9  # 48 more layers to compile
    assert 0 < graphed_gap < static_gap / 10


def test_run_script_deals_parts_to_gpus_side_by_side(tmp_path):
    """run.sh with GPUS="0 1": parts go to the GPUs in turn, each sweep process sees one GPU, every
    part is exported; an unknown part stops the call before anything runs (exit 2). A stand-in
    `wattlens` module records what it was asked to do, so no model runs."""
    import os
    import subprocess

    fake = tmp_path / "fake" / "wattlens"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import os, sys\n"
        "a = sys.argv[1:]\n"
        "if a[0] == 'sweep':\n"
        "    open(a[a.index('--db') + 1], 'a').write(f\"{a[1]} gpu={os.environ.get('CUDA_VISIBLE_DEVICES')}\\n\")\n"
        "elif a[0] == 'export':\n"
        "    open(a[a.index('--out') + 1], 'w').write(open(a[a.index('--db') + 1]).read())\n"
        "elif a[0] == 'env':\n"
        "    print('{}')\n")
    script = (CAMPAIGN / "run.sh").read_text().replace("export PYTHONPATH=src", f"export PYTHONPATH={fake.parent}")
    (tmp_path / "run.sh").write_text(script)
    out = tmp_path / "out"
    out.mkdir()
    tag = f"t{os.getpid()}"  # the script keeps its databases in /tmp under this tag
    env = {**os.environ, "OUT": str(out), "GPUS": "0 1"}
    repo = CAMPAIGN.parents[2]
    done = subprocess.run(["bash", str(tmp_path / "run.sh"), tag, "core", "00", "01", "02"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    try:
        assert done.returncode == 0, done.stderr
        seen = {p: (out / f"{tag}-core-p{p}.json").read_text() for p in ("00", "01", "02")}
        assert "parts-core/p00-" in seen["00"] and "gpu=0" in seen["00"]
        assert "gpu=1" in seen["01"] and "gpu=0" not in seen["01"]
        assert "gpu=0" in seen["02"]
        assert (out / f"env-{tag}.json").exists()
        bad = subprocess.run(["bash", str(tmp_path / "run.sh"), tag, "core", "00", "99"], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "part 99" in bad.stderr
    finally:
        for p in ("00", "01", "02"):
            Path(f"/tmp/predictor-{tag}-core-p{p}.sqlite").unlink(missing_ok=True)
