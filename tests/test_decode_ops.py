"""Operators per decode step: the shipped table, counting an architecture on the spot, the fallback."""

import pytest

from wattlens.models import decode_ops as D
from wattlens.models.catalog import list_catalog, resolve_model


def test_table_covers_every_catalog_architecture():
    types = {resolve_model(e.name).config["model_type"] for e in list_catalog()}
    table = D._table()["model_types"]
    assert types <= set(table)
    # structure, not size: a Llama layer runs more operators than an OPT layer, an MoE layer more still
    assert table["opt"]["per_layer"] < table["llama"]["per_layer"] < table["qwen3_moe"]["per_layer"]


def test_table_lookup_and_per_step():
    ops = D.decode_ops({"model_type": "llama", "num_hidden_layers": 32})
    assert ops.source == "table"
    assert ops.per_step(32) == 32 * ops.per_layer + ops.outside


@pytest.mark.slow
def test_count_matches_the_table():
    counted = D.count_decode_ops(resolve_model("llama-3.2-1b").config)
    row = D._table()["model_types"]["llama"]
    assert (counted.per_layer, counted.outside) == (row["per_layer"], row["outside"])
    assert counted.source == "counted"


def test_unknown_architecture_without_torch_falls_back_to_the_median(monkeypatch):
    monkeypatch.setattr(D, "_counted", lambda config_json: "torch is not installed")
    ops = D.decode_ops({"model_type": "not_a_real_arch"})
    assert ops.source.startswith("fallback") and "torch is not installed" in ops.source
    per_layer = sorted(r["per_layer"] for r in D._table()["model_types"].values())
    assert per_layer[0] <= ops.per_layer <= per_layer[-1]


def test_architecture_transformers_cannot_build_falls_back_with_the_reason():
    ops = D.decode_ops({"model_type": "not_a_real_arch", "num_hidden_layers": 2})
    assert ops.source.startswith("fallback") and "could not count" in ops.source
