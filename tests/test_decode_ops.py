"""Operators per decode step: the shipped table, counting an architecture on the spot, the fallback."""

import pytest

from wattlens.analysis.predict_features import step_ops
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
def test_count_of_the_graphed_step_matches_the_table():
    from wattlens.backends.step_ops import count_decode_ops

    counted = count_decode_ops(resolve_model("llama-3.2-1b").config)
    row = D._table()["model_types"]["llama"]
    assert (counted.per_layer, counted.outside) == (row["per_layer"], row["outside"])
    assert counted.source == "counted"


@pytest.mark.slow
def test_calls_that_return_their_input_are_not_counted():
    """A `to` the dtype a tensor already has runs no kernel; an in-place add does, though it returns its input."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from wattlens.backends.step_ops import _returns_an_input

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            seen.append((func.__name__, _returns_an_input(func, args, out)))
            return out

    x = torch.ones(4, dtype=torch.bfloat16)
    with torch.inference_mode(), Record():  # as the count runs
        x.to(torch.bfloat16)
        x.to(torch.float32)
        x.add_(1)
    assert seen == [("to.dtype", True), ("to.dtype", False), ("add_.Tensor", False)]


def test_unknown_architecture_without_a_counter_falls_back_to_the_median():
    ops = D.decode_ops({"model_type": "not_a_real_arch"}, count=lambda config: "torch is not installed")
    assert ops.source.startswith("fallback") and "torch is not installed" in ops.source
    per_layer = sorted(r["per_layer"] for r in D._table()["model_types"].values())
    assert per_layer[0] <= ops.per_layer <= per_layer[-1]
    assert "no counter given" in D.decode_ops({"model_type": "not_a_real_arch"}).source


def test_architecture_transformers_cannot_build_falls_back_with_the_reason():
    ops = step_ops({"model_type": "not_a_real_arch", "num_hidden_layers": 2})
    assert ops.source.startswith("fallback") and "could not count" in ops.source
