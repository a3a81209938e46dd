"""ModelFacts against transformers (exact numel on the meta device) and against hand arithmetic."""

import sys

import pytest

from wattlens.core.errors import BadInput
from wattlens.models.arithmetic import SUPPORTED_MODEL_TYPES, model_facts
from wattlens.models.catalog import list_catalog, resolve_model

BF16 = 2
FP16 = 2


def facts(name, overrides=()):
    return model_facts(resolve_model(name, overrides).config)


# ---------------------------------------------------------------------------------------------
# (a) exact agreement with transformers' own parameter count, built on the meta device
# ---------------------------------------------------------------------------------------------

def _hf_meta_numel(config: dict):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    hf_cfg = transformers.AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_cfg)
    return sum(p.numel() for p in model.parameters()), hf_cfg


CATALOG = [e.name for e in list_catalog()]
TINY = [e.name for e in list_catalog() if e.tiny]

# Variants that switch on the optional pieces of each architecture.
VARIANTS = [
    ("tiny-llama", (("attention_bias", True), ("mlp_bias", True))),
    ("tiny-gqa", (("tie_word_embeddings", True),)),
    ("tiny-moe", (("num_hidden_layers", 4), ("decoder_sparse_step", 2), ("mlp_only_layers", [3]))),
    ("tiny-moe", (("attention_bias", True),)),
    ("tiny-gpt-oss", (("num_hidden_layers", 1),)),
    ("tiny-gpt-oss", (("num_hidden_layers", 7),)),
    ("phi-2", (("num_hidden_layers", 2), ("qk_layernorm", True), ("tie_word_embeddings", True))),
    ("opt-1.3b", (("num_hidden_layers", 2), ("word_embed_proj_dim", 512))),
    ("opt-6.7b", (("num_hidden_layers", 2), ("_remove_final_layer_norm", True))),
    ("qwen2.5-0.5b", (("num_hidden_layers", 4), ("use_sliding_window", True), ("max_window_layers", 2))),
    ("qwen3-32b", (("num_hidden_layers", 3), ("use_sliding_window", True), ("sliding_window", 512),
                   ("max_window_layers", 1))),
    ("mistral-7b-v0.3", (("num_hidden_layers", 2), ("sliding_window", 4096))),
    ("gemma-2-9b", (("num_hidden_layers", 3),)),
    ("gemma-7b", (("num_hidden_layers", 2), ("attention_bias", True))),
    ("falcon-7b", (("num_hidden_layers", 2), ("bias", True))),
    ("falcon-7b", (("num_hidden_layers", 2), ("parallel_attn", False))),
    ("falcon-7b", (("num_hidden_layers", 2), ("new_decoder_architecture", True), ("num_kv_heads", 8),
                   ("num_attention_heads", 64), ("hidden_size", 4096))),
    ("stablelm-3b-4e1t", (("num_hidden_layers", 2), ("use_qkv_bias", True), ("qk_layernorm", True),
                          ("num_key_value_heads", 8))),
    ("stablelm-3b-4e1t", (("num_hidden_layers", 2), ("use_parallel_residual", True))),
    ("olmoe-1b-7b", (("num_hidden_layers", 2), ("num_key_value_heads", 4))),
    ("starcoder2-3b", (("num_hidden_layers", 2), ("use_bias", False), ("tie_word_embeddings", False))),
    ("olmo-2-7b", (("num_hidden_layers", 2), ("attention_bias", True), ("num_key_value_heads", 8))),
    ("persimmon-8b", (("num_hidden_layers", 2), ("qk_layernorm", False), ("tie_word_embeddings", True))),
    ("phi-3-mini", (("num_hidden_layers", 2), ("num_key_value_heads", 8), ("tie_word_embeddings", True))),
    ("qwen1.5-moe-a2.7b", (("num_hidden_layers", 4), ("qkv_bias", False), ("mlp_only_layers", [1]),
                           ("decoder_sparse_step", 1), ("num_experts_per_tok", 2))),
    ("helium-1-preview", (("num_hidden_layers", 2), ("attention_bias", True), ("mlp_bias", True),
                          ("num_key_value_heads", 4))),
    ("smollm3-3b", (("num_hidden_layers", 2), ("attention_bias", True), ("mlp_bias", True),
                    ("num_key_value_heads", 8), ("tie_word_embeddings", False))),
    # layer_types left to transformers: the layers without RoPE (every 4th) slide
    ("smollm3-3b", (("num_hidden_layers", 8), ("layer_types", None), ("use_sliding_window", True),
                    ("sliding_window", 512))),
    ("smollm3-3b", (("num_hidden_layers", 6), ("layer_types", None), ("no_rope_layers", None),
                    ("no_rope_layer_interval", 3), ("use_sliding_window", True), ("sliding_window", 256))),
    ("granite-6.7b", (("num_hidden_layers", 2), ("attention_bias", True), ("mlp_bias", True),
                      ("num_key_value_heads", 8), ("tie_word_embeddings", True))),
    ("apertus-7b", (("num_hidden_layers", 2), ("attention_bias", True), ("num_key_value_heads", 8),
                    ("tie_word_embeddings", True))),
    ("apertus-7b", (("num_hidden_layers", 2), ("hidden_act", "silu"))),  # no learned scalars
    ("apertus-7b", (("num_hidden_layers", 2), ("hidden_act", "prelu"))),  # one
    ("ernie-4.5-21b-a3b", (("num_hidden_layers", 4), ("moe_layer_start_index", 0),
                           ("moe_layer_interval", 2))),
    ("ernie-4.5-21b-a3b", (("num_hidden_layers", 5), ("moe_layer_end_index", 2), ("moe_k", 2),
                           ("moe_num_experts", 8))),
    ("ernie-4.5-21b-a3b", (("num_hidden_layers", 3), ("use_bias", True))),  # tied, with an LM head bias
    ("ernie-4.5-21b-a3b", (("num_hidden_layers", 2), ("use_bias", True), ("moe_num_shared_experts", 0),
                           ("tie_word_embeddings", False), ("num_key_value_heads", 20))),
    ("ernie-4.5-21b-a3b", (("num_hidden_layers", 2), ("moe_layer_start_index", 2))),  # every layer dense
    ("ernie-4.5-21b-a3b", (("num_hidden_layers", 3), ("num_experts", 16), ("num_experts_per_tok", 4))),
    # Jais-2: biases on or off, tied, GQA with a head_dim of its own
    ("jais-2-8b", (("num_hidden_layers", 2), ("attention_bias", False), ("mlp_bias", False),
                   ("tie_word_embeddings", True))),
    ("jais-2-8b", (("num_hidden_layers", 2), ("num_key_value_heads", 2), ("head_dim", 64))),
    ("jais-2-8b", (("num_hidden_layers", 2), ("hidden_act", "prelu"))),  # an activation with a learned slope
    # nanochat: biases, GQA, tied; a head_dim of its own (still no norm weights)
    ("nanochat-0.26b", (("num_hidden_layers", 2), ("attention_bias", True), ("num_key_value_heads", 2),
                        ("tie_word_embeddings", True))),
    ("nanochat-0.26b", (("num_hidden_layers", 3), ("head_dim", 64), ("final_logit_softcapping", None))),
    # DiffLlama: biases, GQA (an even KV-head count), tied; the lambdas follow head_dim
    ("diffllama-1.2b", (("num_hidden_layers", 2), ("attention_bias", True), ("num_key_value_heads", 8),
                        ("tie_word_embeddings", True))),
    ("diffllama-1.2b", (("num_hidden_layers", 2), ("head_dim", 96), ("num_key_value_heads", 4))),
    # Seed-OSS: the q/k/v and output bias switches apart, MLP biases; tied MHA with another head_dim
    ("seed-oss-29b", (("num_hidden_layers", 2), ("attention_bias", False), ("attention_out_bias", True),
                      ("mlp_bias", True))),
    ("seed-oss-29b", (("num_hidden_layers", 2), ("num_key_value_heads", 80), ("head_dim", 64),
                      ("tie_word_embeddings", True))),
    # GPT-NeoX: no attention biases, tied; sequential residual, full rotary and fewer, wider heads
    ("gpt-neox-20b", (("num_hidden_layers", 2), ("attention_bias", False), ("tie_word_embeddings", True))),
    ("gpt-neox-20b", (("num_hidden_layers", 2), ("use_parallel_residual", False), ("num_attention_heads", 32),
                      ("rope_parameters", {"rope_type": "default", "rope_theta": 10000.0,
                                           "partial_rotary_factor": 1.0}))),
]

# Model types given formulas in bfd2243's and f625221's follow-ups; their variants are checked field for
# field too.
NEWER_MODEL_TYPES = ("smollm3", "granite", "apertus", "ernie4_5_moe", "jais2", "nanochat", "diffllama", "seed_oss",
                     "gpt_neox")
NEWER_VARIANTS = [(n, o) for n, o in VARIANTS if resolve_model(n).config["model_type"] in NEWER_MODEL_TYPES]


def _check_against_hf(name, overrides):
    source = resolve_model(name, overrides)
    f = model_facts(source.config)
    numel, hf_cfg = _hf_meta_numel(source.config)
    assert f.params_total == numel, (name, overrides)
    types = getattr(hf_cfg, "layer_types", None)
    if types is not None and source.config["model_type"] not in ("mistral", "mixtral", "qwen3_moe"):
        assert f.n_sliding_layers == sum(t == "sliding_attention" for t in types), (name, overrides)


@pytest.mark.parametrize("name", TINY)
def test_tiny_params_match_hf(name):
    _check_against_hf(name, ())


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_full_size_params_match_hf(name):
    _check_against_hf(name, ())


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_shrunk_params_match_hf(name):
    heads = resolve_model(name).config["num_attention_heads"]
    shrink = (("num_hidden_layers", 2), ("hidden_size", 8 * heads), ("intermediate_size", 512))
    _check_against_hf(name, shrink)


@pytest.mark.parametrize("name,overrides", VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
def test_variants_params_match_hf(name, overrides):
    _check_against_hf(name, overrides)


@pytest.mark.parametrize("name,overrides", NEWER_VARIANTS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(NEWER_VARIANTS)])
def test_newer_variants_equal_the_module_count_field_for_field(name, overrides):
    """Beyond the total: tables, LM head, matmul weights, experts and their layers, heads, sliding layers."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from wattlens.models.introspect import facts_from_module

    config = resolve_model(name, overrides).config
    assert model_facts(dict(config)) == facts_from_module(dict(config)), (name, overrides)


def test_ernie_moe_layer_pattern_and_shared_experts():
    """ERNIE-4.5-21B-A3B: dense layer 0, then 27 layers of 64 routed experts (6 per token) beside two
    shared ones run as one MLP 2 x 1536 wide; the router keeps a [1, 64] score-correction bias."""
    H, I, Im, V, E, k = 2560, 12288, 1536, 103424, 64, 6
    attn = 2 * H * H + 2 * H * (4 * 128)  # 20 query heads of 128, 4 KV heads
    norms = 2 * H
    dense_mlp = 3 * H * I
    router = H * E + E  # weight, correction bias
    shared = 3 * H * 2 * Im
    expert = 3 * H * Im
    embed = V * H  # tied
    total = embed + 28 * (attn + norms) + dense_mlp + 27 * (router + shared + E * expert) + H
    f = facts("ernie-4.5-21b-a3b")
    assert (f.params_total, f.n_moe_layers, f.params_per_expert) == (total, 27, expert)
    assert f.params_total == 21_825_437_888  # "21B"
    assert f.params_active == total - 27 * (E - k) * expert  # about 3B: "A3B"
    assert f.matmul_params_active == embed + 28 * attn + dense_mlp + 27 * (H * E + shared + k * expert)
    assert f.tied_embeddings and f.params_lm_head == 0
    every_other = facts("ernie-4.5-21b-a3b", (("moe_layer_start_index", 0), ("moe_layer_interval", 2)))
    assert every_other.n_moe_layers == 14  # layers 1, 3, ..., 27


def test_apertus_mlp_and_activation_scalars():
    """Apertus-7B (class defaults): MLP of up and down only, q/k norms over head_dim, and xIELU's two
    learned scalars per layer."""
    H, I, V, L, hd = 4096, 14336, 131072, 32, 128
    layer = 4 * H * H + 2 * hd + 2 * H * I + 2 + 2 * H  # attention, q/k norms, MLP, alpha_p / alpha_n, norms
    f = facts("apertus-7b")
    assert f.params_total == 2 * V * H + L * layer + H
    assert f.matmul_params_active == V * H + L * (4 * H * H + 2 * H * I)


def test_gpt_neox_20b_by_hand():
    """GPT-NeoX-20B: a fused biased qkv projection (MHA, 64 heads of 96), biased dense and two-matrix GELU
    MLP, two LayerNorms per layer even with the parallel residual, untied embed_in / embed_out."""
    H, I, V, L = 6144, 24576, 50432, 44
    layer = (H * 3 * H + 3 * H) + (H * H + H) + (H * I + I) + (I * H + H) + 2 * 2 * H
    f = facts("gpt-neox-20b")
    assert f.params_total == 2 * V * H + L * layer + 2 * H == 20_554_567_680  # "20B"
    assert (f.num_heads, f.num_kv_heads, f.head_dim) == (64, 64, 96)
    assert f.matmul_params_active == V * H + L * (4 * H * H + 2 * H * I)
    assert f.kv_bytes_per_token(FP16) == 2 * 64 * 96 * 2 * L  # the rotary fraction does not change the cache


def test_diffllama_lambdas_and_nanochat_weightless_norms():
    """DiffLlama-1.2B (class defaults): four lambda vectors of head_dim per layer, a group norm without
    weights. nanochat (class defaults): no norm weights anywhere, MLP of fc1 and fc2 only."""
    H, I, V, L, hd = 2048, 8192, 32000, 16, 64
    f = facts("diffllama-1.2b")
    assert f.params_total == 2 * V * H + L * (4 * H * H + 3 * H * I + 4 * hd + 2 * H) + H
    assert f.matmul_params_active == V * H + L * (4 * H * H + 3 * H * I)
    H, I, V, L = 768, 8192, 50304, 12
    n = facts("nanochat-0.26b")
    assert n.params_total == n.matmul_params_active + V * H == 2 * V * H + L * (4 * H * H + 2 * H * I)
    assert (n.num_heads, n.head_dim) == (6, 128)


def test_every_catalog_model_type_supported():
    for name in CATALOG:
        assert facts(name).model_type in SUPPORTED_MODEL_TYPES


# ---------------------------------------------------------------------------------------------
# (b) values worked out by hand
# ---------------------------------------------------------------------------------------------

def test_tiny_llama_by_hand():
    # hidden 64, 2 layers, 4 heads x 16 = 4 KV heads (MHA), FFN 128, vocab 1000, untied.
    embed = 1000 * 64
    attn = 4 * 64 * 64  # q, k, v, o, all 64x64
    mlp = 3 * 64 * 128  # gate, up, down
    norms = 2 * 64
    total = embed + 2 * (attn + mlp + norms) + 64 + embed  # + final norm + lm_head
    f = facts("tiny-llama")
    assert total == 210_240
    assert (f.params_total, f.params_active) == (total, total)
    assert f.kv_bytes_per_token(4) == 2 * 2 * 4 * 16 * 4  # K+V x layers x heads x head_dim x fp32


def test_opt_1_3b_dense_mha_by_hand():
    H, L, F, V = 2048, 24, 8192, 50272
    embed = V * H  # 102,957,056, tied to the LM head
    positions = (2048 + 2) * H  # learned positions, offset 2
    attn = 4 * (H * H + H)  # q, k, v, out_proj with biases
    layer_norms = 2 * (2 * H)  # two LayerNorms, weight + bias
    mlp = (H * F + F) + (F * H + H)
    final_ln = 2 * H
    total = embed + positions + L * (attn + layer_norms + mlp) + final_ln
    assert total == 1_315_758_080
    f = facts("opt-1.3b")
    assert f.params_total == total and f.params_lm_head == 0 and f.tied_embeddings
    assert f.num_kv_heads == 32 and f.head_dim == 64
    assert f.kv_bytes_per_token(FP16) == 2 * 24 * 32 * 64 * 2 == 196_608
    # decode reads the tied table once as the LM head, plus one input row and one position row
    w = total - embed - positions
    assert f.decode_bytes_per_step(100, 1, FP16) == (w + embed + H + H) * 2 + 100 * 196_608


LLAMA8_EMBED = 128256 * 4096  # 525,336,576
LLAMA8_ATTN = 4096 * 4096 + 2 * 4096 * (8 * 128) + 4096 * 4096  # q, k, v (8 KV heads), o
LLAMA8_MLP = 3 * 4096 * 14336
LLAMA8_LAYER = LLAMA8_ATTN + LLAMA8_MLP + 2 * 4096  # + two RMSNorms


def test_llama_3_1_8b_gqa_by_hand():
    total = 32 * LLAMA8_LAYER + 2 * LLAMA8_EMBED + 4096  # layers, embed + lm_head, final norm
    assert total == 8_030_261_248
    f = facts("llama-3.1-8b")
    assert f.params_total == f.params_active == total
    assert (f.num_heads, f.num_kv_heads, f.head_dim) == (32, 8, 128)
    assert f.params_embedding == f.params_lm_head == LLAMA8_EMBED
    assert f.kv_bytes_per_token(BF16) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert f.kv_cache_bytes(1000, BF16, batch=3) == 3 * 1000 * 131_072
    assert f.weights_bytes(BF16) == 2 * total
    # FLOPs: every weight matrix but the embedding lookup, plus attention over the context.
    matmul = 32 * (LLAMA8_ATTN + LLAMA8_MLP) + LLAMA8_EMBED
    assert f.flops_per_token(4096) == 2 * matmul + 4 * 32 * 32 * 128 * 4096
    # Prefill of 3 tokens, logits for the last one only: sum of attention over t = 1, 2, 3.
    body = 2 * (matmul - LLAMA8_EMBED)
    assert f.prefill_flops(3, batch=2) == 2 * (3 * body + 2 * LLAMA8_EMBED + 4 * 32 * 32 * 128 * (1 + 2 + 3))


def test_llama_3_1_8b_decode_bytes_batch1():
    f = facts("llama-3.1-8b")
    ctx = 2048
    weights = f.weights_bytes(BF16) - LLAMA8_EMBED * 2 + 4096 * 2  # table out, one row in
    kv = ctx * 2 * 32 * 8 * 128 * 2
    assert f.decode_bytes_per_step(ctx, 1, BF16) == weights + kv
    # batch 4: four rows, four sequences' KV
    batch4 = f.weights_bytes(BF16) - LLAMA8_EMBED * 2 + 4 * 4096 * 2 + 4 * kv
    assert f.decode_bytes_per_step(ctx, 4, BF16) == batch4


def test_mixtral_8x7b_moe_by_hand():
    H, I, E, k, L, V = 4096, 14336, 8, 2, 32, 32000
    attn = 2 * H * H + 2 * H * (8 * 128)
    expert = 3 * H * I  # 176,160,768
    router = H * E
    norms = 2 * H
    embed = V * H
    total = L * (attn + norms + router + E * expert) + 2 * embed + H
    active = L * (attn + norms + router + k * expert) + 2 * embed + H
    assert total == 46_702_792_704
    assert active == 12_879_925_248
    f = facts("mixtral-8x7b")
    assert (f.params_total, f.params_active) == (total, active)
    assert (f.num_experts, f.experts_per_token, f.n_moe_layers) == (8, 2, 32)
    # decode: batch 1 touches exactly k experts per layer
    non_expert_wo_table = total - embed - L * E * expert
    kv = 10 * 2 * 32 * 8 * 128 * 2
    assert f.decode_bytes_per_step(10, 1, BF16) == (non_expert_wo_table + H + L * k * expert) * 2 + kv
    # batch 8: expected distinct experts 8 * (1 - (6/8)^8)
    touched = 8 * (1 - (6 / 8) ** 8)
    assert f.expected_experts_touched(8) == pytest.approx(touched)
    expected = round((non_expert_wo_table + 8 * H + L * touched * expert) * 2) + 8 * kv
    assert f.decode_bytes_per_step(10, 8, BF16) == expected


def test_gpt_oss_20b_by_hand():
    H, L, V, E, k, I = 2880, 24, 201088, 32, 4, 2880
    q, kv = 64 * 64, 8 * 64  # 64 query heads, 8 KV heads, head_dim 64
    attn = (H * q + q) + 2 * (H * kv + kv) + (q * H + H) + 64  # biases everywhere, + 64 sinks
    norms = 2 * H
    router = H * E + E  # with bias
    expert = (H * 2 * I + 2 * I) + (I * H + H)  # gate_up and down, with biases: 24,891,840
    embed = V * H  # 579,133,440; LM head separate
    total = L * (attn + norms + router + E * expert) + 2 * embed + H
    active = L * (attn + norms + router + k * expert) + 2 * embed + H
    assert expert == 24_891_840
    assert total == 20_914_757_184  # "21B"
    assert active == 4_187_440_704
    # OpenAI's "3.6B active" leaves out the input embedding table (the LM head stays in):
    assert active - embed == 3_608_307_264
    f = facts("gpt-oss-20b")
    assert (f.params_total, f.params_active) == (total, active)
    assert (f.sliding_window, f.n_sliding_layers) == (128, 12)


def test_gpt_oss_sliding_window_kv():
    f = facts("gpt-oss-20b")
    per_token_layer = 2 * 8 * 64 * BF16  # K+V, 8 KV heads, head_dim 64
    assert f.kv_cache_bytes(2048, BF16) == per_token_layer * (12 * 128 + 12 * 2048)
    assert f.kv_cache_bytes(100, BF16) == per_token_layer * 24 * 100  # inside the window
    assert f.kv_bytes_per_token(BF16) == per_token_layer * 24
    # attention FLOPs: sliding layers attend to 128 tokens at most
    assert f.attention_flops_per_token(2048) == 4 * 64 * 64 * (12 * 128 + 12 * 2048)
    # prefill attention: sum over t=1..200 of t (full) and min(t,128) (sliding)
    full_sum = 200 * 201 // 2
    sliding_sum = 128 * 129 // 2 + (200 - 128) * 128
    body = 2 * (f.matmul_params_active - f.lm_head_matmul_params) * 200
    head = 2 * f.lm_head_matmul_params
    attn = 4 * 64 * 64 * (12 * full_sum + 12 * sliding_sum)
    assert f.prefill_flops(200) == body + head + attn


def test_gemma_tied_and_gemma2_alternating():
    g = facts("gemma-7b")
    assert g.tied_embeddings and g.params_lm_head == 0 and g.head_dim == 256
    g2 = facts("gemma-2-9b")
    assert (g2.n_sliding_layers, g2.sliding_window) == (21, 4096)  # even layers of 42 slide


def test_qwen_mistral_windows_off_by_config():
    for name in ("qwen2.5-7b", "qwen3-32b", "mistral-7b-v0.3", "mixtral-8x7b", "qwen3-30b-a3b"):
        f = facts(name)
        assert (f.sliding_window, f.n_sliding_layers) == (None, 0), name


def test_qwen3_30b_a3b_active_is_about_3b():
    f = facts("qwen3-30b-a3b")
    assert f.params_total == 30_532_122_624
    assert 3.0e9 < f.params_active < 3.5e9
    assert f.params_total - f.params_active == 48 * (128 - 8) * 3 * 2048 * 768


def test_bad_inputs():
    with pytest.raises(BadInput, match="distilbert"):  # no formulas, and no causal LM in transformers
        model_facts({"model_type": "distilbert"})
    with pytest.raises(BadInput, match="tokens"):
        facts("tiny-llama").kv_cache_bytes(-1, 2)
    with pytest.raises(BadInput, match="batch"):
        facts("tiny-llama").decode_bytes_per_step(10, 0, 2)


def test_arithmetic_does_not_import_torch():
    import subprocess

    code = (
        "import sys; import wattlens.models.arithmetic, wattlens.models.catalog, wattlens.models.build; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env_with_src())


def _env_with_src():
    import os
    from pathlib import Path

    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env
