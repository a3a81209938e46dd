"""`ModelFacts` for an architecture `arithmetic` has no formulas for, read from transformers' module.

Why: `wattlens predict` and the runner should take any decoder-only HF config, not only the
architectures whose parameter counts `arithmetic` writes out by hand. Here the model is built on
PyTorch's meta device (shapes only, no memory, no weights) from its configuration class, and the
counts are read off its parameters:

* the token embedding and the LM head are `get_input_embeddings()` / `get_output_embeddings()`
  (tied when they share a weight); any other embedding table outside the layers is a position table;
* the layers are the `nn.ModuleList` of `num_hidden_layers` blocks; inside them every parameter of 2
  or more dimensions multiplies (projections, routers; norms, biases and sinks are 1-D), but for one
  whose name ends in `bias` (ERNIE-4.5-MoE's router keeps a [1, experts] score-correction bias);
* routed experts are parameters under a module called `experts`: the fused 3-D tensors of
  transformers 5 (`[experts, in, out]`; their 2-D per-expert biases do not multiply) or a list of
  per-expert modules; one token uses `num_experts_per_tok` of them;
* 2-D parameters outside the layers other than the two tables (OPT's projections) multiply;
* the LM head's own parameters are those other than a table it shares with the input (a bias stays).

Tests check these counts against `arithmetic`'s formulas for every catalog architecture. Needs torch
and transformers (`pip install 'wattlens[hf]'`).
"""

from __future__ import annotations

import re
from typing import Any

from wattlens.core.errors import BadInput
from wattlens.models.arithmetic import ModelFacts
from wattlens.models.build import transformers_config

_EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
_EXPERTS_PER_TOKEN_KEYS = ("num_experts_per_tok", "experts_per_token", "moe_topk", "top_k")
_LISTED_EXPERT = re.compile(r"(^|\.)experts\.\d+\.")


def _first_int(conf, keys: tuple[str, ...]) -> int:
    for key in keys:
        value = getattr(conf, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def _required_int(conf, key: str) -> int:
    value = getattr(conf, key, None)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadInput(f"{type(conf).__name__} has no positive integer {key} (got {value!r}): wattlens reads "
                       "decoder-only text models")
    return value


def _under_experts(name: str) -> bool:
    return "experts" in name.split(".")[:-1]


def _multiplies(name: str, p) -> bool:
    """Whether a parameter outside the routed experts is a matmul weight (a bias is added, whatever its
    rank)."""
    return p.dim() >= 2 and not name.endswith("bias")


def _decoder_layers(model, num_layers: int):
    import torch

    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers:
            return module
    raise BadInput(f"found no list of {num_layers} decoder layers in {type(model).__name__}")


def _sliding(conf, num_layers: int) -> tuple[int, int | None]:
    """(layers that slide, window), from `layer_types` when the config has it."""
    window = getattr(conf, "sliding_window", None)
    types = getattr(conf, "layer_types", None)
    if isinstance(types, (list, tuple)) and len(types) == num_layers:
        n = sum(1 for t in types if t == "sliding_attention")
    elif window and getattr(conf, "use_sliding_window", True) is not False:
        n = num_layers
    else:
        n = 0
    return (n, window) if n and window else (0, None)


def build_on_meta(config: dict[str, Any]):
    """(HF config object, causal-LM model on the meta device) for a config dict."""
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        raise BadInput(f"model_type {config.get('model_type')!r} has no formulas in wattlens; reading its shapes "
                       f"from transformers needs torch and transformers (pip install 'wattlens[hf]'): {e}") from e
    c = dict(config)
    model_type = c.get("model_type")
    c.pop("quantization_config", None)
    try:
        conf = transformers_config(c)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(conf)
    except Exception as e:  # noqa: BLE001 - any failure to build means: not a causal LM transformers knows
        raise BadInput(f"transformers cannot build a causal LM for model_type {model_type!r}: "
                       f"{type(e).__name__}: {e}"[:300]) from e
    return conf, model


def facts_from_module(config: dict[str, Any]) -> ModelFacts:
    """`ModelFacts` of a config's architecture, counted on transformers' module (see the module doc)."""
    conf, model = build_on_meta(config)
    H, L, V, nh = (_required_int(conf, k) for k in ("hidden_size", "num_hidden_layers", "vocab_size",
                                                     "num_attention_heads"))
    nkv = getattr(conf, "num_key_value_heads", None) or nh
    if getattr(conf, "multi_query", False):
        nkv = 1
    hd = getattr(conf, "head_dim", None) or H // nh

    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    if head is None:
        raise BadInput(f"{type(model).__name__} has no LM head")
    tied = head.weight is embedding
    head_params = {id(p) for p in head.parameters()}
    layers = _decoder_layers(model, L)
    layer_params = {id(p) for p in layers.parameters()}

    num_experts = _first_int(conf, _EXPERT_COUNT_KEYS)
    experts_per_token = _first_int(conf, _EXPERTS_PER_TOKEN_KEYS) if num_experts else 0
    if experts_per_token > num_experts:
        raise BadInput(f"experts per token {experts_per_token} exceeds num experts {num_experts}")

    position, extra_matmul = 0, 0
    for name, p in model.named_parameters():  # outside the layers
        if id(p) in layer_params or id(p) in head_params or p is embedding:
            continue
        if name.endswith("weight") and p.dim() == 2 and "embed" in name:
            position += p.numel()  # a learned position table (OPT)
        elif _multiplies(name, p):
            extra_matmul += p.numel()

    layer_matmul, expert_all, expert_matmul_all, n_moe = 0, 0, 0, 0
    for layer in layers:
        has_experts = False
        for name, p in layer.named_parameters():
            if _under_experts(name):
                has_experts = True
                expert_all += p.numel()
                if p.dim() >= 3 or (p.dim() == 2 and _LISTED_EXPERT.search(name)):
                    expert_matmul_all += p.numel()
            elif _multiplies(name, p):
                layer_matmul += p.numel()
        n_moe += has_experts
    if n_moe and not num_experts:
        raise BadInput(f"{type(model).__name__} has experts but its config names no expert count")
    per_expert = expert_all // (n_moe * num_experts) if n_moe else 0
    per_expert_matmul = expert_matmul_all // (n_moe * num_experts) if n_moe else 0

    params_total = sum(p.numel() for p in model.parameters())
    unused_experts = n_moe * (num_experts - experts_per_token) * per_expert
    lm_head_matmul = head.weight.numel()
    n_sliding, window = _sliding(conf, L)
    return ModelFacts(
        model_type=str(config.get("model_type")),
        num_layers=L, hidden_size=H, num_heads=nh, num_kv_heads=int(nkv), head_dim=int(hd), vocab_size=V,
        num_experts=num_experts if n_moe else 0, experts_per_token=experts_per_token if n_moe else 0,
        params_total=params_total, params_active=params_total - unused_experts,
        params_embedding=embedding.numel(),
        params_lm_head=sum(p.numel() for p in head.parameters() if p is not embedding),
        sliding_window=window, n_sliding_layers=n_sliding, n_moe_layers=n_moe, params_per_expert=per_expert,
        params_position_embedding=position, lm_head_matmul_params=lm_head_matmul,
        matmul_params_active=extra_matmul + lm_head_matmul + layer_matmul + n_moe * experts_per_token * per_expert_matmul,
        tied_embeddings=tied, embedding_row_elements=int(embedding.shape[1]),
    )
