"""A decode step's Linear shapes (read from transformers on the meta device) and the per-GPU GEMM table."""

import pytest

from wattlens.hw import gemm_table as G
from wattlens.models import decode_gemms as D

TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 16, "intermediate_size": 128, "num_hidden_layers": 2, "vocab_size": 100,
              "tie_word_embeddings": False}


def test_llama_linears_by_hand():
    shapes = D.decode_linear_shapes(TINY_LLAMA)
    # per layer: q and o 64 x 64, k and v 32 x 64 (2 KV heads x 16), gate and up 128 x 64, down 64 x 128;
    # two layers; one LM head 100 x 64
    assert {(s.out_features, s.in_features, s.bias, s.count) for s in shapes} == {
        (64, 64, False, 4), (32, 64, False, 4), (128, 64, False, 4), (64, 128, False, 2), (100, 64, False, 1)}


def test_routed_experts_are_not_linears_of_the_step():
    moe = {"model_type": "qwen2_moe", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
           "intermediate_size": 96, "moe_intermediate_size": 48, "shared_expert_intermediate_size": 80,
           "num_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 1, "vocab_size": 100}
    shapes = D.decode_linear_shapes(moe)
    widths = {s.out_features for s in shapes} | {s.in_features for s in shapes}
    assert 48 not in widths  # no routed expert
    assert 80 in widths  # the shared expert is an ordinary MLP, run for every token


def test_without_torch_the_reason_comes_back(monkeypatch):
    D._cached.cache_clear()

    def no_torch(config):
        raise ImportError("no torch", name="torch")

    monkeypatch.setattr(D, "_linear_shapes", no_torch)
    assert D.decode_linear_shapes({"model_type": "llama"}) == "torch is not installed"
    D._cached.cache_clear()


def test_distinct_shapes_merges_configs_and_names_a_config_it_cannot_read():
    wider = {**TINY_LLAMA, "intermediate_size": 256}
    shapes = D.distinct_shapes([TINY_LLAMA, wider, TINY_LLAMA])
    assert (128, 64, False) in shapes and (256, 64, False) in shapes and len(shapes) == len(set(shapes)) == 7
    with pytest.raises(ValueError, match="not_a_real_arch"):
        D.distinct_shapes([{"model_type": "not_a_real_arch"}])


def _table(tmp_path):
    rows = [G.GemmRow("GPU X", 8, 64, 64, False, 2, 10.0), G.GemmRow("GPU X", 8, 32, 64, False, 1, 4.0),
            G.GemmRow("GPU X", 8, 128, 64, False, 1, 8.0), G.GemmRow("GPU X", 8, 64, 128, False, 2, 9.0),
            G.GemmRow("GPU X", 8, 100, 64, False, 1, 5.0), G.GemmRow("GPU X", 1, 64, 64, False, 1, 7.0)]
    path = tmp_path / "gemm.csv"
    assert G.write_csv(rows, path) == len(rows)
    return G.load_table([path])


def test_table_round_trip_and_a_step_summed_by_hand(tmp_path):
    table = _table(tmp_path)
    assert table[("GPU X", 8, 64, 64, False)].kernels == 2
    step = G.decode_gemms(D.decode_linear_shapes(TINY_LLAMA), "GPU X", 3e12, 10, table=table)  # 10 rows -> 8
    assert step.source == "measured" and step.linears == 4 + 4 + 4 + 2 + 1
    assert step.extra_kernels == 4 * 1 + 2 * 1  # the 64 x 64 and the 64 x 128 GEMMs split
    assert step.seconds == pytest.approx((4 * 10 + 4 * 4 + 4 * 8 + 2 * 9 + 5) * 1e-6)


def test_law_recovers_a_floor_and_a_time_per_byte():
    rows = [G.GemmRow("GPU X", 8, n, 1024, False, 2 if n < 2048 else 1, 3.0 + n * 1024 * 2 * 1e-6)
            for n in (256, 512, 1024, 2048, 4096, 8192)]
    law = G.fit_law(rows)
    assert law.floor_us == pytest.approx(3.0) and law.us_per_byte == pytest.approx(1e-6)
    assert law.split_fraction == pytest.approx(3 / 6)


def test_a_shape_the_table_lacks_is_estimated_by_its_gpus_law_and_said_so(tmp_path):
    table = _table(tmp_path)
    wider = {**TINY_LLAMA, "vocab_size": 5000}  # an LM head the table lacks
    step = G.decode_gemms(D.decode_linear_shapes(wider), "GPU X", 3e12, 8, table=table)
    law, how = G.law_for(table, "GPU X", 3e12, 8)
    assert step.source == f"estimated for 1 of 15 Linears ({how})" and "GPU X" in how
    assert step.seconds == pytest.approx((4 * 10 + 4 * 4 + 4 * 8 + 2 * 9) * 1e-6 + law.us(5000 * 64 * 2) * 1e-6)
    assert step.extra_kernels == pytest.approx(6 + law.split_fraction)


def test_an_unmeasured_gpu_takes_the_measured_gpus_law_scaled_by_bandwidth():
    table = G.shipped_table()
    h100 = "NVIDIA H100 SXM 80GB"
    own, _ = G.law_for(table, h100, 3.35e12, 8)
    law, how = G.law_for(table, "NVIDIA A100 80GB SXM", 2.039e12, 8)
    assert "scaled by HBM bandwidth" in how and h100 in how
    assert law.us_per_byte * 2.039e12 == pytest.approx(
        (own.us_per_byte * 3.35e12 + G.law_for(table, "NVIDIA H200 SXM 141GB", 4.8e12, 8)[0].us_per_byte * 4.8e12) / 2)
    guessed, how = G.law_for({}, "GPU Z", 1e12, 8)
    assert how == "guessed (no GEMM table)" and guessed.us_per_byte == pytest.approx(1e6 / 0.7e12)


def test_shipped_table_measures_every_catalog_model_on_h100_and_h200():
    from wattlens.hw.specs import gpu_spec_by_name
    from wattlens.models.catalog import list_catalog, resolve_model

    for gpu in ("H100", "H200"):
        spec = gpu_spec_by_name(gpu)
        for entry in list_catalog():
            shapes = D.decode_linear_shapes(resolve_model(entry.name).config)
            for batch in (1, 8, 64):
                step = G.decode_gemms(shapes, spec.name, spec.memory_bandwidth_bytes_per_s, batch)
                assert step.source == "measured", (gpu, entry.name, batch, step.source)


def test_shipped_shapes_are_what_transformers_builds():
    from wattlens.models.catalog import resolve_model

    config = resolve_model("llama-3.2-3b").config
    assert D.decode_linear_shapes(config) == D._linear_shapes(config)


@pytest.mark.parametrize("batch, rows", [(1, 1), (3, 4), (10, 8), (12, 16), (48, 64), (1000, 128)])
def test_nearest_measured_rows_in_log_scale(batch, rows):
    assert G.nearest_rows(batch) == rows


def test_measuring_needs_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="CUDA"):
        next(G.measure([(4, 4, False)], progress=False))


def test_the_command_without_a_gpu_leaves_no_empty_csv(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    (tmp_path / "shapes.json").write_text("[[64, 64, false]]")
    with pytest.raises(SystemExit, match="CUDA"):
        G.main(["--shapes", str(tmp_path / "shapes.json"), "--out", str(tmp_path / "gemm.csv")])
    assert not (tmp_path / "gemm.csv").exists()


def test_reading_shapes_leaves_the_callers_config_as_it_was():
    """transformers adds keys to nested dicts (Llama-3.1's rope_scaling) of the config it is given."""
    import copy

    from wattlens.models.catalog import resolve_model

    config = resolve_model("llama-3.1-8b").config
    before = copy.deepcopy(config)
    D._linear_shapes(config)
    assert config == before
    assert D.config_key(config) in D._table()  # so the shipped table finds it
