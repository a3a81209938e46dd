"""Turn a `ModelSource` into a torch module on the target device, in the target dtype.

torch and transformers are imported inside the functions, so importing this module is cheap.
Random-weight models are created directly on the device in the requested dtype (never on the CPU
first): a 32B model then builds in seconds on an H100 instead of minutes of CPU init and copy.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wattlens.core.errors import BadInput

from .catalog import ModelSource

if TYPE_CHECKING:  # pragma: no cover
    import torch

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


# Architectures whose own attention code, in transformers, reads or copies the KV cache more than once per
# decode step whatever attention function it calls, so the lean loop's decode attentions cannot make each
# KV head read once (the predictor's features charge one read: `analysis.predictor.kv_heads_read_once`).
KV_CACHE_COPIED_PER_STEP: dict[str, str] = {
    "diffllama": ("DiffLlama's attention splits V into two halves, repeats each over the whole cache (a copy "
                  "of V per step and layer) and runs the attention twice over the same K"),
}


def kv_cache_copied_per_step(model_type: str | None) -> str | None:
    """Why this architecture's attention reads its KV cache more than once per decode step (None: it doesn't)."""
    return KV_CACHE_COPIED_PER_STEP.get(model_type or "")


def kv_copied_attention_record(attention: str, reason: str) -> str:
    """The decode-attention record of such an architecture: the attention it calls and `reason`, without
    the read-once mark (the backend writes it; the dataset builder writes it for trials recorded before)."""
    return f"{attention}, called by the model's own attention: {reason}"


def torch_dtype(dtype: str) -> "torch.dtype":
    """'bf16' / 'fp16' / 'fp32' -> torch dtype; anything else is BadInput."""
    if dtype not in DTYPES:
        raise BadInput(f"dtype {dtype!r} is not supported (choose from {', '.join(DTYPES)})")
    import torch

    return getattr(torch, DTYPES[dtype])


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a CUDA device is visible, else 'cpu'; other names pass through checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise BadInput(f"device {device!r} is not a torch device name") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInput(f"device {device!r} requested but CUDA is not available")
    return device


def describe_weights(source: ModelSource) -> str:
    """The one line every report carries about where the weights came from."""
    return f"weights: {source.weights}"


def transformers_config(config: Mapping[str, Any]):
    """transformers' config object for an HF config dict (imports transformers). The dict is copied
    deeply first: transformers edits nested dicts in place (Llama-3.1's `rope_scaling` gains
    `rope_theta`), which would change the caller's config, and with it every hash of it."""
    from transformers import AutoConfig

    c = copy.deepcopy(dict(config))
    return AutoConfig.for_model(c.pop("model_type", None), **c)


def hf_config(source: ModelSource):
    """The transformers config object for `source.config` (imports transformers)."""
    try:
        return transformers_config(source.config)
    except Exception as exc:  # noqa: BLE001 - HF raises ValueError or its own validation errors
        raise BadInput(f"model {source.name!r}: transformers rejects its config: {exc}") from None


def _model_class_supports(config, attn_implementation: str) -> bool:
    """Whether the causal-LM class for `config` declares support for `attn_implementation`."""
    from transformers import AutoModelForCausalLM

    try:
        cls = AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        return True
    flag = {"sdpa": "_supports_sdpa", "flex_attention": "_supports_flex_attn"}.get(attn_implementation)
    return True if flag is None else bool(getattr(cls, flag, True))


ROUTER_MODULE_NAMES = ("gate", "router")  # what transformers' MoE blocks call their routers


def spread_zero_routers(model, std: float) -> list[str]:
    """Give an MoE router that random initialisation left at zero normal(0, std) weights; the names of
    those re-initialised.

    Why: a router of zeros scores every expert alike, so top-k sends every token to the same first k
    experts, and a random-weight decode step then reads k experts per layer where real routing reads
    most of them at batch >= 8. transformers 5.17 leaves ERNIE-4.5-MoE's router so (its `_init_weights`
    has no case for it; 5.23 draws it normal(0, initializer_range)), and the campaign's first ERNIE-4.5-
    21B-A3B trials ran that way: 6 of 64 experts per layer-step where uniform routing touches 35 at
    batch 8 (results/predictor/experiments/moe_routing.md). Only a 2-D weight of a module named as a
    router is touched, and only when every value is zero: what a working initialisation gives is kept.
    """
    import torch

    fixed = []
    with torch.no_grad():
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if (name.split(".")[-1] in ROUTER_MODULE_NAMES and isinstance(weight, torch.nn.Parameter)
                    and weight.dim() == 2 and not bool(weight.any())):
                weight.normal_(0.0, std)
                fixed.append(f"{name}.weight")
    return fixed


def build_model(source: ModelSource, dtype: str, device: str, attn_implementation: str = "sdpa"):
    """Build the model of `source` in `dtype` ('bf16', 'fp16', 'fp32') on `device`, in eval mode.

    Random weights: the module is constructed under `torch.device(device)` with the dtype passed to
    `from_config`, so parameters and non-persistent buffers (RoPE inv_freq) are created and
    initialised on the device by HF's own code (a router left at zero is drawn at random:
    `spread_zero_routers`; the names are in `model.wattlens_reinitialised`). Pretrained:
    `from_pretrained(path, dtype=..., device_map=device)` (plain load + `.to(device)` for the CPU
    or when `accelerate` is missing). If the architecture does not support SDPA (gpt_oss in transformers 5.x)
    and 'sdpa' was asked for, it falls back to 'eager' with a warning; read the effective choice
    from `model.config._attn_implementation`.
    """
    tdtype = torch_dtype(dtype)
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise BadInput(
            f"attn_implementation {attn_implementation!r} is not one of {', '.join(ATTN_IMPLEMENTATIONS)}"
        )
    device = resolve_device(device)
    import torch
    from transformers import AutoModelForCausalLM

    config = hf_config(source)
    if attn_implementation == "sdpa" and not _model_class_supports(config, "sdpa"):
        message = f"{source.name}: {config.model_type} has no SDPA attention; using 'eager'"
        warnings.warn(message, stacklevel=2)
        attn_implementation = "eager"

    if source.weights == "pretrained":
        if not source.path:
            raise BadInput(f"model {source.name!r} is marked pretrained but has no local folder")
        # device_map loads straight onto the GPU but needs `accelerate`; without it (or for the
        # CPU) load normally and move, which is slower but gives the same module.
        import importlib.util

        direct = device != "cpu" and importlib.util.find_spec("accelerate") is not None
        model = AutoModelForCausalLM.from_pretrained(
            source.path,
            config=config,
            dtype=tdtype,
            attn_implementation=attn_implementation,
            **({"device_map": device} if direct else {}),
        )
        if not direct:
            model = model.to(device)
    elif source.weights == "random":
        # from_config passes `dtype` to HF's own temporary default-dtype context (restored on exit),
        # and torch.device(device) makes every tensor, buffers included, start life on the device.
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(
                config, dtype=tdtype, attn_implementation=attn_implementation
            )
        model.wattlens_reinitialised = spread_zero_routers(model, getattr(config, "initializer_range", 0.02))
    else:
        raise BadInput(f"model {source.name!r}: weights {source.weights!r} is not 'random' or 'pretrained'")

    model.eval()
    model.requires_grad_(False)
    return model
