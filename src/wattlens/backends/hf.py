"""HF transformers backend in three serving modes.

- `eager`: `model.generate` with the dynamic KV cache — the GPT-OSS study's method.
- `static`: `model.generate` with a static KV cache (transformers may compile the forward itself).
- `compiled`: our lean loop over the model's own forward: a static cache, a compiled decode step
  (forward + sampling + bookkeeping, all on the device) captured once in a CUDA graph, so each
  decode step is one graph replay with no per-step host work or allocation. This is the mode that
  approximates what an optimised serving engine achieves for one request stream. Its compile
  scope is `model` (the whole step traced at once; minutes of compilation for a 64-layer model)
  or `layers` ("regional": one compiled decoder-layer body runs every layer, each layer's module
  and cache slot passed in; on an H100 a fraction of the setup at the same decode speed:
  docs/serving-modes.md).
- `graphed`: the same lean loop with the model's own uncompiled kernels, captured in a CUDA graph:
  decode is GPU-bound like `compiled` but a new shape costs a capture (seconds), not a compile.

Every mode stamps each output token with `perf_counter_ns` after a device sync, so TTFT and every
inter-token gap come from the same run. torch and transformers are imported lazily.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from contextlib import contextmanager
from typing import Any

from wattlens.backends.base import GenerationOutput, TokenHook, clock_ns
from wattlens.core.errors import BadInput
from wattlens.core.spec import COMPILE_SCOPES, LEAN_LOOP_MODES, MODES, SamplingSpec
from wattlens.models.build import kv_cache_copied_per_step, kv_copied_attention_record


def _torch():
    import torch

    return torch


def sample_next_tokens(logits, sampling: SamplingSpec):
    """Pick the next token of each row with static shapes only (safe inside a CUDA graph).

    Sampling uses the exponential-race form of the Gumbel-max trick: argmax(p / E) with
    E ~ Exp(1) draws index i with probability p_i, without a host sync or a multinomial kernel.
    """
    torch = _torch()
    if sampling.greedy:
        return logits.argmax(dim=-1)
    scores = logits.float() / sampling.temperature
    if sampling.top_k:
        k = min(sampling.top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs_sorted = sorted_scores.softmax(dim=-1)
        mass_before = probs_sorted.cumsum(dim=-1) - probs_sorted
        sorted_scores = sorted_scores.masked_fill(mass_before > sampling.top_p, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
    probs = scores.softmax(dim=-1)
    race = torch.empty_like(probs).exponential_(1.0)
    return (probs / race).argmax(dim=-1)


GQA_DECODE_ATTENTION = "wattlens_gqa_sdpa"


def decode_attention_by_reductions(query, key, value, attention_mask, scaling=None):
    """One-token attention for the compiled decode step, each KV head read once.

    Scores are a broadcast multiply + sum, which compiles to one reduction spread over every
    (head, cache position), with the mask and softmax fused in; probabilities times V is a small
    batched matmul. A fused attention kernel instead launches one block per (batch, KV head) for
    a single query row and leaves most of the GPU idle; transformers' compiled sdpa path first
    copies every KV head once per query head that shares it. Shapes: query [B, Hq, 1, D], key/value [B, Hkv, L, D], mask
    broadcastable to [B, 1, 1, L] (bool: True = attend; float: additive). Returns [B, 1, Hq, D].
    """
    torch = _torch()
    batch, q_heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    groups = q_heads // kv_heads  # query head h reads KV head h // groups
    scale = scaling if scaling is not None else head_dim**-0.5
    q = query.reshape(batch, kv_heads, groups, 1, head_dim).float()
    scores = (q * key[:, :, None].float()).sum(-1) * scale  # [B, Hkv, groups, L]
    if attention_mask is not None:
        mask = attention_mask.reshape(batch, 1, 1, -1)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    probs = scores.softmax(dim=-1).to(value.dtype)
    # probs @ V as a (batched) matmul: a reduction over cache positions for each output channel
    # would read V with a stride of D elements (measured at ~37 us per layer on an H100).
    out = torch.matmul(probs, value)  # [B, Hkv, groups, D]
    return out.reshape(batch, q_heads, 1, head_dim).transpose(1, 2).contiguous()


def decode_attention_by_flex(query, key, value, attention_mask, scaling=None, position_ids=None):
    """One-token attention through PyTorch's flex attention.

    Compiled, a one-row flex attention becomes inductor's flex-decoding kernel: the cache is split
    into chunks spread over all SMs (split-KV) and the query heads sharing a KV head are packed into
    one tile, so every KV head is read once. The mask is applied inside the kernel from the token
    positions (`position_ids`, [B, 1]): in a static-cache decode step a masked layer sees cache slots
    0..position, which is what its causal mask says; a layer given no mask (a full sliding window)
    sees every slot. Without positions the given mask is applied as a per-slot bias instead.
    Same shapes and mask convention as `decode_attention_by_reductions`.
    """
    torch = _torch()
    from torch.nn.attention.flex_attention import flex_attention

    batch, _, _, head_dim = query.shape
    slots = key.shape[2]
    hidden = float("-inf")
    if attention_mask is None:
        score_mod = None
    elif position_ids is not None:
        def score_mod(score, b, h, q_idx, kv_idx):
            return torch.where(kv_idx <= position_ids[b, 0], score, hidden)
    else:
        mask = attention_mask.expand(batch, 1, 1, slots).reshape(batch, slots)
        bias = (torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(~mask, hidden)
                if mask.dtype == torch.bool else mask.float())

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + bias[b, kv_idx]

    scale = scaling if scaling is not None else head_dim**-0.5
    out = flex_attention(query, key, value, score_mod=score_mod, scale=scale, enable_gqa=True)
    return out.transpose(1, 2).contiguous()


DECODE_ATTENTION_CHOICES = ("auto", "reductions", "flex", "grouped_sdpa", "transformers")
"""How the compiled loop's one-token steps attend: `auto` (reductions on GPUs, grouped SDPA on the
CPU), `reductions`, `flex` (PyTorch flex attention, split-KV decoding), `grouped_sdpa`, or
`transformers` (the model's own sdpa path, for comparison)."""

_DECODE_ATTENTION_NAMES = {
    "auto": GQA_DECODE_ATTENTION,
    "reductions": "wattlens_decode_reductions",
    "flex": "wattlens_decode_flex",
    "grouped_sdpa": "wattlens_decode_grouped_sdpa",
}


def _decode_attention(kind, module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    torch = _torch()
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] != 1 or kwargs.get("position_bias") is not None or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if kind == "auto":
        kind = "reductions" if query.is_cuda else "grouped_sdpa"
    if kind == "reductions":
        return decode_attention_by_reductions(query, key, value, attention_mask, scaling), None
    if kind == "flex":
        return decode_attention_by_flex(query, key, value, attention_mask, scaling, kwargs.get("position_ids")), None
    if groups == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, q_heads, _, head_dim = query.shape
    grouped = query.reshape(batch, key.shape[1], groups, head_dim)  # head h uses KV head h // groups
    out = torch.nn.functional.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask,
                                                           scale=scaling)
    return out.reshape(batch, q_heads, 1, head_dim).transpose(1, 2).contiguous(), None


def gqa_decode_attention(module, query, key, value, attention_mask, **kwargs):
    """Decode-step attention that reads each (shared) KV head once; prefill goes to transformers' sdpa.

    transformers' sdpa path repeats every KV head for each query head that shares it when a mask
    is present and the model is being compiled; with a static cache that copies the whole cache
    (x4 for Llama-3.1-8B) every step. On a GPU the one-token step uses
    `decode_attention_by_reductions`; elsewhere the query heads of a group become that group's
    query rows ([B, Hkv, groups, D]) for one SDPA call.
    """
    return _decode_attention("auto", module, query, key, value, attention_mask, **kwargs)


def _register_gqa_attention() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    for kind, name in _DECODE_ATTENTION_NAMES.items():
        AttentionInterface.register(name, functools.partial(_decode_attention, kind))
        AttentionMaskInterface.register(name, sdpa_mask)


SINK_DECODE_ATTENTION = "wattlens_sinks_grouped_decode_sdpa_prompt"


def _model_eager_attention(module):
    """The eager attention function of the modeling file that defines `module` (transformers keeps
    one per architecture, e.g. GPT-OSS's with attention sinks)."""
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        raise RuntimeError(f"{type(module).__name__}: its modeling file has no eager_attention_forward")
    return fn


def decode_attention_with_sinks(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                                **kwargs):
    """Decode-step attention for eager-only models with attention sinks (GPT-OSS), each KV head read once.

    transformers' eager path copies every KV head once per query head that shares it (`repeat_kv`)
    and multiplies the copies: on an H100 that copy took 17.6 ms of GPT-OSS-20B's 47.6 ms decode
    step at batch 64 (results/predictor/experiments/step_profile-h100-eager-gpt-oss.json). Here the
    query heads of a group are the rows of one matmul against their KV head; logits, mask, sink
    logit and softmax are computed as the model's own eager function does. A prompt (the prefill)
    goes through `_prompt_attention_with_sinks`; dropout and modules without sinks go to the eager
    function. Shapes as in `decode_attention_by_reductions`.
    """
    torch = _torch()
    sinks = getattr(module, "sinks", None)
    if dropout or sinks is None:
        return _model_eager_attention(module)(module, query, key, value, attention_mask, dropout=dropout,
                                              scaling=scaling, **kwargs)
    if query.shape[2] != 1:
        return _prompt_attention_with_sinks(module, query, key, value, attention_mask, scaling)
    batch, q_heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    groups = q_heads // kv_heads  # query head h reads KV head h // groups
    scale = scaling if scaling is not None else head_dim**-0.5
    logits = torch.matmul(query.reshape(batch, kv_heads, groups, head_dim), key.transpose(2, 3)) * scale
    if attention_mask is not None:
        mask = attention_mask.reshape(batch, 1, 1, -1)
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        else:
            logits = logits + mask
    sink = sinks.reshape(1, kv_heads, groups, 1).expand(batch, -1, -1, -1).to(logits.dtype)
    logits = torch.cat([logits, sink], dim=-1)
    logits = logits - logits.max(dim=-1, keepdim=True).values
    probs = torch.softmax(logits, dim=-1, dtype=logits.dtype)[..., :-1]  # the sink column takes no value
    out = torch.matmul(probs.to(value.dtype), value)  # [B, Hkv, groups, D]
    return out.reshape(batch, q_heads, 1, head_dim).transpose(1, 2).contiguous(), None


def _prompt_attention_with_sinks(module, query, key, value, attention_mask, scaling=None):
    """A prompt's attention with sinks (GPT-OSS's prefill) through SDPA, so a fused kernel runs it.

    transformers' eager function materialises every query x key logit; through it GPT-OSS-20B's
    prefill took 11.6x its FLOP roofline (H100, batch 8 x 1000 tokens), this way 5.5-5.8x
    (results/predictor/experiments/derived_figures.md; the eager rows: campaign/store/superseded/
    *-eager-prefill*). SDPA has no sink logit, so the sink becomes one more key that every query
    sees: queries get one more dimension holding 1, that key holds sink / scale there (zeros
    elsewhere) and a zero value, so its logit is the sink's and it adds exp(sink) to the softmax's
    sum, as the eager function's extra column does. Other keys get 0 in that dimension; a few more
    zeros make the width a multiple of 8, as fused kernels want. K / V are repeated to the query
    heads, as transformers' SDPA path does.
    """
    torch = _torch()
    functional = torch.nn.functional
    batch, q_heads, tokens, head_dim = query.shape
    groups = q_heads // key.shape[1]
    scale = scaling if scaling is not None else head_dim**-0.5
    extra = 8 - head_dim % 8  # the sink's dimension and zeros up to a multiple of 8
    q = torch.cat([query, query.new_ones(batch, q_heads, tokens, 1),
                   query.new_zeros(batch, q_heads, tokens, extra - 1)], dim=-1)
    k = functional.pad(key.repeat_interleave(groups, dim=1), (0, extra))
    v = functional.pad(value.repeat_interleave(groups, dim=1), (0, extra))
    sink_key = k.new_zeros(batch, q_heads, 1, head_dim + extra)
    sink_key[..., head_dim] = (module.sinks.to(k.dtype) / scale)[None, :, None]
    k = torch.cat([k, sink_key], dim=2)
    v = torch.cat([v, v.new_zeros(batch, q_heads, 1, head_dim + extra)], dim=2)
    mask = None
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[2]]
        mask = functional.pad(mask, (0, 1), value=True if mask.dtype == torch.bool else 0.0)  # the sink: visible
    out = functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)[..., :head_dim]
    return out.transpose(1, 2).contiguous(), None


def _has_attention_sinks(model) -> bool:
    return any(getattr(m, "sinks", None) is not None for m in model.modules())


def _register_sink_attention() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(SINK_DECODE_ATTENTION, decode_attention_with_sinks)
    AttentionMaskInterface.register(SINK_DECODE_ATTENTION, eager_mask)


GATHERED_EXPERTS = "wattlens_gathered_experts"

DECODE_EXPERTS_CHOICES = ("auto", "batched_mm", "grouped_mm", "gathered")
"""Experts kernel of the lean loop's one-token steps (MoE models): `auto` (on GPUs transformers'
`batched_mm` when the step is compiled, `grouped_mm` in `graphed` mode; the model's own elsewhere),
`batched_mm`, `grouped_mm`, or `gathered` (`decode_experts_by_gathered_reductions`)."""


def _gathered_linear(x, weight, expert_ids, is_transposed: bool):
    """Row s of x times expert `expert_ids[s]`'s matrix, as a multiply + sum over the input dim.

    Under torch.compile the expert gather becomes an indirect load inside one reduction kernel, so
    only the routed experts' weights are read, once; transformers' `batched_mm` first copies them
    into a new tensor and then multiplies (about three times the bytes for a batch-1 step).
    weight: [E, in, out] when `is_transposed`, else [E, out, in]; x: [S, in]; returns [S, out] (fp32).
    """
    w = weight[expert_ids].float()
    if is_transposed:
        return (x[:, :, None] * w).sum(1)
    return (w * x[:, None, :]).sum(-1)


def decode_experts_by_gathered_reductions(self, hidden_states, top_k_index, top_k_weights):
    """An experts forward for transformers' ExpertsInterface with `batched_mm`'s semantics
    (gate/up, activation, down, optional biases and post-expert norm, routing weights summed over
    the top-k slots), computed with `_gathered_linear`. Meant for small decode steps: every row
    reads its experts' weights itself, so large batches should keep a grouped kernel."""
    top_k = top_k_index.size(-1)
    dtype = hidden_states.dtype
    x = hidden_states.repeat_interleave(top_k, dim=0).float()  # [S, H], S = tokens x top_k
    ids = top_k_index.reshape(-1)
    has_bias = getattr(self, "has_bias", False)
    if self.has_gate:
        up_w, up_b = self.gate_up_proj, (self.gate_up_proj_bias if has_bias else None)
    else:
        up_w, up_b = self.up_proj, (self.up_proj_bias if has_bias else None)
    h = _gathered_linear(x, up_w, ids, self.is_transposed)
    if up_b is not None:
        h = h + up_b[ids].float()
    h = h.to(dtype)
    h = self._apply_gate(h) if self.has_gate else self.act_fn(h)
    out = _gathered_linear(h.float(), self.down_proj, ids, self.is_transposed)
    if has_bias:
        out = out + self.down_proj_bias[ids].float()
    out = out.to(dtype)
    if getattr(self, "has_post_expert_norm", False):
        out = self.post_expert_norm(out)
    weighted = out.float() * top_k_weights.reshape(-1, 1).float()
    return weighted.view(-1, top_k, out.shape[-1]).sum(1).to(dtype)


def _register_gathered_experts() -> None:
    try:
        from transformers.integrations.moe import ExpertsInterface
    except ImportError as exc:
        raise BadInput(f"decode_experts='gathered' needs transformers' ExpertsInterface: {exc}") from None
    ExpertsInterface.register(GATHERED_EXPERTS, decode_experts_by_gathered_reductions)


class _TimingStreamer:
    """A transformers streamer that stamps every new token after a device sync.

    `generate` first puts the prompt, then each new token; only the latter are stamped.
    """

    def __init__(self, sync, on_token: TokenHook | None):
        self._sync = sync
        self._on_token = on_token
        self._seen_prompt = False
        self.times_ns: list[int] = []

    def put(self, value) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self._sync()
        t = clock_ns()
        self.times_ns.append(t)
        if self._on_token is not None:
            self._on_token(len(self.times_ns) - 1, t)

    def end(self) -> None:
        pass


_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def compile_seconds_by_phase() -> dict[str, float]:
    """torch.compile's accumulated wall seconds per timed phase in this process (dynamo tracing,
    AOT, inductor codegen, ...), as torch records them; {} when nothing was compiled."""
    from torch._dynamo.utils import compile_times

    try:
        names, values = compile_times(repr="csv", aggregate=True)
    except Exception:  # noqa: BLE001 - a private API: its absence must not fail a trial
        return {}
    return {name: float(v) for name, v in zip(names, values)}


def compile_seconds_since(before: dict[str, float], min_s: float = 0.5) -> dict[str, float]:
    """Phases that took at least `min_s` more seconds than in `before` (a compact breakdown of one
    trial's setup: which part of compilation the minutes went to)."""
    now = compile_seconds_by_phase()
    grown = {k: round(v - before.get(k, 0.0), 2) for k, v in now.items()}
    return {k: v for k, v in sorted(grown.items(), key=lambda kv: -kv[1]) if v >= min_s}


def _decoder_layers(model) -> list:
    """The model's decoder blocks: the longest ModuleList named `layers` or `h` of one block type."""
    torch = _torch()
    best: list = []
    for name, module in model.named_modules():
        if (isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "h")
                and len({type(m) for m in module}) == 1 and len(module) > len(best)):
            best = list(module)
    if not best:
        raise BadInput(f"compile scope 'layers': no decoder layers found in {type(model).__name__}")
    return best


class _OneLayerCache:
    """The KV cache as one decoder layer sees it (regional compilation).

    `update` writes this layer's slot whatever index the layer passes, so the layer index never
    selects anything inside the compiled body and one compiled body serves every layer; otherwise
    each layer's index is a constant, and torch.compile compiles every layer again. Anything else
    is the whole cache's.
    """

    def __init__(self, layer_cache, whole_cache):
        self.layer_cache = layer_cache
        self.whole_cache = whole_cache

    def update(self, key_states, value_states, layer_idx=None, *args, **kwargs):
        return self.layer_cache.update(key_states, value_states, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.whole_cache, name)


def _regional_layer_calls(model, options) -> list:
    """(layer, call) per decoder layer: `call` runs the layer through ONE compiled function shared by
    all layers, the layer module and its own cache slot passed in as arguments."""
    torch = _torch()

    def run_layer(layer, layer_cache, *args, **kwargs):
        return layer._call_impl(*args, past_key_values=layer_cache, **kwargs)

    compiled = torch.compile(run_layer, fullgraph=True, dynamic=False, options=options)
    calls = []
    for index, layer in enumerate(_decoder_layers(model)):
        def call(*args, past_key_values=None, _layer=layer, _index=index, **kwargs):
            layer_cache = (None if past_key_values is None
                           else _OneLayerCache(past_key_values.layers[_index], past_key_values))
            return compiled(_layer, layer_cache, *args, **kwargs)
        calls.append((layer, call))
    return calls


def _install_layer_calls(layer_calls: list) -> None:
    """Make each decoder layer run through its compiled call (regional compilation)."""
    for layer, call in layer_calls:
        layer._compiled_call_impl = call


def _has_experts(model) -> bool:
    """True for MoE models whose experts kernel transformers lets us switch (prefill vs decode)."""
    cfg = model.config
    if not any((getattr(cfg, k, 0) or 0) > 0 for k in _EXPERT_COUNT_KEYS):
        return False
    if not hasattr(model, "set_experts_implementation"):
        return False
    try:
        model.get_experts_implementation()
        return True
    except (ValueError, AttributeError):
        return False


COMPILE_SCOPE_ENV = "WATTLENS_COMPILE_SCOPE"


RECOMPILE_LIMIT = 1024
"""Compiled variants torch.compile keeps per function (its default is 8)."""


def _allow_many_compiled_shapes(torch) -> None:
    """Let one process compile a decode step for many shapes (a sweep, a study part).

    Every (batch, cache length, sampling, model) gives the same Python function a new compiled
    variant, and dynamo stops compiling a function after `recompile_limit` (8) variants: the
    `compiled` step (fullgraph) then fails, and transformers' own compiled static-cache step
    silently runs uncompiled, which would change what `static` measures mid-sweep.
    """
    cfg = torch._dynamo.config
    cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 8 * RECOMPILE_LIMIT)


class HFBackend:
    """Runs a transformers causal LM in one of the three serving modes."""

    name = "hf"

    def __init__(
        self,
        model,
        mode: str,
        sampling: SamplingSpec = SamplingSpec(),
        *,
        compile_prefill: bool = True,
        use_cuda_graph: bool | None = None,
        decode_attention: str = "auto",
        decode_experts: str = "auto",
        compile_scope: str | None = None,
    ):
        if mode not in MODES:
            raise BadInput(f"unsupported mode {mode!r}; choose one of {', '.join(MODES)}")
        if decode_attention not in DECODE_ATTENTION_CHOICES:
            raise BadInput(f"unsupported decode attention {decode_attention!r}; "
                           f"choose one of {', '.join(DECODE_ATTENTION_CHOICES)}")
        if decode_experts not in DECODE_EXPERTS_CHOICES:
            raise BadInput(f"unsupported decode experts {decode_experts!r}; "
                           f"choose one of {', '.join(DECODE_EXPERTS_CHOICES)}")
        compile_scope = compile_scope or os.environ.get(COMPILE_SCOPE_ENV) or "model"
        if compile_scope not in COMPILE_SCOPES:
            raise BadInput(f"unsupported compile scope {compile_scope!r} (argument or ${COMPILE_SCOPE_ENV}); "
                           f"choose one of {', '.join(COMPILE_SCOPES)}")
        self.decode_attention = decode_attention
        self.decode_experts = decode_experts
        self.compile_scope = compile_scope
        torch = _torch()
        self.model = model
        self.mode = mode
        self.sampling = sampling
        self.device = next(model.parameters()).device
        self.is_cuda = self.device.type == "cuda"
        self.compile_prefill = compile_prefill
        self.use_cuda_graph = self.is_cuda if use_cuda_graph is None else use_cuda_graph
        if self.use_cuda_graph and not self.is_cuda:
            raise BadInput("CUDA graphs need a CUDA device")
        self._torch = torch
        self._lean: _LeanDecoder | None = None
        if mode != "eager":
            _allow_many_compiled_shapes(torch)
        gen_cfg = model.generation_config
        self.pad_token_id = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else 0

    # -- shared -----------------------------------------------------------------------------
    def sync(self) -> None:
        if self.is_cuda:
            self._torch.cuda.synchronize(self.device)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "backend": "hf-transformers",
            "mode": self.mode,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "transformers_cache": "dynamic" if self.mode == "eager" else "static",
        }
        if self.mode in LEAN_LOOP_MODES:
            if self.mode == "graphed":
                step, prefill = "model's own kernels, uncompiled", "eager forward"
            else:
                per_layer = " of each decoder layer (one body shared by all)" if self.compile_scope == "layers" else ""
                tuning = ", coordinate_descent_tuning" if self.is_cuda else ""
                step = f"torch.compile(fullgraph{tuning}){per_layer}"
                prefill = f"torch.compile{per_layer}" if self.compile_prefill else "eager forward"
                d["compile_scope"] = self.compile_scope
            d.update(
                loop="wattlens lean decode loop",
                decode_step=step + (" + CUDA graph" if self.use_cuda_graph else ""),
                prefill=prefill,
                decode_attention=(self._lean.recorded_attention() if self._lean is not None
                                  else getattr(self.model.config, "_attn_implementation", None)),
            )
            if self._lean is not None:  # decode steps attend over every slot of it (the predictor's cache_tokens)
                d["static_cache_tokens"] = self._lean.max_cache_tokens
        else:
            d["loop"] = "transformers generate"
        if _has_experts(self.model):
            d["experts_implementation"] = self.model.get_experts_implementation()
            if self.mode in LEAN_LOOP_MODES:
                d["decode_experts"] = self.decode_experts
        return d

    def prepare(self, batch_size: int, ctx_tokens: int, gen_tokens: int) -> None:
        if self.mode in LEAN_LOOP_MODES:
            needed = ctx_tokens + gen_tokens
            lean = self._lean
            if lean is None or lean.batch_size != batch_size or lean.max_cache_tokens < needed:
                self._lean = None  # free the old cache and graph before allocating new ones
                self._lean = _LeanDecoder(self, batch_size, needed, gen_tokens)
            self._lean.ensure_gen_capacity(gen_tokens)

    def release(self) -> None:
        self._lean = None

    def generate(self, input_ids, attention_mask, gen_tokens: int, on_token: TokenHook | None = None) -> GenerationOutput:
        if gen_tokens < 1:
            raise BadInput(f"gen must be >= 1 token, got {gen_tokens}")
        if self.mode in LEAN_LOOP_MODES:
            if self._lean is None:
                self.prepare(input_ids.shape[0], input_ids.shape[1], gen_tokens)
            return self._lean.generate(input_ids, gen_tokens, on_token, attention_mask)
        return self._generate_hf(input_ids, attention_mask, gen_tokens, on_token)

    # -- eager / static: transformers' own generate --------------------------------------------
    def _generate_hf(self, input_ids, attention_mask, gen_tokens, on_token) -> GenerationOutput:
        torch = self._torch
        streamer = _TimingStreamer(self.sync, on_token)
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=gen_tokens,
            min_new_tokens=gen_tokens,  # output length forced: EOS cannot end it early
            streamer=streamer,
            return_dict_in_generate=True,
            pad_token_id=self.pad_token_id,
        )
        if self.sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                top_k=self.sampling.top_k,
            )
        if self.mode == "static":
            kwargs["cache_implementation"] = "static"
        self.sync()
        start = clock_ns()
        with torch.inference_mode():
            out = self.model.generate(**kwargs)
        self.sync()
        end = clock_ns()
        new_ids = out.sequences[:, input_ids.shape[1] :]
        return GenerationOutput(
            output_ids=new_ids,
            start_ns=start,
            token_times_ns=streamer.times_ns,
            end_ns=end,
            held=out.past_key_values,
        )


def _capture_safe_window_update(layer) -> None:
    """Make a static sliding-window cache layer's one-token update capturable in a CUDA graph.

    Once its window is full, transformers' layer rolls the window left and writes the new token at
    the end through an index tensor built from a host list (`torch.tensor([-1], device=...)`, a
    workaround for a dynamo bug); uncompiled, that is a host-to-device copy, which a CUDA graph
    capture refuses. This instance override does the same roll and overwrites the last slot
    through a slice; every other case goes to the layer's own update.
    """
    own_update = layer.update

    def update(key_states, value_states, *args, **kwargs):
        if not (layer.is_initialized and key_states.shape[-2] == 1
                and layer.cumulative_length_int >= layer.max_cache_len):
            return own_update(key_states, value_states, *args, **kwargs)
        layer.cumulative_length_int += 1
        keys, values = layer.keys.roll(-1, dims=-2), layer.values.roll(-1, dims=-2)
        keys[:, :, -1:] = key_states
        values[:, :, -1:] = value_states
        layer.keys.copy_(keys)  # in place: the graph holds these addresses
        layer.values.copy_(values)
        return layer.keys, layer.values

    layer.update = update


# Architectures whose attention calls SDPA itself only while `_attn_implementation` is "sdpa" (no
# attention interface): any other name sends them to an eager path that materialises the scores.
# Their SDPA calls with shared KV heads go through `_shared_kv_sdpa` instead.
OWN_SDPA_MODEL_TYPES = ("falcon",)


def _shared_kv_sdpa(own_sdpa):
    """An SDPA function for calls with fewer KV heads than query heads that lets a fused kernel run
    them; anything else goes to `own_sdpa` unchanged.

    Falcon-7B passes its one KV head against 71 query heads. PyTorch's fused kernels refuse unequal
    head counts, and its math kernel converts K and V to fp32, copies them once per query head
    (traced on the CPU: a [8, 71, 64, 1128] fp32 clone of K and of V per layer) and materialises
    the scores. So:

    * a one-token step runs as one attention per KV head, the query heads that share it as its
      query rows: each KV head is read once (decode steps took 23 ms at batch 8 on an H100 through
      the math kernel, Mistral-7B's 9.6 ms);
    * a prompt (the prefill) gets K and V repeated to the query heads, as transformers' own SDPA
      path does for grouped-query models, so a fused kernel takes it (through the math kernel
      Falcon's prefill ran at 11-15% of its FLOP roofline, Mistral-7B's at 43-51%).
    """
    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        q_heads, kv_heads = query.shape[1], key.shape[1]
        per_head_mask = attn_mask is not None and attn_mask.dim() == 4 and attn_mask.shape[1] != 1
        if (query.dim() != 4 or kv_heads == q_heads or q_heads % kv_heads or dropout_p or per_head_mask
                or kwargs.get("enable_gqa")):
            return own_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, **kwargs)
        groups = q_heads // kv_heads  # query head h uses KV head h // groups
        if query.shape[2] > 1 or is_causal:
            return own_sdpa(query, key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1),
                            attn_mask=attn_mask, is_causal=is_causal, scale=scale, **kwargs)
        batch, _, _, head_dim = query.shape
        grouped = query.reshape(batch, kv_heads, groups, head_dim)
        out = own_sdpa(grouped, key, value, attn_mask=attn_mask, scale=scale)
        return out.reshape(batch, q_heads, 1, head_dim)

    return sdpa


def _sliced_fused_qkv_split(attention) -> None:
    """Make Falcon's multi-query split of the fused QKV projection capturable in a CUDA graph.

    transformers picks the shared key and value heads with a list index (`fused_qkv[..., [-2], :]`),
    which builds the index on the host and copies it to the GPU at every call: a CUDA graph capture
    refuses that (H100, 2026-11-22). Slices select the same heads without an index tensor (views
    where transformers made copies; the attention reshapes them either way). Falcon's other layouts
    (one KV head per query head, or the new decoder architecture) keep their own split.
    """
    if getattr(attention, "new_decoder_architecture", False) or not getattr(attention, "multi_query", False):
        return

    def split(fused_qkv):
        batch, tokens, _ = fused_qkv.shape
        heads = fused_qkv.view(batch, tokens, attention.num_heads + 2, attention.head_dim)
        return heads[..., :-2, :], heads[..., -2:-1, :], heads[..., -1:, :]

    attention._split_heads = split


class _LeanDecoder:
    """Static cache + a decode step (compiled, or the model's own kernels) replayed from a CUDA graph.

    All per-step state (current token, position, output buffer, step counter) lives in device
    tensors that the captured step updates in place, so a decode step costs one graph replay.
    Unless the whole step is compiled, the step passes explicit masks built from the position
    tensor: transformers' own mask code reads tensor values on the host outside tracing, which a
    CUDA graph cannot capture, and it may drop the mask that hides a static cache's empty slots.
    """

    def __init__(self, backend: HFBackend, batch_size: int, max_cache_tokens: int, gen_tokens: int):
        from transformers import StaticCache

        torch = backend._torch
        self.backend = backend
        self.model = backend.model
        self.batch_size = batch_size
        self.max_cache_tokens = max_cache_tokens
        dev = backend.device
        self.cache = StaticCache(config=self.model.config, max_cache_len=max_cache_tokens)
        if backend.mode == "graphed":  # uncompiled kernels captured as they run (compiled mode traces them)
            for layer in self.cache.layers:
                if hasattr(layer, "cumulative_length_int"):
                    _capture_safe_window_update(layer)
        self.cur_tokens = torch.zeros(batch_size, 1, dtype=torch.long, device=dev)
        self.positions = torch.zeros(batch_size, 1, dtype=torch.long, device=dev)  # cache slot of the next token
        # Left padding of each row (ragged batches): its rotary position is the slot minus the padding,
        # and its padded slots stay hidden. Zeros for uniform batches.
        self.pad_tokens = torch.zeros(batch_size, 1, dtype=torch.long, device=dev)
        self.step_index = torch.zeros(1, dtype=torch.long, device=dev)
        self.out_tokens = torch.zeros(batch_size, max(gen_tokens, 1), dtype=torch.long, device=dev)
        compiling = backend.mode == "compiled"
        self._whole_step_compiled = compiling and backend.compile_scope == "model"
        self._explicit_masks = not self._whole_step_compiled
        self._attention = None
        model_type = getattr(self.model.config, "model_type", None)
        if backend.mode == "graphed" and model_type == "falcon":
            for module in self.model.modules():
                if hasattr(module, "_split_heads") and hasattr(module, "query_key_value"):
                    _sliced_fused_qkv_split(module)
        attn_implementation = getattr(self.model.config, "_attn_implementation", None)
        # A model calling SDPA itself keeps its attention; its calls with shared KV heads go through
        # `_shared_kv_sdpa` instead.
        self._shared_kv_model_sdpa = (model_type in OWN_SDPA_MODEL_TYPES and attn_implementation == "sdpa"
                                      and backend.decode_attention != "transformers")
        if model_type in OWN_SDPA_MODEL_TYPES:
            attn_implementation = None  # no attention interface: our decode attentions cannot reach it
        if attn_implementation == "sdpa" and backend.decode_attention != "transformers":
            _register_gqa_attention()
            choice = backend.decode_attention
            if choice == "auto" and not compiling:
                # Uncompiled, the reductions variant materialises a [.., cache, head_dim] product in
                # memory; SDPA with the group folded into query rows reads each KV head once.
                choice = "grouped_sdpa"
            self._attention = _DECODE_ATTENTION_NAMES[choice]
        elif (attn_implementation == "eager"
              and backend.decode_attention != "transformers" and _has_attention_sinks(self.model)):
            _register_sink_attention()  # GPT-OSS: no SDPA path in transformers; eager would copy each KV head
            self._attention = SINK_DECODE_ATTENTION
        self._has_experts = _has_experts(self.model)
        self._prefill_experts = self.model.get_experts_implementation() if self._has_experts else {}
        if self._has_experts and backend.decode_experts == "gathered":
            _register_gathered_experts()
        # On GPUs, coordinate-descent tuning makes inductor lower one-row matmuls (every projection
        # of a batch-1 decode step) to tuned Triton reductions fused with their neighbours, which
        # stream the weights at close to full bandwidth; cuBLAS GEMV plus separate kernels do not.
        decode_options = {"coordinate_descent_tuning": True} if backend.is_cuda else None
        self._decode_fn = self._decode_step
        self._prefill_fn = self._prefill_logits
        if self._whole_step_compiled:
            self._decode_fn = torch.compile(self._decode_step, fullgraph=True, dynamic=False, options=decode_options)
            if backend.compile_prefill:
                self._prefill_fn = torch.compile(self._prefill_logits, fullgraph=True, dynamic=False)
        self._layer_fns = []  # (layer, call) of the compiled layer body for decode steps
        self._prefill_layer_fns = []  # the same body for the prefill, compiled as the whole-step prefill is
        if compiling and backend.compile_scope == "layers":
            self._layer_fns = _regional_layer_calls(self.model, decode_options)
            if backend.compile_prefill:
                # Coordinate-descent tuning is for one-row decode matmuls; on the prefill it would
                # only benchmark every fused kernel again at prompt-sized shapes (setup, no gain).
                self._prefill_layer_fns = _regional_layer_calls(self.model, None)
        self._graph = None
        self._initialized = False
        self._sliding = self._sliding_window_tokens() is not None
        full_layers = [i for i, layer in enumerate(self.cache.layers) if not hasattr(layer, "cumulative_length_int")]
        self._full_layer_index = full_layers[0] if full_layers else 0

    def ensure_gen_capacity(self, gen_tokens: int) -> None:
        if self.out_tokens.shape[1] < gen_tokens:
            torch = self.backend._torch
            self.out_tokens = torch.zeros(self.batch_size, gen_tokens, dtype=torch.long, device=self.backend.device)
            self._graph = None  # the graph captured the old buffer's address

    def _decode_experts_kernel(self) -> str | None:
        """The experts kernel for one-token decode steps (None: keep the model's own)."""
        choice = self.backend.decode_experts
        if choice == "auto":
            if not self.backend.is_cuda:
                return None
            # Compiled: batched_mm fuses into the step. Uncompiled: grouped_mm (one sorted grouped
            # GEMM, graph-safe) reads only the routed experts; batched_mm would copy them per row.
            return "batched_mm" if self.backend.mode == "compiled" else "grouped_mm"
        if choice == "gathered":
            return GATHERED_EXPERTS
        return choice

    def _use_decode_experts(self, decoding: bool) -> None:
        """MoE: the model's own experts kernel for prefill; for one-token decode steps a kernel that
        reads only the routed experts' weights (`batched_mm`, or `gathered`)."""
        kernel = self._decode_experts_kernel() if self._has_experts else None
        if kernel is None:
            return
        try:
            self.model.set_experts_implementation(
                {k: kernel for k in self._prefill_experts} if decoding else self._prefill_experts
            )
        except ValueError:  # this architecture's experts cannot be switched: keep its default
            self._has_experts = False
            self.model.set_experts_implementation(self._prefill_experts)

    def recorded_attention(self) -> str | None:
        """What `describe()` records as the decode attention (the predictor keeps rows whose record
        says each KV head is read once: `analysis.predictor.KV_READ_ONCE_MARK`)."""
        copied = kv_cache_copied_per_step(getattr(self.model.config, "model_type", None))
        if self._attention and copied:
            return kv_copied_attention_record(f"{self._attention} ({self.backend.decode_attention})", copied)
        if self._attention:
            return f"{self._attention} ({self.backend.decode_attention}; each KV head read once per step)"
        if self._shared_kv_model_sdpa:
            return ("the model's own sdpa with shared KV heads: one-token steps grouped (each KV head read once per "
                    "step), prompts with K / V repeated to the query heads")
        return getattr(self.model.config, "_attn_implementation", None)

    @contextmanager
    def _own_attention(self):
        """Use the GQA decode attention while this loop runs; the shared model keeps its own otherwise.
        (Models that call SDPA themselves: `torch.nn.functional.scaled_dot_product_attention` is
        `_shared_kv_sdpa` for that time.)"""
        cfg = self.model.config
        saved = cfg._attn_implementation
        functional = self.backend._torch.nn.functional
        own_sdpa = functional.scaled_dot_product_attention
        if self._attention is not None:
            cfg._attn_implementation = self._attention
        if self._shared_kv_model_sdpa:
            functional.scaled_dot_product_attention = _shared_kv_sdpa(own_sdpa)
        try:
            yield
        finally:
            cfg._attn_implementation = saved
            functional.scaled_dot_product_attention = own_sdpa

    @contextmanager
    def _compiled_layers(self):
        """Regional compilation: the decoder layers call the one compiled layer body while this loop
        runs (prefill too unless `compile_prefill` is off); the shared model is plain again afterwards."""
        if not self._layer_fns:
            yield
            return
        torch = self.backend._torch
        _install_layer_calls(self._layer_fns)
        try:
            # layer_idx and other int attributes become symbolic instead of per-layer constants
            with torch._dynamo.config.patch(allow_unspec_int_on_nn_module=True):
                yield
        finally:
            for layer, _ in self._layer_fns:
                layer._compiled_call_impl = None

    def _prefill_logits(self, input_ids, position_ids, attention_mask=None):
        out = self.model(input_ids=input_ids, position_ids=position_ids, past_key_values=self.cache, use_cache=True,
                         attention_mask=attention_mask, logits_to_keep=1)
        return out.logits[:, -1, :]

    def _sliding_window_tokens(self) -> int | None:
        """Smallest window of the cache's sliding-window layers (None when there are none)."""
        windows = [layer.max_cache_len for layer in self.cache.layers if hasattr(layer, "cumulative_length_int")]
        return min(windows) if windows else None

    def _pin_sliding_counters(self) -> None:
        """Hold the sliding layers' Python token counters at one value before each traced call.

        transformers' static sliding-window layer keeps a Python int that grows every step; a
        compiled step specialises on it and would recompile (during CUDA-graph capture: fail).
        Once the window is full (ctx >= window, checked in `generate`) the layer only asks whether
        it is full, so any value >= the window gives the same computation; the masks that would
        use the counter are built by `_decode_masks` from device tensors instead.
        """
        for layer in self.cache.layers:
            if hasattr(layer, "cumulative_length_int"):
                layer.cumulative_length_int = layer.max_cache_len

    def _full_attention_mask(self):
        """Additive mask of a full-attention layer for one decode step: cache slots from the row's
        padding to its position are visible. Built from device tensors, so it is graph-safe."""
        torch = self.backend._torch
        slots = self.cache.layers[self._full_layer_index].max_cache_len
        slot = torch.arange(slots, device=self.positions.device)[None, None, None, :]
        visible = (slot <= self.positions[:, None, :, None]) & (slot >= self.pad_tokens[:, None, :, None])
        dtype = self.model.dtype
        return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible, torch.finfo(dtype).min)

    def _decode_masks(self):
        """Per-layer-type masks for one decode step of a sliding-window model: a full sliding window
        holds exactly the last `window` tokens, the current one included, so its layers see every
        slot (None)."""
        return {"full_attention": self._full_attention_mask(), "sliding_attention": None}

    def _decode_step(self):
        masks = None
        if self._sliding:
            masks = self._decode_masks()
        elif self._explicit_masks:
            masks = self._full_attention_mask()
        # Ragged batches (graphed mode, explicit masks) only: a compiled whole step keeps its plain positions.
        positions = self.positions - self.pad_tokens if self._explicit_masks else self.positions
        logits = self.model(
            input_ids=self.cur_tokens, position_ids=positions, past_key_values=self.cache, use_cache=True,
            attention_mask=masks,
        ).logits[:, -1, :]
        nxt = sample_next_tokens(logits, self.backend.sampling)
        self.cur_tokens.copy_(nxt[:, None])
        self.positions.add_(1)
        # Clamped so a replay past the buffer's end overwrites the last column instead of faulting.
        slot = self.step_index.clamp(max=self.out_tokens.shape[1] - 1)
        self.out_tokens.index_copy_(1, slot, nxt[:, None])
        self.step_index.add_(1)

    def _prefill(self, input_ids, attention_mask=None) -> None:
        """Prefill the cache; `attention_mask` (0 = left padding) only for ragged batches, whose rows'
        positions start after their padding as in transformers' generate."""
        torch = self.backend._torch
        batch, ctx = input_ids.shape
        self.cache.reset()
        if attention_mask is None:
            position_ids = torch.arange(ctx, device=input_ids.device).unsqueeze(0).expand(batch, -1)
            self.pad_tokens.zero_()
        else:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            self.pad_tokens.copy_((attention_mask.shape[1] - attention_mask.sum(-1, keepdim=True)).to(torch.long))
        self._use_decode_experts(False)
        # The cache allocates its tensors on the first update: do that one uncompiled.
        fn = self._prefill_fn if self._initialized else self._prefill_logits
        eager_prefill = bool(self._layer_fns) and not (self._initialized and self._prefill_layer_fns)
        if self._layer_fns and not eager_prefill:
            _install_layer_calls(self._prefill_layer_fns)
        try:
            with torch.compiler.set_stance("force_eager") if eager_prefill else contextlib.nullcontext():
                logits = fn(input_ids, position_ids, attention_mask)
        finally:
            _install_layer_calls(self._layer_fns)  # back to the decode body (no-op outside regional compile)
        self._initialized = True
        nxt = sample_next_tokens(logits, self.backend.sampling)
        self.cur_tokens.copy_(nxt[:, None])
        self.positions.fill_(ctx)
        self.out_tokens[:, 0] = nxt
        self.step_index.fill_(1)
        self._use_decode_experts(True)

    def _capture(self) -> None:
        """Warm up (compiling, where the step is compiled) by running the step a few times on a side
        stream, then capture one step."""
        torch = self.backend._torch
        if not self.backend.use_cuda_graph:
            return
        side = torch.cuda.Stream(device=self.backend.device)
        side.wait_stream(torch.cuda.current_stream(self.backend.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._pin_sliding_counters()
                self._decode_fn()
        torch.cuda.current_stream(self.backend.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self._pin_sliding_counters()
        with torch.cuda.graph(graph):
            self._decode_fn()
        self._graph = graph

    def step(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        else:
            self._pin_sliding_counters()
            self._decode_fn()

    def generate(self, input_ids, gen_tokens: int, on_token: TokenHook | None, attention_mask=None) -> GenerationOutput:
        """Prefill + decode. `attention_mask` matters only when it hides left padding (a ragged
        batch): `graphed` mode only, as a compiled whole step builds transformers' own masks."""
        torch = self.backend._torch
        if attention_mask is not None and bool((attention_mask == 0).any()):
            if self.backend.mode != "graphed" or self._sliding:
                raise BadInput("ragged (left-padded) batches run in the lean loop in graphed mode only, and not "
                               "for sliding-window models; use eager or static")
        else:
            attention_mask = None
        if input_ids.shape[0] != self.batch_size or input_ids.shape[1] + gen_tokens > self.max_cache_tokens:
            raise BadInput(
                f"compiled mode was prepared for batch {self.batch_size} and {self.max_cache_tokens} cached tokens, "
                f"got batch {input_ids.shape[0]} with {input_ids.shape[1]}+{gen_tokens} tokens"
            )
        window = self._sliding_window_tokens()
        if window is not None and input_ids.shape[1] < window:
            raise RuntimeError(
                f"compiled mode needs ctx >= the sliding window ({window} tokens) so the window is full "
                f"before the captured decode step; got ctx {input_ids.shape[1]} (use eager or static)"
            )
        self.ensure_gen_capacity(gen_tokens)
        with torch.inference_mode(), self._own_attention(), self._compiled_layers():
            if self.backend.use_cuda_graph and self._graph is None:
                # Capture needs a prefilled cache; the capture's own steps are discarded by the next prefill.
                self._prefill(input_ids, attention_mask)
                self._capture()
            sync = self.backend.sync
            times: list[int] = []
            sync()
            start = clock_ns()
            self._prefill(input_ids, attention_mask)
            sync()
            t = clock_ns()
            times.append(t)
            if on_token is not None:
                on_token(0, t)
            for i in range(1, gen_tokens):
                self.step()
                sync()
                t = clock_ns()
                times.append(t)
                if on_token is not None:
                    on_token(i, t)
            end = times[-1]
            self._use_decode_experts(False)  # the shared model keeps its own experts kernel for other modes
        return GenerationOutput(
            output_ids=self.out_tokens[:, :gen_tokens].clone(),
            start_ns=start,
            token_times_ns=times,
            end_ns=end,
            held=self.cache,
        )

    def bare_decode_loop_s(self, input_ids, gen_tokens: int) -> tuple[float, float]:
        """(prefill_s, decode_s) of the same prefill and decode steps with no per-token sync or hook,
        the reference against which the harness's overhead is measured."""
        torch = self.backend._torch
        with torch.inference_mode(), self._own_attention(), self._compiled_layers():
            self.backend.sync()
            start = clock_ns()
            self._prefill(input_ids)
            self.backend.sync()
            first = clock_ns()
            for _ in range(1, gen_tokens):
                self.step()
            self.backend.sync()
            end = clock_ns()
            self._use_decode_experts(False)
        return (first - start) / 1e9, (end - first) / 1e9
