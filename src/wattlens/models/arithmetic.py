"""Analytic facts about a model, computed from its HF config dict alone (no torch).

Architectures without formulas here (`SUPPORTED_MODEL_TYPES` lists those with) are counted on
transformers' own module instead (`wattlens.models.introspect`, which needs torch).

Why: predictions, roofline bounds and memory budgets must be available without a GPU and without
building the model. The parameter counts here reproduce `sum(p.numel() for p in model.parameters())`
of the transformers implementation exactly (biases, q/k norms, attention sinks, tied embeddings,
OPT's learned positions, Apertus' activation scalars, ERNIE-4.5-MoE's router correction bias,
DiffLlama's lambda vectors included; nanochat's weightless RMSNorms count nothing); the tests check
that on the meta device for every catalog model.

Conventions:
* parameter counts are element counts; byte figures take `dtype_bytes` (2 for bf16/fp16, 4 for fp32);
* "active" parameters are those one token touches: every non-expert parameter, the embedding
  table included (as HF numel() counts it), plus `experts_per_token` of the routed experts;
* FLOPs count a multiply-add as 2; embedding lookups are not matmuls, the LM head is.
"""

from __future__ import annotations

from dataclasses import dataclass

from wattlens.core.errors import BadInput

# HF defaults (transformers 5.x configuration classes) for the keys read here, used only when a
# config dict omits the key. Note `sliding_window` of mistral defaults to 4096 while the shipped
# Mistral-7B-v0.3 config sets it to null explicitly.
_HF_DEFAULTS: dict[str, dict] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                  max_position_embeddings=2048),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
                    sliding_window=4096, max_position_embeddings=131072),
    "mixtral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
                    sliding_window=None, num_local_experts=8, num_experts_per_tok=2,
                    max_position_embeddings=131072),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, tie_word_embeddings=False, sliding_window=4096,
                  use_sliding_window=False, max_window_layers=28, max_position_embeddings=32768),
    "qwen3": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, head_dim=128, tie_word_embeddings=False, attention_bias=False,
                  sliding_window=4096, use_sliding_window=False, max_window_layers=28,
                  max_position_embeddings=32768),
    "qwen3_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                      num_attention_heads=32, num_key_value_heads=4, tie_word_embeddings=False,
                      attention_bias=False, sliding_window=4096, use_sliding_window=False, num_experts=128,
                      num_experts_per_tok=8, moe_intermediate_size=768, decoder_sparse_step=1,
                      mlp_only_layers=[], max_position_embeddings=32768),
    "gpt_oss": dict(vocab_size=201088, hidden_size=2880, intermediate_size=2880, num_hidden_layers=36,
                    num_attention_heads=64, num_key_value_heads=8, head_dim=64, tie_word_embeddings=False,
                    attention_bias=True, sliding_window=128, num_local_experts=128, num_experts_per_tok=4,
                    max_position_embeddings=131072),
    "gemma": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=16, head_dim=256, tie_word_embeddings=True,
                  attention_bias=False, max_position_embeddings=8192),
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, tie_word_embeddings=True,
                   attention_bias=False, sliding_window=4096, max_position_embeddings=8192),
    "opt": dict(vocab_size=50272, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                tie_word_embeddings=True, ffn_dim=3072, word_embed_proj_dim=None, do_layer_norm_before=True,
                _remove_final_layer_norm=False, enable_bias=True, layer_norm_elementwise_affine=True,
                max_position_embeddings=2048),
    "phi": dict(vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                num_attention_heads=32, tie_word_embeddings=False, qk_layernorm=False,
                max_position_embeddings=2048),
    "falcon": dict(vocab_size=65024, hidden_size=4544, num_hidden_layers=32, num_attention_heads=71,
                   num_kv_heads=None, multi_query=True, new_decoder_architecture=False, parallel_attn=True,
                   bias=False, ffn_hidden_size=None, num_ln_in_parallel_attn=None, alibi=False,
                   tie_word_embeddings=True, max_position_embeddings=2048),
    "stablelm": dict(vocab_size=50304, hidden_size=2560, intermediate_size=6912, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False,
                     use_qkv_bias=False, qk_layernorm=False, use_parallel_residual=False,
                     max_position_embeddings=4096),
    "olmoe": dict(vocab_size=50304, hidden_size=2048, intermediate_size=2048, num_hidden_layers=16,
                  num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=False,
                  attention_bias=False, num_experts=64, num_experts_per_tok=8, max_position_embeddings=4096),
    "glm4": dict(vocab_size=151552, hidden_size=4096, intermediate_size=13696, num_hidden_layers=40,
                 num_attention_heads=32, num_key_value_heads=2, head_dim=128, tie_word_embeddings=False,
                 attention_bias=True, max_position_embeddings=131072),
    "ernie4_5": dict(vocab_size=103424, hidden_size=1024, intermediate_size=3072, num_hidden_layers=18,
                     num_attention_heads=16, num_key_value_heads=2, head_dim=128, tie_word_embeddings=True,
                     use_bias=False, max_position_embeddings=131072),
    "arcee": dict(vocab_size=32000, hidden_size=2560, intermediate_size=18432, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, head_dim=80, tie_word_embeddings=False,
                  attention_bias=False, mlp_bias=False, max_position_embeddings=4096),
    "olmo2": dict(vocab_size=50304, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, tie_word_embeddings=False, attention_bias=False,
                  max_position_embeddings=2048),
    "persimmon": dict(vocab_size=262144, hidden_size=4096, intermediate_size=16384, num_hidden_layers=36,
                      num_attention_heads=64, tie_word_embeddings=False, qk_layernorm=True,
                      max_position_embeddings=16384),
    "phi3": dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, tie_word_embeddings=False, sliding_window=None,
                 max_position_embeddings=4096),
    "helium": dict(vocab_size=48000, hidden_size=2560, intermediate_size=7040, num_hidden_layers=24,
                   num_attention_heads=20, num_key_value_heads=20, head_dim=128, tie_word_embeddings=False,
                   attention_bias=False, mlp_bias=False, max_position_embeddings=4096),
    "qwen2_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
                      num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=False, qkv_bias=True,
                      sliding_window=4096, use_sliding_window=False, max_window_layers=28, num_experts=60,
                      num_experts_per_tok=4, moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
                      decoder_sparse_step=1, mlp_only_layers=[], max_position_embeddings=32768),
    "smollm3": dict(vocab_size=128256, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                    num_attention_heads=16, num_key_value_heads=4, tie_word_embeddings=True,
                    attention_bias=False, mlp_bias=False, sliding_window=None, use_sliding_window=False,
                    no_rope_layers=None, no_rope_layer_interval=4, max_position_embeddings=32768),
    "granite": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                    max_position_embeddings=2048),
    "apertus": dict(vocab_size=131072, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, tie_word_embeddings=False, attention_bias=False,
                    hidden_act="xielu", max_position_embeddings=65536),
    "ernie4_5_moe": dict(vocab_size=103424, hidden_size=2560, intermediate_size=12288, num_hidden_layers=28,
                         num_attention_heads=20, num_key_value_heads=4, tie_word_embeddings=True,
                         use_bias=False, moe_num_experts=64, moe_k=6, moe_intermediate_size=1536,
                         moe_num_shared_experts=2, moe_layer_start_index=1, moe_layer_end_index=-1,
                         moe_layer_interval=1, max_position_embeddings=131072),
    "starcoder2": dict(vocab_size=49152, hidden_size=3072, intermediate_size=12288, num_hidden_layers=30,
                       num_attention_heads=24, num_key_value_heads=2, tie_word_embeddings=True, use_bias=True,
                       sliding_window=None, max_position_embeddings=4096),
    "jais2": dict(vocab_size=150272, hidden_size=3328, intermediate_size=26624, num_hidden_layers=32,
                  num_attention_heads=26, tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
                  hidden_act="relu2", max_position_embeddings=8192),
    "nanochat": dict(vocab_size=50304, hidden_size=768, intermediate_size=8192, num_hidden_layers=12,
                     num_attention_heads=6, tie_word_embeddings=False, attention_bias=False, hidden_act="relu2",
                     max_position_embeddings=2048),
    "diffllama": dict(vocab_size=32000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, tie_word_embeddings=False, attention_bias=False, hidden_act="silu",
                      max_position_embeddings=2048),
    "seed_oss": dict(vocab_size=155136, hidden_size=4096, intermediate_size=27648, num_hidden_layers=64,
                     num_attention_heads=80, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
                     attention_bias=True, attention_out_bias=False, mlp_bias=False, hidden_act="silu",
                     max_position_embeddings=524288),
    "gpt_neox": dict(vocab_size=50432, hidden_size=6144, intermediate_size=24576, num_hidden_layers=44,
                     num_attention_heads=64, tie_word_embeddings=False, attention_bias=True, hidden_act="gelu",
                     max_position_embeddings=2048),
}

SUPPORTED_MODEL_TYPES = tuple(sorted(_HF_DEFAULTS))

# Learned scalars of an activation module (transformers' ACT2FN), which an MLP builds afresh in every
# layer: xIELU learns alpha_p and alpha_n (its beta and eps are buffers), PReLU one slope.
_ACTIVATION_PARAMS = {"xielu": 2, "prelu": 1}
# The architectures whose formulas count them (checked against an MLP that builds ACT2FN[hidden_act]).
_COUNTS_ACTIVATION_PARAMS = ("apertus", "jais2", "nanochat", "diffllama", "seed_oss", "gpt_neox")


def has_formulas(config: dict) -> bool:
    """Whether `model_facts` counts this config's architecture here, not on transformers' module."""
    return config.get("model_type") in _HF_DEFAULTS


@dataclass(frozen=True)
class ModelFacts:
    """Shapes and parameter counts of one model, with the cost formulas built on them."""

    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    num_experts: int  # routed experts per MoE layer; 0 for dense models
    experts_per_token: int  # 0 for dense models
    params_total: int
    params_active: int
    params_embedding: int  # input token table (vocab x width)
    params_lm_head: int  # separate LM head parameters; 0 when tied to the embedding
    sliding_window: int | None  # None when no layer slides
    n_sliding_layers: int
    # Details the formulas need; public so reports can show them.
    n_moe_layers: int = 0
    params_per_expert: int = 0  # one expert of one layer, biases included
    params_position_embedding: int = 0  # OPT's learned position table (a lookup, like the embedding)
    lm_head_matmul_params: int = 0  # weight elements the LM head multiplies by, tied or not
    matmul_params_active: int = 0  # weight elements one token multiplies by, LM head included
    tied_embeddings: bool = False
    embedding_row_elements: int = 0  # width of one input-table row (word_embed_proj_dim for OPT)

    # ---- memory -------------------------------------------------------------------------------
    @property
    def n_full_layers(self) -> int:
        return self.num_layers - self.n_sliding_layers

    def weights_bytes(self, dtype_bytes: float) -> int:
        """Bytes of all parameters stored in one dtype."""
        return _round(self.params_total * dtype_bytes)

    def kv_bytes_per_token(self, dtype_bytes: float) -> int:
        """K and V bytes one token adds while every layer still holds it (context within the window).

        2 (K and V) x kv_heads x head_dim x bytes, summed over all layers. Beyond a sliding window
        the sliding layers stop growing: use `kv_cache_bytes` for a given context.
        """
        return _round(2 * self.num_kv_heads * self.head_dim * dtype_bytes * self.num_layers)

    def kv_token_layers(self, tokens: int) -> int:
        """Token-layer slots the cache holds for `tokens` of context (sliding layers capped at the window)."""
        _check_count("tokens", tokens)
        sliding = min(tokens, self.sliding_window) if self.sliding_window else tokens
        return self.n_full_layers * tokens + self.n_sliding_layers * sliding

    def kv_cache_bytes(self, tokens: int, dtype_bytes: float, batch: int = 1) -> int:
        """Analytic KV cache size for `batch` sequences of `tokens` tokens each.

        Sliding-window layers hold min(tokens, window) tokens. (HF's DynamicSlidingWindowLayer keeps
        window - 1 between steps; the one-token difference is ignored.)
        """
        _check_count("batch", batch, minimum=1)
        per_slot = 2 * self.num_kv_heads * self.head_dim * dtype_bytes
        return _round(batch * per_slot * self.kv_token_layers(tokens))

    # ---- compute ------------------------------------------------------------------------------
    def attention_flops_per_token(self, context_tokens: int) -> int:
        """Score (QK^T) and value (PV) FLOPs of one new token attending to `context_tokens` tokens."""
        _check_count("context_tokens", context_tokens)
        return 4 * self.num_heads * self.head_dim * self.kv_token_layers(context_tokens)

    def flops_per_token(self, context_tokens: int) -> int:
        """FLOPs to process one token at position `context_tokens` (it sees that many tokens).

        2 x active matmul weights (routed experts only, LM head included, embedding lookup not)
        + 4 x heads x head_dim x attended tokens per layer (sliding layers see min(ctx, window)).
        """
        return 2 * self.matmul_params_active + self.attention_flops_per_token(context_tokens)

    def prefill_flops(
        self, context_tokens: int, batch: int = 1, *, logits_for_all_tokens: bool = False
    ) -> int:
        """FLOPs of a causal prefill of `batch` prompts of `context_tokens` tokens.

        Token t (1-based) attends to t tokens (min(t, window) on sliding layers). By default the LM
        head runs for the last position only, as `generate` does (logits_to_keep=1); pass
        `logits_for_all_tokens=True` for a plain forward that returns every position's logits.
        """
        _check_count("context_tokens", context_tokens, minimum=1)
        _check_count("batch", batch, minimum=1)
        n = context_tokens
        full_sum = n * (n + 1) // 2
        w = self.sliding_window
        if w and n > w:
            sliding_sum = w * (w + 1) // 2 + (n - w) * w
        else:
            sliding_sum = full_sum
        token_layers = self.n_full_layers * full_sum + self.n_sliding_layers * sliding_sum
        attn = 4 * self.num_heads * self.head_dim * token_layers
        body = 2 * (self.matmul_params_active - self.lm_head_matmul_params) * n
        head_tokens = n if logits_for_all_tokens else 1
        head = 2 * self.lm_head_matmul_params * head_tokens
        return batch * (body + head + attn)

    # ---- bandwidth ----------------------------------------------------------------------------
    def expected_experts_touched(self, batch: int) -> float:
        """Expected distinct experts per MoE layer when `batch` tokens each pick k of E uniformly.

        E x (1 - (1 - k/E)^B); exactly k for one token. Real routers are not uniform, so this is
        an estimate for B > 1.
        """
        _check_count("batch", batch, minimum=1)
        if not self.num_experts:
            return 0.0
        if batch == 1:
            return float(self.experts_per_token)
        e, k = self.num_experts, self.experts_per_token
        return e * (1.0 - (1.0 - k / e) ** batch)

    def decode_bytes_per_step(self, context_tokens: int, batch: int, dtype_bytes: float) -> int:
        """Bytes read from GPU memory for one decode step of `batch` sequences at `context_tokens`.

        All non-expert weights except the lookup tables; the input embedding (and OPT's position
        table) contribute one row per sequence; the LM head is read in full (also when tied);
        the experts touched this step (`expected_experts_touched`); plus the whole KV cache of
        every sequence (sliding layers capped at the window).
        """
        _check_count("batch", batch, minimum=1)
        expert_all = self.n_moe_layers * self.num_experts * self.params_per_expert
        weights = self.params_total - self.params_embedding - self.params_position_embedding - expert_all
        if self.tied_embeddings:
            weights += self.lm_head_matmul_params  # the shared table is read in full as the LM head
        rows = min(batch, self.vocab_size) * self.embedding_row_elements
        if self.params_position_embedding:
            rows += batch * self.hidden_size
        weight_bytes = (weights + rows) * dtype_bytes + self.decode_expert_bytes_per_step(batch, dtype_bytes)
        return _round(weight_bytes) + self.kv_cache_bytes(context_tokens, dtype_bytes, batch)

    def decode_expert_bytes_per_step(self, batch: int, dtype_bytes: float) -> float:
        """Bytes of routed-expert weights one decode step of `batch` sequences reads: the experts
        touched (`expected_experts_touched`) in every MoE layer; 0 for dense models. Part of
        `decode_bytes_per_step`."""
        return self.n_moe_layers * self.expected_experts_touched(batch) * self.params_per_expert * dtype_bytes


def _round(x: float) -> int:
    return int(round(x))


def _check_count(name: str, value: int, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadInput(f"{name}={value!r} must be an integer >= {minimum}")


class _Cfg:
    """Config lookups with the HF default for the model type when a key is absent."""

    def __init__(self, config: dict, model_type: str):
        self.config = config
        self.defaults = _HF_DEFAULTS[model_type]
        self.model_type = model_type

    def get(self, key: str, fallback=None):
        if key in self.config:
            return self.config[key]
        return self.defaults.get(key, fallback)

    def int(self, key: str, fallback=None) -> int:
        value = self.get(key, fallback)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadInput(f"config key {key}={value!r} of model_type {self.model_type!r} is not an integer")
        return value


def _layer_sliding(c: _Cfg, num_layers: int) -> tuple[list[bool], int | None]:
    """Which layers use sliding-window attention, following each HF implementation's rule."""
    mt = c.model_type
    window = c.get("sliding_window")
    if mt in ("llama", "gemma", "opt", "phi", "falcon", "stablelm", "olmoe", "glm4", "ernie4_5", "arcee", "olmo2",
              "persimmon", "helium", "granite", "apertus", "ernie4_5_moe", "jais2", "nanochat", "diffllama",
              "seed_oss", "gpt_neox"):
        return [False] * num_layers, None
    if mt in ("qwen2", "qwen3", "qwen3_moe", "qwen2_moe") and not c.get("use_sliding_window"):
        window = None
    if not window:
        return [False] * num_layers, None
    if mt in ("mistral", "mixtral", "qwen3_moe", "starcoder2", "phi3"):
        return [True] * num_layers, window  # the window applies to every layer
    types = c.config.get("layer_types")
    if isinstance(types, list) and len(types) == num_layers:
        flags = [t == "sliding_attention" for t in types]
    elif mt in ("qwen2", "qwen3", "qwen2_moe"):
        mwl = c.int("max_window_layers")
        flags = [i >= mwl for i in range(num_layers)]
    elif mt == "smollm3":  # transformers' default layer_types: the layers without RoPE slide, if any does
        interval = c.int("no_rope_layer_interval")
        with_rope = c.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(num_layers)]
        flags = [bool(c.get("use_sliding_window")) and not with_rope[i] for i in range(num_layers)]
    else:  # gemma2, gpt_oss: even layers slide
        flags = [(i + 1) % 2 == 1 for i in range(num_layers)]
    return flags, (window if any(flags) else None)


def _ernie_moe_layers(c: _Cfg, num_layers: int) -> list[int]:
    """ERNIE-4.5-MoE's layers with experts: every `moe_layer_interval`-th (counting from 1) between
    `moe_layer_start_index` and `moe_layer_end_index` (-1: the last layer), both included; the rest
    are dense MLPs (the shipped 21B-A3B's first layer)."""
    keys = ("moe_layer_start_index", "moe_layer_end_index", "moe_layer_interval")
    start, end, interval = (c.get(k) for k in keys)
    for key, value in zip(keys, (start, end, interval)):  # the indices may be negative, the interval not
        if not isinstance(value, int) or isinstance(value, bool) or (key == keys[2] and value <= 0):
            raise BadInput(f"config key {key}={value!r} of model_type 'ernie4_5_moe' is not a usable integer")
    end = num_layers - 1 if end == -1 else end  # as its configuration class does
    return [i for i in range(num_layers) if (i + 1) % interval == 0 and start <= i <= end]


def model_facts(config: dict) -> ModelFacts:
    """Compute `ModelFacts` from an HF config dict (as in `ModelSource.config`)."""
    if not isinstance(config, dict):
        raise BadInput(f"model config must be a dict, got {type(config).__name__}")
    if not has_formulas(config):  # count on transformers' module (needs torch)
        from wattlens.models.introspect import facts_from_module

        return facts_from_module(config)
    mt = config["model_type"]
    c = _Cfg(config, mt)
    H = c.int("hidden_size")
    L = c.int("num_hidden_layers")
    V = c.int("vocab_size")
    nh = c.int("num_attention_heads")
    nkv = c.get("num_key_value_heads")
    nkv = nh if nkv is None else c.int("num_key_value_heads")
    if mt == "falcon":  # Falcon's own keys: one shared KV head (multi-query) unless the new decoder
        if c.get("new_decoder_architecture"):
            nkv = c.int("num_kv_heads") if c.get("num_kv_heads") is not None else nh
        else:
            nkv = 1 if c.get("multi_query") else nh
    if mt == "gpt_neox":  # one fused projection, hidden to 3 x hidden: MHA, head_dim hidden / heads
        nkv = nh
    hd = None if mt == "gpt_neox" else c.get("head_dim")
    if hd is None and nh and H % nh:
        raise BadInput(f"hidden_size {H} is not a multiple of num_attention_heads {nh}")
    hd = H // nh if hd is None else c.int("head_dim")
    tied = bool(c.get("tie_word_embeddings"))
    if nh == 0 or nkv == 0 or H == 0:
        raise BadInput(f"model_type {mt!r}: hidden_size and head counts must be positive")

    q_out, kv_out = nh * hd, nkv * hd
    attn_matmul = H * q_out + 2 * H * kv_out + q_out * H
    emb_width = H
    pos_emb = 0
    extra_matmul = 0  # per model, outside layers (OPT projections)
    extra_other = 0  # per model, non-matmul (final norm, lm_head bias)
    layer_other = 0  # per layer: biases, norms, sinks
    dense_mlp_matmul = 0
    dense_mlp_other = 0
    num_experts = experts_per_token = 0
    per_expert = per_expert_matmul = 0
    router_matmul = router_other = 0
    n_moe = 0

    if mt == "opt":
        if nkv != nh:
            nkv, kv_out = nh, q_out
        F = c.int("ffn_dim")
        wpd = c.get("word_embed_proj_dim") or H
        emb_width = wpd
        pos_emb = (c.int("max_position_embeddings") + 2) * H  # OPT offsets positions by 2
        bias = bool(c.get("enable_bias"))
        ln = 2 * H if c.get("layer_norm_elementwise_affine") else 0
        attn_matmul = 4 * H * H
        layer_other = (4 * H if bias else 0) + 2 * ln
        dense_mlp_matmul = 2 * H * F
        dense_mlp_other = (F + H) if bias else 0
        if wpd != H:
            extra_matmul = 2 * wpd * H  # project_in and project_out, no bias
        if c.get("do_layer_norm_before") and not c.get("_remove_final_layer_norm"):
            extra_other = ln
    elif mt == "falcon":
        if c.get("alibi"):
            raise BadInput("Falcon with ALiBi positions is not supported (rotary only)")
        bias = bool(c.get("bias"))
        F = c.get("ffn_hidden_size") or 4 * H
        attn_matmul = H * (q_out + 2 * kv_out) + q_out * H  # fused query_key_value, dense
        layer_other = (q_out + 2 * kv_out + H) if bias else 0
        two_norms = c.get("new_decoder_architecture") and (c.get("num_ln_in_parallel_attn") or 2) == 2
        layer_other += (2 if two_norms or not c.get("parallel_attn") else 1) * 2 * H  # LayerNorms
        dense_mlp_matmul = 2 * H * F
        dense_mlp_other = (F + H) if bias else 0
        extra_other = 2 * H  # ln_f
    elif mt == "starcoder2":
        I = c.int("intermediate_size")
        bias = bool(c.get("use_bias"))
        layer_other = ((q_out + 2 * kv_out + H) if bias else 0) + 2 * 2 * H  # biases, two LayerNorms
        dense_mlp_matmul = 2 * H * I  # c_fc, c_proj
        dense_mlp_other = (I + H) if bias else 0
        extra_other = 2 * H  # final LayerNorm
    elif mt in ("jais2", "gpt_neox"):  # LayerNorms with biases, a two-matrix MLP (ReLU squared; GELU)
        I = c.int("intermediate_size")
        if c.get("attention_bias"):  # q, k, v (GPT-NeoX: fused) and output biases
            layer_other = q_out + 2 * kv_out + H
        layer_other += 2 * 2 * H  # input and post-attention LayerNorms (GPT-NeoX keeps both when parallel)
        dense_mlp_matmul = 2 * H * I
        # Jais-2's MLP biases follow mlp_bias; GPT-NeoX's are always there
        dense_mlp_other = (I + H) if mt == "gpt_neox" or c.get("mlp_bias") else 0
        extra_other = 2 * H  # final LayerNorm
    elif mt == "stablelm":
        I = c.int("intermediate_size")
        layer_other = (q_out + 2 * kv_out) if c.get("use_qkv_bias") else 0
        if c.get("qk_layernorm"):
            layer_other += q_out + kv_out  # one weight-only LayerNorm per head, for q and k
        layer_other += (1 if c.get("use_parallel_residual") else 2) * 2 * H  # LayerNorms
        dense_mlp_matmul = 3 * H * I
        extra_other = 2 * H  # final LayerNorm
    elif mt in ("phi", "persimmon"):  # biased projections, LayerNorms, a two-matrix MLP with biases
        I = c.int("intermediate_size")
        layer_other = q_out + 2 * kv_out + H  # q, k, v (Persimmon: fused) and dense biases
        if c.get("qk_layernorm"):
            layer_other += 2 * 2 * hd  # LayerNorm(head_dim) weight + bias for q and k
        # Phi: one LayerNorm (parallel attention + MLP); Persimmon: input and post-attention LayerNorms
        layer_other += (1 if mt == "phi" else 2) * 2 * H
        dense_mlp_matmul = 2 * H * I
        dense_mlp_other = I + H
        extra_other = 2 * H + (V if mt == "phi" else 0)  # final LayerNorm; Phi's LM head bias
    else:
        I = c.int("intermediate_size")
        if mt == "helium":  # transformers' Helium sizes o_proj hidden x hidden, whatever heads x head_dim is
            attn_matmul = H * q_out + 2 * H * kv_out + H * H
        # attention biases
        if mt == "qwen2" or (mt in ("glm4", "helium") and c.get("attention_bias")) or (
                mt == "qwen2_moe" and c.get("qkv_bias")):
            layer_other += q_out + 2 * kv_out  # q, k, v biases
        elif mt in ("llama", "qwen3", "qwen3_moe", "gemma", "gemma2", "gpt_oss", "olmoe", "arcee", "olmo2",
                    "smollm3", "granite", "apertus", "nanochat", "diffllama") and c.get("attention_bias"):
            layer_other += q_out + 2 * kv_out + H
        elif mt == "seed_oss":  # attention_bias biases q, k and v; the output projection has its own switch
            layer_other += (q_out + 2 * kv_out if c.get("attention_bias") else 0) + (
                H if c.get("attention_out_bias") else 0)
        if mt in ("qwen3", "qwen3_moe", "apertus"):
            layer_other += 2 * hd  # q_norm, k_norm over head_dim
        if mt in ("olmoe", "olmo2"):
            layer_other += q_out + kv_out  # q_norm, k_norm over the whole projection
        if mt == "gpt_oss":
            layer_other += nh  # attention sinks
        if mt == "diffllama":
            layer_other += 4 * hd  # lambda_q1, lambda_k1, lambda_q2, lambda_k2 (its group norm has no weight)
        if mt == "nanochat":  # every RMSNorm (per layer, q/k, final) is weightless
            extra_other = 0
        else:
            layer_other += (4 if mt in ("gemma2", "glm4") else 2) * H  # RMSNorms per layer
            extra_other = H  # final norm
        if mt == "ernie4_5_moe" and c.get("use_bias"):
            extra_other += V  # its LM head takes use_bias too
        # Arcee and nanochat (ReLU squared), Apertus (xIELU): up and down only, no gate
        dense_mlp_matmul = (2 if mt in ("arcee", "apertus", "nanochat") else 3) * H * I
        if mt in ("llama", "helium", "smollm3", "granite", "seed_oss") and c.get("mlp_bias"):
            dense_mlp_other = 2 * I + H
        elif mt == "arcee" and c.get("mlp_bias"):
            dense_mlp_other = I + H
        if mt in ("ernie4_5", "ernie4_5_moe") and c.get("use_bias"):
            layer_other += q_out + 2 * kv_out + H
            dense_mlp_other = 2 * I + H
        if mt in ("mixtral", "olmoe"):  # every layer MoE, experts of the dense MLP's shape
            num_experts = c.int("num_local_experts" if mt == "mixtral" else "num_experts")
            experts_per_token = c.int("num_experts_per_tok")
            per_expert_matmul = per_expert = 3 * H * I
            router_matmul = H * num_experts
            n_moe = L
        elif mt in ("qwen3_moe", "qwen2_moe"):
            num_experts, experts_per_token = c.int("num_experts"), c.int("num_experts_per_tok")
            step = c.int("decoder_sparse_step") or 1
            mlp_only = set(c.get("mlp_only_layers") or [])
            n_moe = sum(1 for i in range(L) if i not in mlp_only and num_experts > 0 and (i + 1) % step == 0)
            per_expert_matmul = per_expert = 3 * H * c.int("moe_intermediate_size")
            router_matmul = H * num_experts
            if mt == "qwen2_moe":  # every token also runs a shared expert (a SwiGLU MLP) and its 1-wide gate
                router_matmul += 3 * H * c.int("shared_expert_intermediate_size") + H
        elif mt == "ernie4_5_moe":
            # transformers maps num_experts / num_experts_per_tok onto ERNIE's keys; the mapped names win
            num_experts = c.int("num_experts" if "num_experts" in c.config else "moe_num_experts")
            experts_per_token = c.int("num_experts_per_tok" if "num_experts_per_tok" in c.config else "moe_k")
            n_moe = len(_ernie_moe_layers(c, L))
            per_expert_matmul = per_expert = 3 * H * c.int("moe_intermediate_size")  # fused, never biased
            # The router is num_experts x hidden; beside it a [1, num_experts] score-correction bias (a
            # parameter, added to the scores before top-k). The shared experts are one SwiGLU MLP, as wide
            # as all of them together, that every token runs.
            router_matmul, router_other = H * num_experts, num_experts
            shared_width = c.int("moe_num_shared_experts") * c.int("moe_intermediate_size")
            if shared_width:
                router_matmul += 3 * H * shared_width
                if c.get("use_bias"):
                    router_other += 2 * shared_width + H
        elif mt == "gpt_oss":
            num_experts = c.int("num_local_experts")
            experts_per_token = c.int("num_experts_per_tok", c.get("experts_per_token"))
            per_expert_matmul = 3 * H * I
            per_expert = per_expert_matmul + 2 * I + H  # gate_up and down biases
            router_matmul, router_other = H * num_experts, num_experts
            n_moe = L
        if experts_per_token > num_experts:
            raise BadInput(f"experts per token {experts_per_token} exceeds num experts {num_experts}")
        if not n_moe:  # the layer pattern left no layer with experts: a dense model, as the module counts it
            num_experts = experts_per_token = per_expert = per_expert_matmul = 0
    if mt in _COUNTS_ACTIVATION_PARAMS:  # the activation may learn scalars of its own (xIELU, PReLU)
        dense_mlp_other += _ACTIVATION_PARAMS.get(c.get("hidden_act"), 0)
    n_dense = L - n_moe

    embedding = V * emb_width
    lm_head_matmul = V * emb_width
    lm_head = 0 if tied else lm_head_matmul
    non_expert = (
        embedding
        + pos_emb
        + lm_head
        + extra_matmul
        + extra_other
        + L * (attn_matmul + layer_other)
        + n_dense * (dense_mlp_matmul + dense_mlp_other)
        + n_moe * (router_matmul + router_other)
    )
    params_total = non_expert + n_moe * num_experts * per_expert
    params_active = non_expert + n_moe * experts_per_token * per_expert
    matmul_active = (
        extra_matmul
        + lm_head_matmul
        + L * attn_matmul
        + n_dense * dense_mlp_matmul
        + n_moe * (router_matmul + experts_per_token * per_expert_matmul)
    )
    if mt == "phi" or (mt == "ernie4_5_moe" and c.get("use_bias")):
        lm_head = (0 if tied else lm_head_matmul) + V  # the LM head bias is never tied
    sliding_flags, window = _layer_sliding(c, L)
    return ModelFacts(
        model_type=mt,
        num_layers=L,
        hidden_size=H,
        num_heads=nh,
        num_kv_heads=nkv,
        head_dim=hd,
        vocab_size=V,
        num_experts=num_experts,
        experts_per_token=experts_per_token,
        params_total=params_total,
        params_active=params_active,
        params_embedding=embedding,
        params_lm_head=lm_head,
        sliding_window=window,
        n_sliding_layers=sum(sliding_flags),
        n_moe_layers=n_moe,
        params_per_expert=per_expert,
        params_position_embedding=pos_emb,
        lm_head_matmul_params=lm_head_matmul,
        matmul_params_active=matmul_active,
        tied_embeddings=tied,
        embedding_row_elements=emb_width,
    )
