"""Count the operators of one decode step as the `graphed` loop runs it, on the CPU.

The predictor's launch-bound term charges each kernel of a decode step a few microseconds, so the
count has to be the one the GPU runs: the lean loop's step (`hf._LeanDecoder`) with its static
cache (`index_copy_` into fixed slots), its explicit masks, its own decode attention (each KV head
read once), the sampling and the step's bookkeeping. Until session 17 the count came from a plain
`model(...)` call with a dynamic cache instead; against the kernels profiled on an H100
(results/predictor/experiments/step_profile-h100-session13.json) it missed 5-28% of them,
differently per architecture.

How: the architecture at toy widths (`models.decode_ops.toy_config`), bf16 as measured, two- and
four-layer copies, one prefill, then one decode step under a dispatch mode that counts every ATen
call that does work. Not counted: views, and calls that hand back one of their inputs unchanged
(`to` a dtype it already has, `contiguous` on a contiguous tensor, dropout in eval): no kernel runs.
Regenerate the shipped table with `python -m wattlens.backends.step_ops`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from wattlens.models.decode_ops import TABLE_PATH, VIEW_OPS, DecodeOps, toy_config

TOY_BATCH, TOY_PROMPT_TOKENS, TOY_GEN_TOKENS = 2, 20, 8
# MoE: the experts kernel `auto` picks for `graphed` steps on a GPU (on the CPU `auto` keeps the model's own)
GPU_GRAPHED_DECODE_EXPERTS = "grouped_mm"


def _returns_an_input(func, args, out) -> bool:
    """True when a non-mutating call returned one of its input tensors (no kernel ran)."""
    import torch

    if func._schema.is_mutable or not isinstance(out, torch.Tensor):
        return False
    return any(isinstance(a, torch.Tensor) and a is out for a in args)


def _ops_in_one_decode_step(config: Mapping[str, Any], layers: int) -> int:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from wattlens.backends.hf import HFBackend
    from wattlens.models.build import build_model
    from wattlens.models.catalog import ModelSource

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.__name__.startswith(VIEW_OPS) and not _returns_an_input(func, args, out):
                self.n += 1
            return out

    toy = ModelSource(name=f"toy {config.get('model_type')}", config=toy_config(config, layers), weights="random",
                      path=None, hf_id=None, licence=None)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no SDPA attention; using 'eager'": as on the GPU
        model = build_model(toy, "bf16", "cpu")
    backend = HFBackend(model, "graphed", use_cuda_graph=False, decode_experts=GPU_GRAPHED_DECODE_EXPERTS)
    backend.prepare(TOY_BATCH, TOY_PROMPT_TOKENS, TOY_GEN_TOKENS)
    lean = backend._lean
    prompt = torch.randint(1, 500, (TOY_BATCH, TOY_PROMPT_TOKENS))
    counter = CountOps()
    with torch.inference_mode(), lean._own_attention():
        lean._prefill(prompt)
        lean.step()  # a first step, so nothing lazily set up is counted
        with counter:
            lean.step()
    return counter.n


def count_decode_ops(config: Mapping[str, Any]) -> DecodeOps:
    """Count on the CPU (needs torch and transformers; a few seconds per architecture)."""
    two, four = _ops_in_one_decode_step(config, 2), _ops_in_one_decode_step(config, 4)
    per_layer = round((four - two) / 2)
    return DecodeOps(per_layer=per_layer, outside=two - 2 * per_layer, source="counted")


@lru_cache(maxsize=64)
def _counted(config_json: str) -> DecodeOps | str:
    try:
        return count_decode_ops(json.loads(config_json))
    except ImportError as e:
        return f"{e.name or 'torch'} is not installed"
    except Exception as e:  # noqa: BLE001 - any failure to build or run the toy copy means: no count
        return f"could not count it: {type(e).__name__}: {e}"[:200]


def counted_or_reason(config: Mapping[str, Any]) -> DecodeOps | str:
    """The count for `models.decode_ops.decode_ops(config, count=...)`, or why there is none (cached)."""
    return _counted(json.dumps(dict(config), sort_keys=True, default=str))


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
        print(f"{model_type}: {ops.per_layer} per layer + {ops.outside}", flush=True)
    return {"what": "ATen operators that run (views and calls returning an input excluded) of one decode step of "
                    "the graphed loop, CPU, bf16, toy widths: per layer and outside the layers "
                    "(wattlens.backends.step_ops)",
            "torch": torch.__version__, "transformers": transformers.__version__,
            "model_types": dict(sorted(table.items()))}


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    table = build_table()
    TABLE_PATH.parent.mkdir(exist_ok=True)
    TABLE_PATH.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {TABLE_PATH}")
