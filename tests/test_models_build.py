"""Catalog resolution, overrides and building tiny models on the CPU."""

import json
import warnings

import pytest

from wattlens.core.errors import BadInput
from wattlens.models.arithmetic import model_facts
from wattlens.models.catalog import (
    ModelSource,
    apply_overrides,
    list_catalog,
    max_positions,
    resolve_model,
)

TINY = [e.name for e in list_catalog() if e.tiny]


# ---- catalog ---------------------------------------------------------------------------------

def test_catalog_entries_resolve_and_have_licences():
    entries = list_catalog()
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    for must in ("llama-3.1-8b", "gpt-oss-20b", "qwen3-32b", "yi-34b", "qwen3-30b-a3b", "mixtral-8x7b"):
        assert must in names
    for e in entries:
        assert e.path.is_file(), e.file
        assert e.licence
        assert e.tiny == e.name.startswith("tiny-")
        s = resolve_model(e.name)
        assert s.weights == "random" and s.path is None and s.licence == e.licence
        if not e.tiny:
            assert max_positions(s.config) >= 2048
        else:
            assert max_positions(s.config) >= 4096 and s.config["hidden_size"] == 64


def test_resolve_by_hf_id_and_case():
    a = resolve_model("meta-llama/Llama-3.1-8B")
    b = resolve_model("LLAMA-3.1-8B")
    assert a.name == b.name == "llama-3.1-8b" and a.config == b.config
    assert a.hf_id == "meta-llama/Llama-3.1-8B" and a.licence == "Llama 3.1 Community License"


def test_gpt_oss_drops_quantization_config():
    s = resolve_model("gpt-oss-20b")
    assert "quantization_config" not in s.config
    assert s.dropped_keys == ("quantization_config",)
    assert resolve_model("llama-3.1-8b").dropped_keys == ()


def test_unknown_name_lists_close_matches():
    with pytest.raises(BadInput, match="llama-3.1-8b"):
        resolve_model("llama-3.1-8")
    with pytest.raises(BadInput, match="unknown model 'no-such-model'"):
        resolve_model("no-such-model")


def test_config_file_and_folders(tmp_path):
    cfg = resolve_model("tiny-llama").config
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(cfg))
    s = resolve_model(str(f))
    assert (s.name, s.weights, s.path, s.hf_id) == ("mine", "random", None, None)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    assert resolve_model(str(folder)).weights == "random"
    (folder / "model.safetensors").write_bytes(b"")
    s = resolve_model(str(folder))
    assert s.weights == "pretrained" and s.path == str(folder.resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="no config.json"):
        resolve_model(str(empty))
    with pytest.raises(BadInput, match="does not exist"):
        resolve_model(str(tmp_path / "missing.json"))


def test_malformed_json_and_missing_model_type(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BadInput, match="bad.json"):
        resolve_model(str(bad))
    no_type = tmp_path / "notype.json"
    no_type.write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(BadInput, match="notype.json.*model_type"):
        resolve_model(str(no_type))


# ---- overrides -------------------------------------------------------------------------------

def test_override_layers_rebuilds_layer_types():
    s = resolve_model("tiny-gpt-oss", [("num_hidden_layers", 1)])
    assert s.config["num_hidden_layers"] == 1
    assert s.config["layer_types"] == ["sliding_attention"]
    s = resolve_model("gpt-oss-20b", [("num_hidden_layers", "5")])  # CLI strings are parsed
    assert s.config["layer_types"] == ["sliding_attention", "full_attention"] * 2 + ["sliding_attention"]
    assert model_facts(s.config).n_sliding_layers == 3
    assert s.overrides == (("num_hidden_layers", 5),)


def test_override_keeps_max_window_layers_consistent():
    s = resolve_model("qwen3-32b", [("num_hidden_layers", 16)])
    assert s.config["max_window_layers"] == 16
    cfg = apply_overrides({"model_type": "qwen2", "num_hidden_layers": 8, "max_window_layers": 6},
                          [("num_hidden_layers", 4)])
    assert cfg["max_window_layers"] == 4
    cfg = apply_overrides({"model_type": "qwen3_moe", "num_hidden_layers": 8, "mlp_only_layers": [1, 6]},
                          [("num_hidden_layers", 4)])
    assert cfg["mlp_only_layers"] == [1]


def test_override_keeps_smollm3_and_ernie_moe_layer_lists_consistent():
    s = resolve_model("smollm3-3b", [("num_hidden_layers", 40)])  # RoPE off in every 4th layer, all 40
    assert s.config["no_rope_layers"] == [1, 1, 1, 0] * 10
    s = resolve_model("ernie-4.5-21b-a3b", [("num_hidden_layers", 32)])  # experts to the last layer still
    assert s.config["moe_layer_end_index"] == 31 and model_facts(s.config).n_moe_layers == 31
    cfg = apply_overrides({"model_type": "ernie4_5_moe", "num_hidden_layers": 8, "moe_layer_end_index": 5},
                          [("num_hidden_layers", 12)])
    assert cfg["moe_layer_end_index"] == 5  # an end before the last layer stays where it was


def test_override_known_attribute_absent_from_dict():
    s = resolve_model("mixtral-8x7b", [("head_dim", 64), ("attention_bias", "false")])
    assert s.config["head_dim"] == 64 and s.config["attention_bias"] is False


def test_override_errors():
    with pytest.raises(BadInput, match="num_hiden_layers"):
        resolve_model("tiny-llama", [("num_hiden_layers", 2)])
    with pytest.raises(BadInput, match="num_hidden_layers=0"):
        resolve_model("tiny-llama", [("num_hidden_layers", 0)])
    with pytest.raises(BadInput, match="hidden_size='big'"):
        resolve_model("tiny-llama", [("hidden_size", "big")])
    with pytest.raises(BadInput, match="layer_types"):
        resolve_model("tiny-gpt-oss", [("layer_types", ["full_attention"])])


def test_source_is_frozen():
    s = resolve_model("tiny-llama")
    assert isinstance(s, ModelSource)
    with pytest.raises(Exception):
        s.weights = "pretrained"


# ---- building --------------------------------------------------------------------------------

from wattlens.models.build import build_model, describe_weights, resolve_device  # imports torch lazily


@pytest.fixture
def torch():
    pytest.importorskip("transformers")
    return pytest.importorskip("torch")


@pytest.mark.slow
@pytest.mark.parametrize("dtype,dtype_name", [("bf16", "bfloat16"), ("fp32", "float32")])
@pytest.mark.parametrize("name", TINY)
def test_build_tiny_and_forward(torch, name, dtype, dtype_name):
    torch_dtype = getattr(torch, dtype_name)
    source = resolve_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gpt_oss: SDPA -> eager fallback
        model = build_model(source, dtype, "cpu")
    assert not model.training
    params = list(model.parameters())
    assert all(p.dtype == torch_dtype and p.device.type == "cpu" and not p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == model_facts(source.config).params_total
    # weights really initialised by HF (std ~ initializer_range), not left empty
    w = model.model.layers[0].self_attn.q_proj.weight.float()
    assert torch.isfinite(w).all() and 0.01 < w.std().item() < 0.04
    ids = torch.randint(0, source.config["vocab_size"], (2, 24))
    with torch.no_grad():
        out = model(input_ids=ids)
    assert out.logits.shape == (2, 24, source.config["vocab_size"])
    assert out.logits.dtype == torch_dtype and torch.isfinite(out.logits.float()).all()
    # RoPE inverse frequencies are a non-persistent buffer: computed, fp32, on the device
    inv_freq = model.model.rotary_emb.inv_freq
    assert inv_freq.dtype == torch.float32 and inv_freq.device.type == "cpu"
    if name == "tiny-llama":  # default RoPE: theta^(-2i/d), d = 16, theta = 1e4
        expected = [10000.0 ** (-2 * i / 16) for i in range(8)]
        assert inv_freq.tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_build_with_override_and_attention_choice(torch):
    source = resolve_model("tiny-gpt-oss", [("num_hidden_layers", 1)])
    with pytest.warns(UserWarning, match="eager"):
        model = build_model(source, "fp32", "cpu")
    assert len(model.model.layers) == 1
    assert model.config.layer_types == ["sliding_attention"]
    assert model.config._attn_implementation == "eager"
    model = build_model(resolve_model("tiny-gqa"), "fp32", "cpu", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"


def test_build_bad_inputs(torch):
    source = resolve_model("tiny-llama")
    with pytest.raises(BadInput, match="int8"):
        build_model(source, "int8", "cpu")
    with pytest.raises(BadInput, match="magic"):
        build_model(source, "fp32", "cpu", attn_implementation="magic")
    with pytest.raises(BadInput, match="nonsense"):
        build_model(source, "fp32", "nonsense")
    bad = resolve_model("tiny-llama", [("num_attention_heads", 5)])
    with pytest.raises(BadInput):
        build_model(bad, "fp32", "cpu")


def test_resolve_device_and_describe(torch):
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    assert describe_weights(resolve_model("tiny-llama")) == "weights: random"


def test_override_shapes():
    assert resolve_model("tiny-llama", {"num_hidden_layers": 3}).config["num_hidden_layers"] == 3
    assert resolve_model("tiny-llama", [["num_hidden_layers", "3"]]).config["num_hidden_layers"] == 3
    with pytest.raises(BadInput, match="not a \\(key, value\\) pair"):
        resolve_model("tiny-llama", ["ab"])
    with pytest.raises(BadInput, match="not a string"):
        resolve_model("tiny-llama", "num_hidden_layers=3")


@pytest.mark.slow
def test_pretrained_folder_round_trip(torch, tmp_path):
    random_model = build_model(resolve_model("tiny-gqa"), "fp32", "cpu")
    random_model.save_pretrained(tmp_path / "saved")
    source = resolve_model(str(tmp_path / "saved"))
    assert source.weights == "pretrained" and describe_weights(source) == "weights: pretrained"
    loaded = build_model(source, "bf16", "cpu")
    assert loaded.dtype == torch.bfloat16 and not loaded.training
    a = random_model.model.layers[0].mlp.up_proj.weight
    b = loaded.model.layers[0].mlp.up_proj.weight
    assert torch.equal(a.to(torch.bfloat16), b)


def test_transformers_config_leaves_the_callers_config_as_it_was():
    """transformers adds `rope_theta` to Llama-3.1's `rope_scaling` dict; the source's config keeps its own."""
    import copy

    from wattlens.models.build import hf_config

    source = resolve_model("llama-3.1-8b")
    before = copy.deepcopy(source.config)
    conf = hf_config(source)
    assert source.config == before
    assert conf.rope_parameters["rope_type"] == "llama3"


_SMALL_ERNIE_MOE = (("num_hidden_layers", 3), ("hidden_size", 64), ("intermediate_size", 128),
                    ("moe_intermediate_size", 32), ("num_attention_heads", 4), ("num_key_value_heads", 2),
                    ("head_dim", 16), ("vocab_size", 500))


def test_a_router_left_at_zero_is_drawn_at_random_and_named(torch, monkeypatch):
    """transformers 5.17 leaves ERNIE-4.5-MoE's router at zero, so every token takes the same top-k
    experts; the build draws it again (and says so), which spreads the tokens over the experts."""
    from transformers.models.ernie4_5_moe import modeling_ernie4_5_moe as ernie

    original = ernie.Ernie4_5_MoePreTrainedModel._init_weights

    def as_in_transformers_5_17(self, module):
        original(self, module)
        if isinstance(module, ernie.Ernie4_5_MoeTopKRouter):
            torch.nn.init.zeros_(module.weight)

    monkeypatch.setattr(ernie.Ernie4_5_MoePreTrainedModel, "_init_weights", as_in_transformers_5_17)
    torch.manual_seed(0)
    model = build_model(resolve_model("ernie-4.5-21b-a3b", _SMALL_ERNIE_MOE), "fp32", "cpu")
    # the first layer is dense (moe_layer_start_index 1): two routers
    assert model.wattlens_reinitialised == ["model.layers.1.mlp.gate.weight", "model.layers.2.mlp.gate.weight"]
    router = model.model.layers[1].mlp.gate
    assert router.weight.std().item() == pytest.approx(model.config.initializer_range, rel=0.2)
    _, _, chosen = router(torch.randn(64, 64))
    assert torch.unique(chosen).numel() > 2 * model.config.num_experts_per_tok  # 64 tokens, 6 of 64 each


def test_a_router_with_random_weights_is_left_as_built(torch):
    torch.manual_seed(0)
    model = build_model(resolve_model("tiny-moe"), "fp32", "cpu")
    assert model.wattlens_reinitialised == []
    assert build_model(resolve_model("tiny-gqa"), "fp32", "cpu").wattlens_reinitialised == []
