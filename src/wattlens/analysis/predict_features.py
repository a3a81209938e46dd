"""Features for the energy predictor: the variables of From Prompts to Power's Table V plus physics.

Everything here is computed from an HF config dict (through `wattlens.models.arithmetic`), the GPU
spec table (`wattlens.hw.specs`) and the request shape; no GPU, no torch, no scikit-learn.

Table V groups (names carry units; counts are element counts, sizes are bytes):

* inference: input_tokens, output_tokens, batch_size, mode_is_eager (the study's "hybrid or eager"),
  kv_cache_bytes_per_prompt (at input + output tokens), dtype_bytes (precision);
* model: num_layers, hidden_size, intermediate_size, num_kv_heads, num_heads, is_moe,
  num_experts, experts_per_token, params_per_layer, params_embedding, params_other_linear,
  params_attention, params_ffn, vram_required_bytes, quantized, activation_* (one-hot);
* infrastructure: gpu_memory_bytes, gpu_bandwidth_bytes_per_s, gpu_count, gpu_tdp_w,
  gpu_flops_per_s (dense, for the precision), gpu_cuda_cores, gpu_free_memory_bytes.

Physics (per prompt unless the name says batch): prefill_flops_per_prompt, decode_flops_per_prompt,
decode_bytes_per_prompt (HBM bytes read by the decode steps, shared batch reads divided by the
batch), decode_kv_bytes_per_prompt (its KV-cache part) and decode_expert_bytes_per_prompt (its
routed-expert weights part; 0 for dense models), prefill_roofline_s and
decode_roofline_s (whole batch: FLOP-bound prefill, max of the bandwidth and FLOP bounds summed
over decode steps), decode_steps, layer_steps (decode steps x
layers, a proxy for launch-bound time), decode_kernels (decode steps x kernels per step: the
operators `wattlens.models.decode_ops` counts, plus the reduce kernels cuBLAS adds to split GEMMs,
from the per-GPU GEMM table `wattlens.hw.gemm_table`), decode_linears (decode steps x Linear calls
per step) and decode_gemm_s (whole batch: those Linears' time per step in the GEMM table, x decode
steps; shapes from `wattlens.models.decode_gemms`), kv_bytes_held_per_prompt (cache at the last token), and the
prefill's operator traffic: prefill_operator_bytes_per_prompt (input tokens x operators per step x
hidden size x dtype bytes: each operator of the prefill reads or writes about one hidden-wide row
per token; norms, rotary, activations and MoE dispatch are bandwidth-bound and took 20-70% of an
H100 prefill in results/predictor/experiments/step_profile-h100-prefill.json) and
prefill_operator_s (whole batch, those bytes at HBM bandwidth).

Conventions: a request of `output_tokens` runs one prefill (which yields the first token) and
`output_tokens - 1` decode steps at contexts input+1 ... input+output-1. A decode step reads the
context so far in eager mode (dynamic cache) and every slot of the static cache in the other modes
(`Request.cache_tokens`). With `gpu_count` > 1
(tensor parallel) FLOP/s and bandwidth add up; communication is not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wattlens.core.errors import BadInput
from wattlens.hw.gemm_table import DecodeGemms, decode_gemms, decode_gemms_without_shapes
from wattlens.hw.specs import GPUSpec
from wattlens.models.arithmetic import ModelFacts, model_facts
from wattlens.models.decode_gemms import decode_linear_shapes
from wattlens.models.decode_ops import DecodeOps, decode_ops

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
ACTIVATIONS = ("silu", "gelu", "relu")  # one-hot; anything else (or missing) sets none of them

INFERENCE_FEATURES = ("input_tokens", "output_tokens", "batch_size", "mode_is_eager",
                      "kv_cache_bytes_per_prompt", "dtype_bytes")
MODEL_FEATURES = ("num_layers", "hidden_size", "intermediate_size", "num_kv_heads", "num_heads", "is_moe",
                  "num_experts", "experts_per_token", "params_per_layer", "params_embedding",
                  "params_other_linear", "params_attention", "params_ffn", "vram_required_bytes",
                  "quantized") + tuple(f"activation_{a}" for a in ACTIVATIONS)
INFRA_FEATURES = ("gpu_memory_bytes", "gpu_bandwidth_bytes_per_s", "gpu_count", "gpu_tdp_w",
                  "gpu_flops_per_s", "gpu_cuda_cores", "gpu_free_memory_bytes")
PHYSICS_FEATURES = ("prefill_flops_per_prompt", "decode_flops_per_prompt", "decode_bytes_per_prompt",
                    "prefill_roofline_s", "decode_roofline_s", "decode_steps", "layer_steps",
                    "decode_kernels", "kv_bytes_held_per_prompt", "prefill_operator_bytes_per_prompt",
                    "prefill_operator_s", "decode_kv_bytes_per_prompt", "decode_expert_bytes_per_prompt",
                    "decode_linears", "decode_gemm_s")
TABLE_V_FEATURES = INFERENCE_FEATURES + MODEL_FEATURES + INFRA_FEATURES
ALL_FEATURES = TABLE_V_FEATURES + PHYSICS_FEATURES


@dataclass(frozen=True)
class Request:
    """The shape of one measured or predicted request (all prompts in the batch alike)."""

    input_tokens: int
    output_tokens: int
    batch_size: int = 1
    dtype: str = "bf16"
    mode: str = "static"  # eager | static | compiled | graphed (all but eager count as "hybrid")
    gpu_count: int = 1
    # Slots of a static KV cache (every mode but eager allocates one). Its decode steps attend over
    # every slot, masked, so they read the whole allocation whatever the position. None: input +
    # output, what wattlens allocates for one request; a generation measured at many output
    # lengths keeps the capacity of its longest one.
    cache_tokens: int | None = None

    def __post_init__(self):
        for name in ("input_tokens", "output_tokens", "batch_size", "gpu_count"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise BadInput(f"{name}={v!r} must be an integer >= 1")
        if self.cache_tokens is not None:
            if not isinstance(self.cache_tokens, int) or isinstance(self.cache_tokens, bool):
                raise BadInput(f"cache_tokens={self.cache_tokens!r} must be an integer")
            if self.cache_tokens < self.input_tokens + self.output_tokens - 1:
                raise BadInput(f"cache_tokens={self.cache_tokens} cannot hold {self.input_tokens} input + "
                               f"{self.output_tokens} output tokens")
        if self.dtype not in DTYPE_BYTES:
            raise BadInput(f"dtype {self.dtype!r} not supported by the predictor (use {', '.join(DTYPE_BYTES)})")

    @property
    def cache_slots(self) -> int:
        """Slots the static cache holds: `cache_tokens`, or input + output when it is not given."""
        return self.cache_tokens if self.cache_tokens is not None else self.input_tokens + self.output_tokens


def _intermediate_size(config: Mapping[str, Any], facts: ModelFacts) -> int:
    """FFN width one token's MLP uses: the expert width for MoE models, OPT's ffn_dim."""
    if facts.model_type == "qwen3_moe":
        return int(config.get("moe_intermediate_size", 768))
    if facts.model_type == "opt":
        return int(config.get("ffn_dim", 3072))
    if facts.model_type == "falcon":
        return int(config.get("ffn_hidden_size") or 4 * facts.hidden_size)
    return int(config.get("intermediate_size", 0) or 0)


def _activation(config: Mapping[str, Any]) -> str:
    act = str(config.get("hidden_act") or config.get("hidden_activation") or config.get("activation_function")
              or config.get("activation") or "")  # the last: Falcon's key
    act = act.lower()
    if "silu" in act or "swish" in act:
        return "silu"
    if "gelu" in act:
        return "gelu"
    if "relu" in act:
        return "relu"
    return act


def attention_params(facts: ModelFacts) -> int:
    """Q, K, V and O projection weights over all layers (matmul weights; biases not counted)."""
    q_out = facts.num_heads * facts.head_dim
    kv_out = facts.num_kv_heads * facts.head_dim
    return facts.num_layers * (2 * facts.hidden_size * q_out + 2 * facts.hidden_size * kv_out)


def _sum_range(a: int, b: int) -> int:
    """Sum of the integers a..b inclusive (0 when b < a)."""
    return (a + b) * (b - a + 1) // 2 if b >= a else 0


def _sum_min(a: int, b: int, w: int) -> int:
    """Sum over c = a..b of min(c, w)."""
    if b < a:
        return 0
    low_end = min(b, w)
    s = _sum_range(a, low_end) if low_end >= a else 0
    high_start = max(a, w + 1)
    if b >= high_start:
        s += (b - high_start + 1) * w
    return s


def kv_token_layers_sum(facts: ModelFacts, first_ctx: int, last_ctx: int) -> int:
    """Sum of `facts.kv_token_layers(c)` for c = first_ctx..last_ctx, in closed form."""
    full = _sum_range(first_ctx, last_ctx)
    sliding = _sum_min(first_ctx, last_ctx, facts.sliding_window) if facts.sliding_window else full
    return facts.n_full_layers * full + facts.n_sliding_layers * sliding


def _flops_per_s(gpu: GPUSpec, dtype: str) -> float:
    if dtype == "fp32":
        return gpu.fp32_flops_per_s
    if gpu.fp16_bf16_dense_flops_per_s is None:
        raise BadInput(f"{gpu.name} has no 16-bit tensor figure in the GPU table; cannot predict {dtype}")
    return gpu.fp16_bf16_dense_flops_per_s


def step_gemms(config: Mapping[str, Any], facts: ModelFacts, req: Request, gpu: GPUSpec) -> DecodeGemms:
    """The Linears of one decode step of this request, looked up in the GEMM table. Without torch the
    shapes cannot be read: 7 Linears per layer (4 attention, 3 MLP) + the LM head, moving the weights
    a token multiplies by other than routed experts', stand in."""
    shapes = decode_linear_shapes(config)
    nbytes = DTYPE_BYTES[req.dtype]
    if isinstance(shapes, str):
        routed = facts.experts_per_token * facts.params_per_expert * facts.n_moe_layers
        return decode_gemms_without_shapes(7 * facts.num_layers + 1, (facts.matmul_params_active - routed) * nbytes,
                                           gpu.name, gpu.memory_bandwidth_bytes_per_s, req.batch_size, shapes)
    return decode_gemms(shapes, gpu.name, gpu.memory_bandwidth_bytes_per_s, req.batch_size, nbytes)


def _count_on_the_cpu(config: Mapping[str, Any]) -> DecodeOps | str:
    from wattlens.backends.step_ops import counted_or_reason  # torch only when an architecture is counted

    return counted_or_reason(config)


def step_ops(config: Mapping[str, Any]) -> DecodeOps:
    """Operators per decode step (`models.decode_ops`): the shipped table's row, else counted on the
    CPU by `backends.step_ops` (torch and transformers installed), else the table's median."""
    return decode_ops(config, count=_count_on_the_cpu)


def physics_features(facts: ModelFacts, req: Request, gpu: GPUSpec, ops_per_step: int,
                     gemms: DecodeGemms) -> dict[str, float]:
    """FLOPs, bytes and roofline times of one request (see the module docstring)."""
    b, n_in, n_out = req.batch_size, req.input_tokens, req.output_tokens
    nbytes = DTYPE_BYTES[req.dtype]
    flops_s = _flops_per_s(gpu, req.dtype) * req.gpu_count
    bw = gpu.memory_bandwidth_bytes_per_s * req.gpu_count
    prefill_flops_batch = facts.prefill_flops(n_in, b)
    steps = n_out - 1
    first, last = n_in + 1, n_in + steps
    if req.mode == "eager":  # a dynamic cache: each step attends to the context so far
        kv_sum = kv_token_layers_sum(facts, first, last)  # token-layer slots attended, summed over steps
    else:  # a static cache: each step attends to every slot (empty ones masked)
        kv_sum = steps * facts.kv_token_layers(req.cache_slots)
    # Decode FLOPs: each step, each sequence: 2 x matmul weights + 4 x heads x head_dim x attended slots.
    decode_flops_batch = b * (steps * 2 * facts.matmul_params_active + 4 * facts.num_heads * facts.head_dim * kv_sum)
    # Decode bytes: weights part is constant per step; KV part is per-slot bytes x slots.
    weights_bytes_step = facts.decode_bytes_per_step(0, b, nbytes)  # context 0: weights only
    kv_slot_bytes = 2 * facts.num_kv_heads * facts.head_dim * nbytes
    decode_bytes_batch = steps * weights_bytes_step + b * kv_slot_bytes * kv_sum
    decode_roofline = max(decode_bytes_batch / bw, decode_flops_batch / flops_s) if steps else 0.0
    prefill_operator_bytes = n_in * ops_per_step * facts.hidden_size * nbytes  # per prompt
    return {
        "prefill_flops_per_prompt": prefill_flops_batch / b,
        "decode_flops_per_prompt": decode_flops_batch / b,
        "decode_bytes_per_prompt": decode_bytes_batch / b,
        "prefill_roofline_s": prefill_flops_batch / flops_s,
        "decode_roofline_s": decode_roofline,
        "decode_steps": float(steps),
        "layer_steps": float(steps * facts.num_layers),
        "decode_kernels": float(steps * (ops_per_step + gemms.extra_kernels)),
        "kv_bytes_held_per_prompt": float(facts.kv_cache_bytes(n_in + n_out - 1, nbytes)),
        "prefill_operator_bytes_per_prompt": float(prefill_operator_bytes),
        "prefill_operator_s": b * prefill_operator_bytes / bw,
        "decode_kv_bytes_per_prompt": float(kv_slot_bytes * kv_sum),
        "decode_expert_bytes_per_prompt": steps * facts.decode_expert_bytes_per_step(b, nbytes) / b,
        "decode_linears": float(steps * gemms.linears),
        # tensor parallel: each GPU multiplies its slice of every weight
        "decode_gemm_s": steps * gemms.seconds / req.gpu_count,
    }


def request_features(config: Mapping[str, Any], req: Request, gpu: GPUSpec,
                     facts: ModelFacts | None = None) -> dict[str, float]:
    """All features (`ALL_FEATURES`, in that order) of one request on `req.gpu_count` x `gpu`."""
    facts = facts or model_facts(dict(config))
    nbytes = DTYPE_BYTES[req.dtype]
    attn = attention_params(facts)
    body = facts.params_total - facts.params_embedding - facts.params_position_embedding - facts.params_lm_head
    kv_prompt = facts.kv_cache_bytes(req.input_tokens + req.output_tokens, nbytes)
    vram = facts.weights_bytes(nbytes) + req.batch_size * kv_prompt
    act = _activation(config)
    total_memory = gpu.memory_bytes * req.gpu_count
    out: dict[str, float] = {
        "input_tokens": req.input_tokens,
        "output_tokens": req.output_tokens,
        "batch_size": req.batch_size,
        "mode_is_eager": 1.0 if req.mode == "eager" else 0.0,
        "kv_cache_bytes_per_prompt": kv_prompt,
        "dtype_bytes": nbytes,
        "num_layers": facts.num_layers,
        "hidden_size": facts.hidden_size,
        "intermediate_size": _intermediate_size(config, facts),
        "num_kv_heads": facts.num_kv_heads,
        "num_heads": facts.num_heads,
        "is_moe": 1.0 if facts.num_experts else 0.0,
        "num_experts": facts.num_experts,
        "experts_per_token": facts.experts_per_token,
        "params_per_layer": body / facts.num_layers,
        "params_embedding": facts.params_embedding + facts.params_position_embedding,
        "params_other_linear": facts.lm_head_matmul_params,
        "params_attention": attn,
        # Everything in the layers that is not an attention projection: MLP/experts/router,
        # plus norms and biases (a fraction of a percent).
        "params_ffn": body - attn,
        "vram_required_bytes": vram,
        "quantized": 0.0,
        **{f"activation_{a}": 1.0 if act == a else 0.0 for a in ACTIVATIONS},
        "gpu_memory_bytes": total_memory,
        "gpu_bandwidth_bytes_per_s": gpu.memory_bandwidth_bytes_per_s * req.gpu_count,
        "gpu_count": req.gpu_count,
        "gpu_tdp_w": gpu.tdp_w * req.gpu_count,
        "gpu_flops_per_s": _flops_per_s(gpu, req.dtype) * req.gpu_count,
        "gpu_cuda_cores": (gpu.cuda_cores or 0) * req.gpu_count,
        "gpu_free_memory_bytes": total_memory - vram,
    }
    out.update(physics_features(facts, req, gpu, step_ops(config).per_step(facts.num_layers),
                                step_gemms(config, facts, req, gpu)))
    return {k: float(out[k]) for k in ALL_FEATURES}
