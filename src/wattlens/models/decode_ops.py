"""Operators one decode step launches, per architecture: the predictor's launch-bound term.

A decode step of a small model is bound by how many kernels it runs, not by bytes: each kernel
costs a few microseconds however little it reads. Architectures differ a lot here: an OPT layer
runs 18 operators per decode step, a Llama layer 43 and a Qwen3-MoE layer 78 (counted as below),
so charging every architecture the same time per layer over-predicts OPT by ~30% at batch 8
(results/predictor/README.md).

The count is made on the CPU by `wattlens.backends.step_ops`: the decode step of the `graphed`
loop at toy widths (same structure, tiny matrices, built by `toy_config`), every ATen call that
does work. Two- and four-layer copies give the per-layer count (averaged over a pair, for models
that alternate sliding and full layers) and the rest (embedding, final norm, LM head, sampling).
A CPU count is a proxy for the GPU's kernels (cuBLAS's split-GEMM reduces are added from the
per-GPU GEMM table), used only through a fitted time per operator.

Counts for the catalog's architectures ship in `data/decode_ops.json` (regenerate with
`python -m wattlens.backends.step_ops`), so prediction needs no torch. For an architecture not in
the table the caller may pass a counter (`count`; the analysis layer passes the backends' one,
which needs torch and transformers); otherwise, or when it cannot count, the table's median
stands in, and `DecodeOps.source` says so.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).resolve().parent / "data" / "decode_ops.json"
# ATen calls that only re-describe memory (no kernel on a GPU).
VIEW_OPS = ("view", "_unsafe_view", "expand", "reshape", "t.", "transpose", "permute", "unsqueeze", "squeeze",
            "slice", "select", "alias", "split", "as_strided", "unbind", "detach")


@dataclass(frozen=True)
class DecodeOps:
    """Operators of one decode step: `per_layer` x layers + `outside`; `source` says where from."""

    per_layer: int
    outside: int
    source: str  # "table" | "counted" | "fallback (median of the table)"

    def per_step(self, num_layers: int) -> int:
        return self.per_layer * num_layers + self.outside


def toy_config(config: Mapping[str, Any], layers: int) -> dict:
    """The same architecture at toy widths: operator counts follow structure, not sizes."""
    c = dict(config)
    heads = int(c.get("num_attention_heads") or 8)
    group = max(1, heads // int(c.get("num_key_value_heads") or heads))
    c.update(num_attention_heads=2 * group, num_key_value_heads=2, vocab_size=512)
    c["hidden_size"] = c["num_attention_heads"] * 16
    if "head_dim" in c:  # otherwise hidden / heads = 16 already (Falcon's head_dim cannot be set)
        c["head_dim"] = 16
    for key in ("intermediate_size", "moe_intermediate_size", "ffn_dim", "ffn_hidden_size"):
        if key in c:
            c[key] = 32
    c["num_hidden_layers"] = layers
    if "layer_types" in c:
        c["layer_types"] = list(c["layer_types"])[:layers]
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
        if key in c:
            c[key] = 0 if c[key] is not None else None
    c.pop("quantization_config", None)
    return c


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(TABLE_PATH.read_text())


def decode_ops(config: Mapping[str, Any],
               count: Callable[[Mapping[str, Any]], DecodeOps | str] | None = None) -> DecodeOps:
    """Operators per decode step of this config's architecture: the table's row, else `count`'s
    (a `DecodeOps`, or why it has none), else the table's median."""
    model_type = str(config.get("model_type", ""))
    row = _table()["model_types"].get(model_type)
    if row is not None:
        return DecodeOps(row["per_layer"], row["outside"], "table")
    counted = count(config) if count is not None else "no counter given"
    if isinstance(counted, DecodeOps):
        return counted
    rows = list(_table()["model_types"].values())
    return DecodeOps(int(statistics.median(r["per_layer"] for r in rows)),
                     int(statistics.median(r["outside"] for r in rows)), f"fallback (median of the table; {counted})")
