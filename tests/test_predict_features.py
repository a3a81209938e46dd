"""Feature extraction against values computed by hand for a dense, a GQA and an MoE config."""

import pytest

from wattlens.analysis.predict_features import ALL_FEATURES, Request, kv_token_layers_sum, request_features, step_gemms
from wattlens.core.errors import BadInput
from wattlens.hw.specs import gpu_spec_by_name
from wattlens.models.arithmetic import model_facts

BASE = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            tie_word_embeddings=False, hidden_act="silu", max_position_embeddings=256)
DENSE = dict(BASE, model_type="llama", num_key_value_heads=4)
GQA = dict(BASE, model_type="llama", num_key_value_heads=2)
MOE = dict(BASE, model_type="mixtral", num_key_value_heads=2, intermediate_size=32, num_local_experts=4,
           num_experts_per_tok=2, sliding_window=None)
REQ = Request(input_tokens=10, output_tokens=5, batch_size=2, mode="eager")  # dynamic cache: context so far
H100 = gpu_spec_by_name("H100")


def feats(cfg):
    return request_features(cfg, REQ, H100)


def test_dense_by_hand():
    f = feats(DENSE)
    assert list(f) == list(ALL_FEATURES)
    # attention: per layer q,o = 64x64 each, k,v = 64x(4x16) each -> 16384; 2 layers
    assert f["params_attention"] == 32768
    # body = total 95040 (emb 6400 + head 6400 + final norm 64 + 2 x (16384 + 128 norms + 3x64x128))
    #        - embedding - head = 82240; per layer 41120; FFN = body - attention = 49472
    assert f["params_per_layer"] == 41120
    assert f["params_ffn"] == 49472
    assert f["params_embedding"] == 6400 and f["params_other_linear"] == 6400
    # KV: 2 (K,V) x 4 heads x 16 dims x 2 bytes x 2 layers = 512 B/token; 15 tokens -> 7680; held at 14 -> 7168
    assert f["kv_cache_bytes_per_prompt"] == 7680
    assert f["kv_bytes_held_per_prompt"] == 7168
    assert f["vram_required_bytes"] == 95040 * 2 + 2 * 7680
    # prefill of 10 tokens: body matmuls 2 x 81920 x 10 + head 2 x 6400 x 1 + attention 4x4x16 x 2 x 55
    assert f["prefill_flops_per_prompt"] == 1_638_400 + 12_800 + 28_160
    # 4 decode steps at contexts 11..14: 4 x 2 x 88320 + 256 x (2 layers x 50 slots)
    assert f["decode_flops_per_prompt"] == 706_560 + 25_600
    # bytes per step at batch 2: (88640 weights + 2 embedding rows of 64) x 2 B = 177536; KV 2 x 256 B x 100
    assert f["decode_bytes_per_prompt"] == (4 * 177_536 + 51_200) / 2
    assert f["prefill_roofline_s"] == pytest.approx(2 * 1_679_360 / 989.5e12)
    assert f["decode_roofline_s"] == pytest.approx((4 * 177_536 + 51_200) / 3350e9)
    assert f["decode_steps"] == 4 and f["layer_steps"] == 8
    # kernels per decode step: the operators of a llama layer (shipped table) 43 per layer + 33 -> 119, plus
    # the reduce kernels of split GEMMs (GEMM table); 7 Linears per layer + the LM head -> 15 per step
    gemms = step_gemms(DENSE, model_facts(DENSE), REQ, H100)
    assert gemms.linears == 15 and f["decode_linears"] == 4 * 15
    assert f["decode_kernels"] == pytest.approx(4 * (119 + gemms.extra_kernels))
    assert f["decode_gemm_s"] == pytest.approx(4 * gemms.seconds)
    # prefill operator traffic: 10 tokens x 119 operators x 64 wide x 2 B per prompt; batch of 2 at 3.35 TB/s
    assert f["prefill_operator_bytes_per_prompt"] == 10 * 119 * 64 * 2
    assert f["prefill_operator_s"] == pytest.approx(2 * 152_320 / 3350e9)
    assert f["is_moe"] == 0 and f["num_experts"] == 0 and f["activation_silu"] == 1
    assert f["decode_expert_bytes_per_prompt"] == 0
    assert f["gpu_tdp_w"] == 700 and f["gpu_count"] == 1 and f["gpu_free_memory_bytes"] == 80e9 - f["vram_required_bytes"]


def test_gqa_by_hand():
    f = feats(GQA)
    # per layer: q,o 2 x 64x64 = 8192; k,v 2 x 64x32 = 4096 -> 12288; total 12864 + 2 x (12288+128+24576) = 86848
    assert f["params_attention"] == 24576
    assert f["params_per_layer"] == (86848 - 12800) / 2
    assert f["num_kv_heads"] == 2 and f["num_heads"] == 4
    assert f["kv_cache_bytes_per_prompt"] == 15 * 256  # 2 x 2 x 16 x 2 B x 2 layers = 256 B/token
    # the attention FLOPs use all 4 query heads: unchanged from the dense model
    # body matmuls 2 layers x (12288 + 3x64x128) = 73728 -> 2 x 73728 x 10; head and attention as dense
    assert f["prefill_flops_per_prompt"] == 1_474_560 + 12_800 + 28_160


def test_moe_by_hand():
    f = feats(MOE)
    # experts 3x64x32 = 6144 each, router 64x4; per layer 12288 + 128 + 256 + 4 x 6144 = 37248; total 87360
    assert f["is_moe"] == 1 and f["num_experts"] == 4 and f["experts_per_token"] == 2
    assert f["intermediate_size"] == 32
    assert f["params_ffn"] == 87360 - 12800 - 24576
    # decode bytes per step at batch 2: non-expert 31808 + 2 rows x 64 + experts touched 4x(1-(1/2)^2)=3 per layer
    per_step = (31808 + 128 + 2 * 3 * 6144) * 2
    kv = 2 * 128 * (2 * (11 + 12 + 13 + 14))  # 128 B per slot (2 kv heads)
    assert f["decode_bytes_per_prompt"] == pytest.approx((4 * per_step + kv) / 2)
    # the routed-expert part of those bytes: 4 steps x 2 layers x 3 experts x 6144 x 2 B, per prompt
    assert f["decode_expert_bytes_per_prompt"] == pytest.approx(4 * 2 * 3 * 6144 * 2 / 2)
    # a token multiplies by the router and 2 experts: active matmul = 24576 + 2 x (256 + 12288) + 6400 = 56064
    assert f["decode_flops_per_prompt"] == 4 * 2 * 56064 + 256 * 100


def test_static_cache_steps_read_every_slot():
    """Outside eager mode each decode step attends over the whole static cache, whatever the position."""
    eager = feats(DENSE)
    graphed = request_features(DENSE, Request(10, 5, 2, mode="graphed"), H100)  # cache = 10 + 5 slots
    longer = request_features(DENSE, Request(10, 5, 2, mode="graphed", cache_tokens=40), H100)
    # 4 steps x 2 layers x 15 slots = 120 token-layer slots (eager: 100), 256 B each per sequence
    assert graphed["decode_bytes_per_prompt"] == (4 * 177_536 + 2 * 256 * 120) / 2
    assert graphed["decode_flops_per_prompt"] == 706_560 + 256 * 120
    assert longer["decode_bytes_per_prompt"] == (4 * 177_536 + 2 * 256 * 320) / 2
    assert eager["decode_bytes_per_prompt"] < graphed["decode_bytes_per_prompt"] < longer["decode_bytes_per_prompt"]
    for k in ("prefill_flops_per_prompt", "kv_cache_bytes_per_prompt", "decode_kernels"):
        assert graphed[k] == longer[k] == eager[k]


def test_cache_smaller_than_the_request_is_refused():
    with pytest.raises(BadInput, match="cannot hold"):
        Request(10, 5, 2, mode="graphed", cache_tokens=12)
    Request(10, 5, 2, mode="graphed", cache_tokens=14)  # the last token is never written to the cache


def test_kv_sum_matches_loop_with_sliding_window():
    facts = model_facts(dict(MOE, model_type="mistral", sliding_window=12, num_local_experts=None))
    assert kv_token_layers_sum(facts, 5, 40) == sum(facts.kv_token_layers(c) for c in range(5, 41))


def test_tensor_parallel_scales_infrastructure():
    f1 = feats(DENSE)
    f2 = request_features(DENSE, Request(10, 5, 2, mode="eager", gpu_count=2), H100)
    assert f2["gpu_bandwidth_bytes_per_s"] == 2 * f1["gpu_bandwidth_bytes_per_s"]
    assert f2["decode_roofline_s"] == pytest.approx(f1["decode_roofline_s"] / 2)


def test_time_bases_charge_each_decode_attention_call():
    """The request time's last basis: one attention call per layer and decode step, `ATTENTION_CALL_S` each."""
    import numpy as np

    from wattlens.analysis import predictor as P

    f = feats(DENSE)
    X = np.asarray([[f[k] for k in ALL_FEATURES]])
    bases = P.time_basis(X)
    assert bases.shape == (1, len(P.UNCALIBRATED_TIME_THETA))
    # 4 decode steps x 2 layers
    assert bases[0, -1] == pytest.approx(4 * 2 * P.ATTENTION_CALL_S)
