"""ModelFacts read off transformers' module (`wattlens.models.introspect`) for architectures without formulas."""

import sys

import pytest

from wattlens.core.errors import BadInput
from wattlens.models.arithmetic import SUPPORTED_MODEL_TYPES, model_facts
from wattlens.models.catalog import list_catalog, resolve_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from wattlens.models.introspect import facts_from_module  # noqa: E402


def _class_default(config_class: str) -> dict:
    d = getattr(transformers, config_class)().to_dict()
    for key in ("transformers_version", "_name_or_path", "dtype"):
        d.pop(key, None)
    return d


@pytest.mark.parametrize("name", [e.name for e in list_catalog()
                                  if resolve_model(e.name).config["model_type"] in SUPPORTED_MODEL_TYPES])
def test_module_counts_equal_the_formulas_for_every_catalog_architecture(name):
    """The same rules that read an unknown architecture reproduce every hand-written formula: totals,
    active parameters, tables, LM head, matmul weights, experts, heads and sliding layers."""
    config = resolve_model(name).config
    assert facts_from_module(dict(config)) == model_facts(dict(config))


def test_variants_of_depth_and_experts_agree_too():
    for name, overrides in [("qwen3-30b-a3b", {"num_hidden_layers": 6, "mlp_only_layers": [1, 4]}),
                            ("mixtral-8x7b", {"num_hidden_layers": 2, "num_experts_per_tok": 3}),
                            ("opt-1.3b", {"word_embed_proj_dim": 512, "num_hidden_layers": 2})]:
        config = resolve_model(name, overrides.items()).config
        assert facts_from_module(dict(config)) == model_facts(dict(config)), name


@pytest.mark.parametrize("config_class", ["CohereConfig", "Olmo3Config", "Glm4MoeConfig"])
def test_an_architecture_without_formulas_is_counted_on_its_module(config_class):
    config = _class_default(config_class)
    assert config["model_type"] not in SUPPORTED_MODEL_TYPES
    f = model_facts(config)
    conf = transformers.AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items() if k != "model_type"})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(conf)
    assert f.params_total == sum(p.numel() for p in model.parameters())
    assert f.num_layers == conf.num_hidden_layers and f.hidden_size == conf.hidden_size
    if config_class == "Glm4MoeConfig":  # routed experts apart; the shared expert is dense, every token's
        assert (f.num_experts, f.experts_per_token) == (conf.n_routed_experts, conf.num_experts_per_tok)
        assert f.params_per_expert == 3 * conf.hidden_size * conf.moe_intermediate_size
        assert f.n_moe_layers == conf.num_hidden_layers - conf.first_k_dense_replace  # dense first layers
        unused = f.n_moe_layers * (f.num_experts - f.experts_per_token) * f.params_per_expert
        assert f.params_active == f.params_total - unused
    else:
        assert f.num_experts == 0 and f.params_active == f.params_total


def test_predict_says_where_the_counts_came_from():
    from wattlens.analysis.predict_features import Request
    from wattlens.analysis.predictor import predict_request, uncalibrated_bundle
    from wattlens.hw.specs import gpu_spec_by_name

    req, h100 = Request(input_tokens=300, output_tokens=300, batch_size=8), gpu_spec_by_name("H100")
    unknown = predict_request(_class_default("Olmo3Config"), req, h100, uncalibrated_bundle())
    known = predict_request(resolve_model("llama-3.1-8b").config, req, h100, uncalibrated_bundle())
    assert unknown["parameter_counts_from"].startswith("transformers") and unknown["energy_per_prompt_j"] > 0
    assert known["parameter_counts_from"] == "formulas"


def test_clear_errors(monkeypatch):
    with pytest.raises(BadInput, match="cannot build a causal LM"):
        model_facts({"model_type": "no_such_architecture"})
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a bare install
    with pytest.raises(BadInput, match="wattlens\\[hf\\]"):
        model_facts(_class_default("Olmo3Config"))

