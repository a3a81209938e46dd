"""HF backend on the CPU: the three serving modes agree, token timing is sound, and the pieces of
the compiled loop (GQA decode attention, on-device sampling) match their references."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wattlens.backends.hf import HFBackend, gqa_decode_attention, sample_next_tokens  # noqa: E402
from wattlens.core.errors import BadInput  # noqa: E402
from wattlens.core.spec import SamplingSpec  # noqa: E402

BATCH, CTX, GEN = 2, 16, 4

_models: dict[str, object] = {}
_outputs: dict[tuple[str, str], tuple] = {}


def _model(name: str):
    if name not in _models:
        import warnings

        from wattlens.models.build import build_model
        from wattlens.models.catalog import resolve_model

        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpt_oss falls back from sdpa to eager
            _models[name] = build_model(resolve_model(name), "fp32", "cpu")
    return _models[name]


def _prompt(name: str):
    from wattlens.workloads.inputs import synthetic_batch

    return synthetic_batch(BATCH, CTX, _model(name).config.vocab_size, seed=0, device="cpu")


def _generate(name: str, mode: str):
    """Two generations of the same prompt in one mode (the second after warm-up/compile), cached."""
    key = (name, mode)
    if key not in _outputs:
        model = _model(name)
        prompt = _prompt(name)
        backend = HFBackend(model, mode, SamplingSpec())
        backend.prepare(BATCH, CTX, GEN)
        hook_calls: list[tuple[int, int]] = []
        first = backend.generate(prompt.input_ids, prompt.attention_mask, GEN)
        second = backend.generate(prompt.input_ids, prompt.attention_mask, GEN,
                                  on_token=lambda i, t: hook_calls.append((i, t)))
        _outputs[key] = (first, second, hook_calls, backend.describe())
        backend.release()
    return _outputs[key]


# -- modes agree ---------------------------------------------------------------------------------

def test_greedy_eager_and_static_outputs_identical_tiny_gqa():
    eager = _generate("tiny-gqa", "eager")[1].output_ids
    static = _generate("tiny-gqa", "static")[1].output_ids
    assert torch.equal(eager, static)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-gqa", "tiny-gpt-oss"])
def test_greedy_outputs_identical_across_eager_static_compiled(name):
    outs = {mode: _generate(name, mode) for mode in ("eager", "static", "compiled")}
    eager = outs["eager"][1].output_ids
    assert eager.shape == (BATCH, GEN)
    for mode in ("static", "compiled"):
        assert torch.equal(outs[mode][0].output_ids, eager), mode  # first call (compiles) too
        assert torch.equal(outs[mode][1].output_ids, eager), mode
    assert outs["compiled"][3]["loop"] == "wattlens lean decode loop"
    assert outs["compiled"][3]["decode_step"] == "torch.compile(fullgraph)"  # no CUDA graph on the CPU


@pytest.mark.slow
def test_compiled_mode_uses_gqa_decode_attention_for_sdpa_models():
    desc = _generate("tiny-gqa", "compiled")[3]
    assert desc["decode_attention"].startswith("wattlens_gqa_sdpa")


# -- token counts and timing ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["eager", "static", pytest.param("compiled", marks=pytest.mark.slow)])
def test_exactly_gen_tokens_and_one_monotonic_time_per_token(mode):
    first, out, hook_calls, _ = _generate("tiny-gqa", mode)
    for o in (first, out):
        assert tuple(o.output_ids.shape) == (BATCH, GEN)
        assert o.n_new_tokens == GEN
        assert len(o.token_times_ns) == GEN
        times = o.token_times_s()
        assert all(t > 0 for t in times)
        assert all(b >= a for a, b in zip(times, times[1:]))
        assert times[0] <= o.e2e_s  # TTFT <= E2E
        assert times[-1] <= o.e2e_s
    # the hook fires once per token, in order, with the same stamps the output keeps
    assert [i for i, _ in hook_calls] == list(range(GEN))
    assert [t for _, t in hook_calls] == out.token_times_ns


def test_generate_rejects_gen_zero():
    backend = HFBackend(_model("tiny-gqa"), "eager")
    prompt = _prompt("tiny-gqa")
    with pytest.raises(BadInput, match="gen must be >= 1"):
        backend.generate(prompt.input_ids, prompt.attention_mask, 0)


def test_unknown_mode_is_bad_input_naming_the_mode():
    with pytest.raises(BadInput, match="'turbo'"):
        HFBackend(object(), "turbo")


# -- GQA decode attention ------------------------------------------------------------------------

class _StandInAttention:
    """Just the attributes transformers' sdpa function reads from an attention module."""

    def __init__(self, groups: int):
        self.num_key_value_groups = groups
        self.is_causal = True
        self.training = False


@pytest.mark.parametrize("batch", [1, 3])
def test_gqa_decode_attention_matches_transformers_sdpa(batch):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    gen = torch.Generator().manual_seed(1)
    kv_heads, groups, head_dim, kv_len = 2, 4, 16, 11
    q = torch.randn(batch, kv_heads * groups, 1, head_dim, generator=gen)
    k = torch.randn(batch, kv_heads, kv_len, head_dim, generator=gen)
    v = torch.randn(batch, kv_heads, kv_len, head_dim, generator=gen)
    mask = torch.ones(batch, 1, 1, kv_len, dtype=torch.bool)
    mask[..., -3:] = False  # unfilled static-cache slots
    mask[0, ..., 0] = False  # a padded prompt position in one sequence
    module = _StandInAttention(groups)
    scaling = head_dim**-0.5

    ours, ours_w = gqa_decode_attention(module, q, k, v, mask, scaling=scaling)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=scaling)
    assert ours_w is None
    assert ours.shape == ref.shape == (batch, 1, kv_heads * groups, head_dim)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)

    # and against attention written out by hand: query head h reads KV head h // groups
    kk = k.repeat_interleave(groups, dim=1)
    vv = v.repeat_interleave(groups, dim=1)
    scores = (q @ kk.transpose(-1, -2)) * scaling
    scores = scores.masked_fill(~mask, float("-inf"))
    manual = (scores.softmax(-1) @ vv).transpose(1, 2)
    torch.testing.assert_close(ours, manual, rtol=1e-5, atol=1e-6)


def test_gqa_decode_attention_defers_to_sdpa_for_prefill():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    gen = torch.Generator().manual_seed(2)
    q = torch.randn(1, 8, 5, 16, generator=gen)
    k = torch.randn(1, 2, 5, 16, generator=gen)
    v = torch.randn(1, 2, 5, 16, generator=gen)
    module = _StandInAttention(4)
    ours, _ = gqa_decode_attention(module, q, k, v, None, scaling=0.25)
    ref, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.25)
    torch.testing.assert_close(ours, ref)


# -- sampling ------------------------------------------------------------------------------------

def _logits(rows: int = 64, vocab: int = 50):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(3))


def test_greedy_sampling_is_argmax():
    logits = _logits()
    assert torch.equal(sample_next_tokens(logits, SamplingSpec()), logits.argmax(-1))


def test_top_k_one_is_argmax_even_when_sampling():
    torch.manual_seed(0)
    logits = _logits()
    picked = sample_next_tokens(logits, SamplingSpec(temperature=1.0, top_k=1))
    assert torch.equal(picked, logits.argmax(-1))


def test_tiny_top_p_is_argmax():
    torch.manual_seed(0)
    logits = _logits()
    picked = sample_next_tokens(logits, SamplingSpec(temperature=1.0, top_p=1e-6))
    assert torch.equal(picked, logits.argmax(-1))


def test_temperature_one_draws_follow_the_distribution():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    draws = 20000
    logits = probs.log().expand(draws, 4).clone()
    picked = sample_next_tokens(logits, SamplingSpec(temperature=1.0))
    freq = torch.bincount(picked, minlength=4).float() / draws
    assert torch.all((freq - probs).abs() < 0.02), freq.tolist()


def test_top_k_two_only_draws_the_two_most_likely():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(5000, 4).clone()
    picked = sample_next_tokens(logits, SamplingSpec(temperature=1.0, top_k=2))
    freq = torch.bincount(picked, minlength=4).float() / 5000
    assert freq[0] == 0 and freq[1] == 0
    assert math.isclose(freq[3].item(), 0.4 / 0.7, abs_tol=0.03)


@pytest.mark.parametrize("kv_heads,groups", [(2, 4), (4, 1)])
@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
@pytest.mark.parametrize("variant", ["reductions", "flex"])
def test_decode_attention_variants_match_sdpa(kv_heads, groups, mask_kind, variant):
    """The GPU decode paths (reductions + matmul; flex attention) equal plain SDPA with repeated KV heads."""
    from wattlens.backends import hf

    attend = {"reductions": hf.decode_attention_by_reductions, "flex": hf.decode_attention_by_flex}[variant]

    gen = torch.Generator().manual_seed(7)
    batch, length, dim = 2, 37, 16
    q = torch.randn(batch, kv_heads * groups, 1, dim, generator=gen)
    k = torch.randn(batch, kv_heads, length, dim, generator=gen)
    v = torch.randn(batch, kv_heads, length, dim, generator=gen)
    keep = torch.rand(batch, 1, 1, length, generator=gen) > 0.3
    keep[..., 0] = True
    mask = {"bool": keep, "float": torch.where(keep, 0.0, float("-inf")), "none": None}[mask_kind]
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1), attn_mask=mask, scale=0.3
    ).transpose(1, 2)
    out = attend(q, k, v, mask, scaling=0.3)  # flex: the mask applied as a bias (no positions given)
    assert out.shape == (batch, 1, kv_heads * groups, dim)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("compiled", [False, True])
def test_flex_decode_attention_masks_from_positions(compiled):
    """Given token positions, the flex variant hides cache slots past each row's position, in eager
    and compiled form (compiled: inductor's flex kernel with the positions as a graph input)."""
    from wattlens.backends.hf import decode_attention_by_flex

    gen = torch.Generator().manual_seed(11)
    q = torch.randn(2, 8, 1, 16, generator=gen)
    k = torch.randn(2, 2, 40, 16, generator=gen)
    v = torch.randn(2, 2, 40, 16, generator=gen)
    positions = torch.tensor([[29], [35]])
    slots = torch.arange(40)
    causal = (slots[None, :] <= positions)[:, None, None, :]
    attend = torch.compile(decode_attention_by_flex, fullgraph=True) if compiled else decode_attention_by_flex
    out = attend(q, k, v, causal, 0.3, positions)
    ref = decode_attention_by_flex(q, k, v, causal, scaling=0.3)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, decode_attention_by_flex(q, k, v, None, scaling=0.3))


@pytest.mark.slow
def test_compiled_sliding_window_model_matches_eager_far_past_the_window():
    """GPT-OSS-style sliding layers (window 8): the compiled loop pins transformers' Python counter and
    builds its masks from device tensors, so 24 decode steps (3 windows) still match eager."""
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    model = build_model(resolve_model("tiny-gpt-oss"), "fp32", "cpu")
    ids = torch.randint(5, 500, (1, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    eager = HFBackend(model, "eager").generate(ids, mask, 24).output_ids
    compiled = HFBackend(model, "compiled")
    assert torch.equal(compiled.generate(ids, mask, 24).output_ids, eager)
    with pytest.raises(RuntimeError, match="sliding window"):
        compiled.generate(ids[:, :4], mask[:, :4], 4)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["reductions", "flex", "grouped_sdpa", "transformers"])
def test_compiled_decode_attention_variants_match_eager(variant):
    """Every decode-attention variant of the compiled loop gives eager's greedy tokens (GQA model)."""
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    model = build_model(resolve_model("tiny-gqa"), "fp32", "cpu")
    ids = torch.randint(5, 500, (2, 20), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    eager = HFBackend(model, "eager").generate(ids, mask, 10).output_ids
    backend = HFBackend(model, "compiled", decode_attention=variant)
    assert torch.equal(backend.generate(ids, mask, 10).output_ids, eager)
    described = backend.describe()["decode_attention"]
    assert (variant in described) if variant != "transformers" else described == "sdpa"


def test_unknown_decode_attention_is_bad_input():
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    model = build_model(resolve_model("tiny-llama"), "fp32", "cpu")
    with pytest.raises(BadInput, match="decode attention"):
        HFBackend(model, "compiled", decode_attention="flash9")


@pytest.mark.slow
def test_compiled_mode_survives_more_shapes_than_dynamos_default_limit():
    """A sweep compiles the decode step once per shape; past dynamo's default 8 variants the
    fullgraph step used to fail (and transformers' static step would silently run uncompiled)."""
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    model = build_model(resolve_model("tiny-llama"), "fp32", "cpu")
    eager = HFBackend(model, "eager")
    for ctx in range(8, 8 + 2 * 10, 2):  # 10 shapes
        ids = torch.randint(5, 500, (1, ctx), generator=torch.Generator().manual_seed(ctx))
        mask = torch.ones_like(ids)
        compiled = HFBackend(model, "compiled")
        assert torch.equal(compiled.generate(ids, mask, 3).output_ids, eager.generate(ids, mask, 3).output_ids)
    assert torch._dynamo.config.recompile_limit >= 10


@pytest.mark.parametrize("name", ["tiny-moe", "tiny-gpt-oss"])
def test_gathered_experts_equal_transformers_batched_mm(name):
    """The gathered-reduction experts forward gives batched_mm's output (plain and transposed
    layouts, with and without biases), for a one-token step and for several tokens."""
    from transformers.integrations.moe import batched_mm_experts_forward

    from wattlens.backends.hf import decode_experts_by_gathered_reductions
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    model = build_model(resolve_model(name), "fp32", "cpu")
    experts = next(m for m in model.modules() if hasattr(m, "has_gate") and hasattr(m, "down_proj"))
    gen = torch.Generator().manual_seed(2)
    n_experts, top_k = model.config.num_local_experts if name == "tiny-gpt-oss" else model.config.num_experts, 2
    for tokens in (1, 3):
        x = torch.randn(tokens, model.config.hidden_size, generator=gen)
        ids = torch.stack([torch.randperm(n_experts, generator=gen)[:top_k] for _ in range(tokens)])
        weights = torch.rand(tokens, top_k, generator=gen)
        with torch.no_grad():
            ref = batched_mm_experts_forward(experts, x, ids, weights)
            ours = decode_experts_by_gathered_reductions(experts, x, ids, weights)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def _eager_reference(name: str, ctx: int, gen: int, seed: int, rows: int = 1, overrides=()):
    """A freshly built fp32 model, a random prompt, and eager's greedy tokens for it."""
    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    model = build_model(resolve_model(name, overrides), "fp32", "cpu")
    ids = torch.randint(5, 500, (rows, ctx), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    return model, ids, mask, HFBackend(model, "eager").generate(ids, mask, gen).output_ids


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-moe", "tiny-gpt-oss"])
def test_compiled_decode_with_gathered_experts_matches_eager(name):
    model, ids, mask, eager = _eager_reference(name, ctx=12, gen=10, seed=4)
    backend = HFBackend(model, "compiled", decode_experts="gathered")
    assert torch.equal(backend.generate(ids, mask, 10).output_ids, eager)
    assert backend.describe()["decode_experts"] == "gathered"
    assert model.get_experts_implementation() == {"": "grouped_mm"}  # prefill kernel put back after decoding
    with pytest.raises(BadInput, match="decode experts"):
        HFBackend(model, "compiled", decode_experts="fused9")


# -- graphed mode and regional compilation -------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-gqa", "tiny-llama", "tiny-moe", "tiny-gpt-oss", "opt-1.3b"])
def test_graphed_mode_matches_eager(name):
    """The lean loop with the model's own kernels (no compile) gives eager's greedy tokens, for dense,
    GQA, MoE and sliding-window models: its explicit masks hide the static cache's empty slots."""
    overrides = (("num_hidden_layers", 2), ("hidden_size", 64), ("ffn_dim", 128), ("num_attention_heads", 4),
                 ("word_embed_proj_dim", 64)) if name == "opt-1.3b" else ()
    rows = 1 if name == "tiny-gpt-oss" else 2  # one row: no padding question for the sliding window
    model, ids, mask, eager = _eager_reference(name, ctx=14, gen=12, seed=6, rows=rows, overrides=overrides)
    backend = HFBackend(model, "graphed")
    assert torch.equal(backend.generate(ids, mask, 12).output_ids, eager)
    assert torch.equal(backend.generate(ids, mask, 12).output_ids, eager)  # a second call reuses the cache
    desc = backend.describe()
    assert desc["mode"] == "graphed" and desc["transformers_cache"] == "static"
    assert desc["decode_step"] == "model's own kernels, uncompiled"  # no CUDA graph on the CPU
    assert desc["prefill"] == "eager forward"
    assert desc["static_cache_tokens"] == 14 + 12  # what its decode steps attend over (predictor feature)


def test_graphed_full_window_update_avoids_host_copies_and_matches_eager(monkeypatch):
    """GPT-OSS's full sliding window (8 < 14-token prompt) rolls at every decode step. On the GPU,
    transformers' roll indexes through a tensor copied from the host, which a CUDA graph capture
    refuses (H100, 2026-11-22); the lean loop's override must take that path and keep eager's tokens."""
    import wattlens.backends.hf as hf

    model, ids, mask, eager = _eager_reference("tiny-gpt-oss", ctx=14, gen=12, seed=6)
    host_lists = []
    real_tensor = torch.tensor

    def spy(data, *args, **kwargs):
        if isinstance(data, list):
            host_lists.append(data)
        return real_tensor(data, *args, **kwargs)

    backend = HFBackend(model, "graphed")
    backend.prepare(1, 14, 12)
    monkeypatch.setattr(torch, "tensor", spy)
    out = backend.generate(ids, mask, 12).output_ids
    monkeypatch.undo()
    assert torch.equal(out, eager)
    assert host_lists == []  # no tensor built from a Python list while decoding
    assert any(layer.update.__name__ == "update" and layer.update.__qualname__.startswith("_capture_safe")
               for layer in backend._lean.cache.layers if hasattr(layer, "cumulative_length_int"))


def test_graphed_falcon_reads_its_shared_kv_head_once_and_captures():
    """Falcon-7B's multi-query split picks the shared key / value heads through a list index built on
    the host, which a CUDA graph capture refuses (H100, 2026-11-22), and its own SDPA call broadcasts
    the one KV head to every query head, which PyTorch's math kernel copies once per head. In the lean
    loop a decode step must build no tensor from Python data, call SDPA with equal head counts (so must
    the prefill: through the math kernel it ran at 11-15% of its FLOP roofline on an H100), keep
    transformers' sdpa setting, say it reads each KV head once, and give eager's tokens."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from wattlens.analysis.predictor import KV_READ_ONCE_MARK

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names, self.sdpa_heads = [], []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            if "scaled_dot_product" in str(func):
                self.sdpa_heads.append((args[0].shape[1], args[1].shape[1]))  # query, key heads
            return func(*args, **(kwargs or {}))

    overrides = (("num_hidden_layers", 2), ("hidden_size", 64), ("num_attention_heads", 4), ("vocab_size", 512))
    model, ids, mask, eager = _eager_reference("falcon-7b", ctx=14, gen=12, seed=6, rows=2, overrides=overrides)
    backend = HFBackend(model, "graphed")
    backend.prepare(2, 14, 12)
    assert torch.equal(backend.generate(ids, mask, 12).output_ids, eager)
    lean = backend._lean
    assert lean.cache.layers[0].keys.shape[1] == 1  # multi-query: one KV head in the cache
    ops = Ops()
    with torch.inference_mode(), lean._own_attention(), ops:
        lean._decode_step()
    assert "aten.lift_fresh.default" not in ops.names  # no index tensor from a host list
    # Equal head counts in every SDPA call: a fused kernel can take it, none copies K / V per query head.
    assert ops.sdpa_heads == [(1, 1)] * 2
    prefill_ops = Ops()
    with torch.inference_mode(), lean._own_attention(), prefill_ops:
        lean._prefill(ids)
    assert prefill_ops.sdpa_heads == [(4, 4)] * 2  # the prompt: K / V repeated to the 4 query heads
    assert torch.nn.functional.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"  # put back
    assert model.config._attn_implementation == "sdpa"
    assert KV_READ_ONCE_MARK in backend.describe()["decode_attention"]


def test_shared_kv_sdpa_matches_sdpa_with_the_kv_heads_repeated():
    """Exact for a one-token step (query heads of a group as rows against their shared KV head,
    additive mask) and for a prompt (K / V repeated, causal or masked), and the SDPA underneath
    always sees equal head counts, so a fused kernel can take the call."""
    from wattlens.backends.hf import _shared_kv_sdpa

    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 6, 1, 8, generator=g), torch.randn(3, 2, 11, 8, generator=g), torch.randn(3, 2, 11, 8, generator=g)
    visible = torch.arange(11)[None, None, None, :] <= torch.tensor([3, 7, 10])[:, None, None, None]
    mask = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    seen_heads = []

    def recording_sdpa(query, key, value, **kwargs):
        seen_heads.append((query.shape[1], key.shape[1]))
        return sdpa(query, key, value, **kwargs)

    shared = _shared_kv_sdpa(recording_sdpa)
    repeated = k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1)
    torch.testing.assert_close(shared(q, k, v, attn_mask=mask), sdpa(q, *repeated, attn_mask=mask), rtol=1e-5, atol=1e-6)
    prompt = torch.randn(3, 6, 11, 8, generator=g)
    torch.testing.assert_close(shared(prompt, k, v, is_causal=True), sdpa(prompt, *repeated, is_causal=True))
    torch.testing.assert_close(shared(prompt, k, v, attn_mask=mask), sdpa(prompt, *repeated, attn_mask=mask))
    torch.testing.assert_close(shared(prompt, *repeated), sdpa(prompt, *repeated))  # equal heads: unchanged
    assert seen_heads == [(2, 2), (6, 6), (6, 6), (6, 6)]


def test_sink_decode_attention_matches_the_models_eager_attention():
    """GPT-OSS's decode attention without `repeat_kv`: same output as transformers' eager function
    (sink logits, additive mask hiding empty cache slots), on random inputs."""
    from wattlens.backends.hf import _model_eager_attention, decode_attention_with_sinks

    model, *_ = _eager_reference("tiny-gpt-oss", ctx=4, gen=1, seed=0)
    attn = model.model.layers[0].self_attn
    with torch.no_grad():
        attn.sinks.copy_(torch.randn(attn.sinks.shape, generator=torch.Generator().manual_seed(2)))
    batch, slots, d = 3, 11, attn.head_dim
    hq, hkv = model.config.num_attention_heads, model.config.num_key_value_heads
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(batch, h, n, d, generator=g) for h, n in ((hq, 1), (hkv, slots), (hkv, slots)))
    visible = torch.arange(slots)[None, None, None, :] <= torch.tensor([3, 7, 10])[:, None, None, None]
    mask = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)
    want, _ = _model_eager_attention(attn)(attn, q, k, v, mask, scaling=attn.scaling)
    got, _ = decode_attention_with_sinks(attn, q, k, v, mask, scaling=attn.scaling)
    assert hq > hkv and got.shape == want.shape == (batch, 1, hq, d)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got_bool, _ = decode_attention_with_sinks(attn, q, k, v, visible, scaling=attn.scaling)
    torch.testing.assert_close(got_bool, want, rtol=1e-5, atol=1e-6)


def test_sink_prompt_attention_through_sdpa_matches_the_models_eager_attention(monkeypatch):
    """GPT-OSS's prefill through SDPA, the sink as one more key: same output as transformers' eager
    function for a causal prompt with left padding (float and boolean masks), and the SDPA call
    sees equal head counts and a width that is a multiple of 8."""
    from wattlens.backends.hf import _model_eager_attention, decode_attention_with_sinks

    model, *_ = _eager_reference("tiny-gpt-oss", ctx=4, gen=1, seed=0)
    attn = model.model.layers[0].self_attn
    with torch.no_grad():
        attn.sinks.copy_(torch.randn(attn.sinks.shape, generator=torch.Generator().manual_seed(3)))
    batch, tokens, slots, d = 2, 6, 9, attn.head_dim
    hq, hkv = model.config.num_attention_heads, model.config.num_key_value_heads
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(batch, h, n, d, generator=g) for h, n in ((hq, tokens), (hkv, slots), (hkv, slots)))
    query_slot = torch.arange(tokens)[None, None, :, None]
    slot = torch.arange(slots)[None, None, None, :]
    visible = (slot <= query_slot) & (slot >= torch.tensor([0, 2])[:, None, None, None])  # causal, row 1 padded
    mask = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)
    want, _ = _model_eager_attention(attn)(attn, q, k, v, mask, scaling=attn.scaling)
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query, key, value, **kwargs):
        seen.append((query.shape[1], key.shape[1], query.shape[-1]))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    got, _ = decode_attention_with_sinks(attn, q, k, v, mask, scaling=attn.scaling)
    got_bool, _ = decode_attention_with_sinks(attn, q, k, v, visible, scaling=attn.scaling)
    assert got.shape == want.shape == (batch, tokens, hq, d)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_bool, want, rtol=1e-5, atol=1e-6)
    assert seen and all(qh == kh == hq and width % 8 == 0 for qh, kh, width in seen)


def test_graphed_gpt_oss_decodes_with_the_sink_attention(monkeypatch):
    """The lean loop gives GPT-OSS (eager-only in transformers) the sink attention for its decode
    steps, and keeps eager's greedy tokens."""
    import wattlens.backends.hf as hf

    model, ids, mask, eager = _eager_reference("tiny-gpt-oss", ctx=14, gen=8, seed=6)
    one_row_steps = []
    real = hf.decode_attention_with_sinks

    def spy(module, query, *args, **kwargs):
        one_row_steps.append(query.shape[2] == 1)
        return real(module, query, *args, **kwargs)

    monkeypatch.setattr(hf, "decode_attention_with_sinks", spy)
    try:
        backend = HFBackend(model, "graphed")
        out = backend.generate(ids, mask, 8).output_ids
    finally:
        monkeypatch.undo()
        hf._register_sink_attention()  # the global registry holds the real function again
    assert torch.equal(out, eager)
    assert one_row_steps.count(True) == 7 * model.config.num_hidden_layers  # every decode step, every layer
    assert backend.describe()["decode_attention"].startswith(hf.SINK_DECODE_ATTENTION)
    assert model.config._attn_implementation == "eager"  # the shared model is left as it was


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-gqa", "tiny-gpt-oss"])
def test_compiled_layers_scope_matches_eager_and_leaves_the_model_plain(name):
    from wattlens.backends.hf import _decoder_layers

    model, ids, mask, eager = _eager_reference(name, ctx=14, gen=10, seed=7)
    backend = HFBackend(model, "compiled", compile_scope="layers")
    for _ in range(2):  # the second call compiles the prefill too
        assert torch.equal(backend.generate(ids, mask, 10).output_ids, eager)
    assert "each decoder layer" in backend.describe()["decode_step"]
    layers = _decoder_layers(model)
    assert len(layers) == model.config.num_hidden_layers
    assert all(layer._compiled_call_impl is None for layer in layers)  # other modes see the plain model
    assert torch.equal(HFBackend(model, "eager").generate(ids, mask, 10).output_ids, eager)


@pytest.mark.slow
def test_compiled_layers_scope_compiles_one_layer_body_whatever_the_depth():
    """One graph for the prefill shape and one for the decode step, for 2 layers as for 6: the layer
    index never becomes a per-layer constant (before, every layer compiled again)."""
    from torch._dynamo.utils import counters

    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model

    graphs = []
    for layers in (2, 6):
        torch._dynamo.reset()
        counters.clear()
        model = build_model(resolve_model("tiny-gqa", (("num_hidden_layers", layers),)), "fp32", "cpu")
        ids = torch.randint(0, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(3))
        backend = HFBackend(model, "compiled", compile_scope="layers")
        for _ in range(2):  # the second call compiles the prefill too
            backend.generate(ids, torch.ones_like(ids), 4)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [2, 2]


def test_compile_scope_from_argument_or_environment(monkeypatch):
    from wattlens.backends.hf import COMPILE_SCOPE_ENV

    model = _model("tiny-gqa")
    assert HFBackend(model, "compiled").compile_scope == "model"
    monkeypatch.setenv(COMPILE_SCOPE_ENV, "layers")
    assert HFBackend(model, "compiled").compile_scope == "layers"
    assert HFBackend(model, "compiled", compile_scope="model").compile_scope == "model"
    with pytest.raises(BadInput, match="compile scope 'regional'"):
        HFBackend(model, "compiled", compile_scope="regional")
    monkeypatch.setenv(COMPILE_SCOPE_ENV, "everything")
    with pytest.raises(BadInput, match=COMPILE_SCOPE_ENV):
        HFBackend(model, "compiled")


def test_compile_scope_in_a_trial_spec_and_sweep(monkeypatch):
    """A sweep or study can ask for the scope per trial: validated, part of the id only when set,
    round-tripped through the store's dict, shown in the mode label, and passed to the backend
    ahead of the environment."""
    import json

    from wattlens.backends.hf import COMPILE_SCOPE_ENV
    from wattlens.core.spec import TrialSpec
    from wattlens.runner.sweep import plan_from_dict

    # the id this trial was stored under before the field existed (results/h100/gpt-oss-20b-study)
    plain = TrialSpec(model="qwen3-32b", ctx_tokens=2048, gen_tokens=64, mode="compiled")
    assert "compile_scope" not in plain.to_dict() and plain.trial_id == "d31b11f8279831d9"
    (spec,) = plan_from_dict({"models": "tiny-gqa", "mode": "compiled", "compile_scope": "layers"}).specs
    spec.validate()
    back = TrialSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and spec.mode_label == "compiled[layers]" and plain.mode_label == "compiled"
    assert spec.trial_id != spec.with_(compile_scope="").trial_id
    for bad in (dict(mode="compiled", compile_scope="regional"), dict(mode="eager", compile_scope="layers")):
        with pytest.raises(BadInput, match="compile_scope"):
            TrialSpec(model="tiny-gqa", **bad).validate()
    monkeypatch.setenv(COMPILE_SCOPE_ENV, "model")
    backend = HFBackend(_model("tiny-gqa"), spec.mode, spec.sampling, compile_scope=spec.compile_scope or None)
    assert backend.compile_scope == "layers"
