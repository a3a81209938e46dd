"""Operators one decode step launches, per architecture: the predictor's launch-bound term.

A decode step of a small model is bound by how many kernels it runs, not by bytes: each kernel
costs a few microseconds however little it reads. Architectures differ a lot here: an OPT layer
runs 17 operators per decode step, a Llama layer 40 and a Qwen3-MoE layer 78 (counted as below),
so charging every architecture the same time per layer over-predicts OPT by ~30% at batch 8
(results/predictor/README.md).

The count is made on the CPU: the architecture at toy widths (same structure, tiny matrices),
one prefill, then one decode step under a dispatch mode that counts every ATen call that does
work (views and aliases excluded). Two- and four-layer copies give the per-layer count (averaged
over a pair, for models that alternate sliding and full layers) and the rest (embedding, final
norm, LM head). A CPU count is a proxy for the GPU's kernels (fused or
split differently there), used only through a fitted time per operator.

Counts for the catalog's architectures ship in `data/decode_ops.json` (regenerate with
`python -m wattlens.models.decode_ops`), so prediction needs no torch. An architecture not in the
table is counted on the spot when torch and transformers are installed; otherwise the table's
median stands in, and `DecodeOps.source` says so.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
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


def _toy_config(config: Mapping[str, Any], layers: int) -> dict:
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


def _ops_in_one_decode_step(config: Mapping[str, Any], layers: int) -> int:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoModelForCausalLM

    from wattlens.models.build import transformers_config

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.__name__.startswith(VIEW_OPS):
                self.n += 1
            return func(*args, **(kwargs or {}))

    conf = transformers_config(_toy_config(config, layers))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32).eval()
    with torch.inference_mode():
        cache = model(input_ids=torch.randint(0, 500, (2, 20)), use_cache=True).past_key_values
        counter = CountOps()
        with counter:
            model(input_ids=torch.randint(0, 500, (2, 1)), past_key_values=cache, use_cache=True)
    return counter.n


def count_decode_ops(config: Mapping[str, Any]) -> DecodeOps:
    """Count on the CPU (needs torch and transformers; about a second per architecture)."""
    two, four = _ops_in_one_decode_step(config, 2), _ops_in_one_decode_step(config, 4)
    per_layer = round((four - two) / 2)
    return DecodeOps(per_layer=per_layer, outside=two - 2 * per_layer, source="counted")


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(TABLE_PATH.read_text())


@lru_cache(maxsize=64)
def _counted(config_json: str) -> DecodeOps | str:
    """The count, or why there is none (no torch / transformers, or an architecture they cannot build)."""
    try:
        return count_decode_ops(json.loads(config_json))
    except ImportError as e:
        return f"{e.name or 'torch'} is not installed"
    except Exception as e:  # noqa: BLE001 - any failure to build or run the toy copy means: no count
        return f"could not count it: {type(e).__name__}: {e}"[:200]


def decode_ops(config: Mapping[str, Any]) -> DecodeOps:
    """Operators per decode step of this config's architecture (table, else counted, else median)."""
    model_type = str(config.get("model_type", ""))
    row = _table()["model_types"].get(model_type)
    if row is not None:
        return DecodeOps(row["per_layer"], row["outside"], "table")
    counted = _counted(json.dumps(dict(config), sort_keys=True, default=str))
    if isinstance(counted, DecodeOps):
        return counted
    rows = list(_table()["model_types"].values())
    return DecodeOps(int(statistics.median(r["per_layer"] for r in rows)),
                     int(statistics.median(r["outside"] for r in rows)), f"fallback (median of the table; {counted})")


def build_table() -> dict[str, Any]:
    """Count every catalog architecture (one config per model_type: the first catalog entry)."""
    import torch
    import transformers

    from wattlens.models.catalog import list_catalog, resolve_model

    table: dict[str, Any] = {}
    for entry in list_catalog():
        config = resolve_model(entry.name).config
        model_type = config["model_type"]
        if model_type in table:
            continue
        ops = count_decode_ops(config)
        table[model_type] = {"per_layer": ops.per_layer, "outside": ops.outside, "counted_on": entry.name}
    return {"what": "ATen operators (views excluded) of one decode step, CPU, toy widths: per layer and outside "
                    "the layers (wattlens.models.decode_ops)",
            "torch": torch.__version__, "transformers": transformers.__version__,
            "model_types": dict(sorted(table.items()))}


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    TABLE_PATH.parent.mkdir(exist_ok=True)
    TABLE_PATH.write_text(json.dumps(build_table(), indent=1) + "\n")
    print(TABLE_PATH.read_text())
