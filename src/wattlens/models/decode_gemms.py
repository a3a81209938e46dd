"""The matrix multiplies of one decode step: every `nn.Linear` a token passes through, as shapes.

Why shapes and not only operator counts: cuBLAS picks a different GEMM algorithm for each
(rows, N, K) and, for the skinny matrices of a decode step, often splits K and adds a reduce kernel
after the GEMM. Which widths split is decided inside cuBLAS, per GPU: Llama-3.2-3B's widths split 5
GEMMs per layer on an H100 at batch 8, Helium-1's widths 1, whichever model's code runs them
(results/predictor/experiments/step_profile-h100-session13-shapes.json). A count of operators on
the CPU (`decode_ops`) cannot see this; a per-GPU table of measured GEMMs (`wattlens.hw.gemm_table`)
looked up at these shapes can.

The shapes are read from transformers' module on the meta device (no weights, no GPU): each Linear's
(out_features, in_features, bias) with how many of it the step runs. Routed experts are left out
(transformers runs them as one grouped GEMM over the experts a token picks, not as Linears), and so
is every Linear under a module named `experts`.

The shapes of every catalog model ship in `data/decode_linears.json`, keyed by a hash of the config
(regenerate with `python -m wattlens.models.decode_gemms`), so predicting for them needs no torch;
any other config is read on the spot when torch and transformers are installed.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).resolve().parent / "data" / "decode_linears.json"


@dataclass(frozen=True, order=True)
class LinearShape:
    """One Linear: y = x W^T (+ b), W of `out_features` x `in_features`; run `count` times a step."""

    out_features: int
    in_features: int
    bias: bool
    count: int


def _linear_shapes(config: Mapping[str, Any]) -> tuple[LinearShape, ...]:
    import torch

    from wattlens.models.introspect import _under_experts, build_on_meta

    _, model = build_on_meta(dict(config))
    seen: Counter[tuple[int, int, bool]] = Counter()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not _under_experts(name + ".x"):
            seen[(module.out_features, module.in_features, module.bias is not None)] += 1
    return tuple(sorted(LinearShape(n, k, b, c) for (n, k, b), c in seen.items()))


@lru_cache(maxsize=128)
def _cached(config_json: str) -> tuple[LinearShape, ...] | str:
    try:
        return _linear_shapes(json.loads(config_json))
    except ImportError as e:
        return f"{e.name or 'torch'} is not installed"
    except Exception as e:  # noqa: BLE001 - any failure to build means: no shapes
        return f"could not read its Linears: {type(e).__name__}: {e}"[:200]


def config_key(config: Mapping[str, Any]) -> str:
    """The shipped table's key of a config: a hash of its canonical JSON."""
    return hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(TABLE_PATH.read_text())["configs"]


def decode_linear_shapes(config: Mapping[str, Any]) -> tuple[LinearShape, ...] | str:
    """The Linears of one decode step of `config` (shipped table, else read with torch and
    transformers), or why there are none."""
    row = _table().get(config_key(config))
    if row is not None:
        return tuple(LinearShape(n, k, bool(b), c) for n, k, b, c in row["shapes"])
    return _cached(json.dumps(dict(config), sort_keys=True, default=str))


def distinct_shapes(configs: Iterable[Mapping[str, Any]]) -> list[tuple[int, int, bool]]:
    """Every distinct (out_features, in_features, bias) of these configs' decode steps: what to measure."""
    found = set()
    for config in configs:
        shapes = decode_linear_shapes(config)
        if isinstance(shapes, str):
            raise ValueError(f"{config.get('model_type')}: {shapes}")
        found |= {(s.out_features, s.in_features, s.bias) for s in shapes}
    return sorted(found)


def build_table() -> dict[str, Any]:
    """Read every catalog model's Linears (needs torch and transformers)."""
    import torch
    import transformers

    from wattlens.models.catalog import list_catalog, resolve_model

    configs = {}
    for entry in list_catalog():
        config = resolve_model(entry.name).config
        shapes = _linear_shapes(config)
        configs[config_key(config)] = {"name": entry.name, "shapes": [[s.out_features, s.in_features, int(s.bias),
                                                                       s.count] for s in shapes]}
    return {"what": "Linears of one decode step per catalog config: [out_features, in_features, bias, count] "
                    "(wattlens.models.decode_gemms)",
            "torch": torch.__version__, "transformers": transformers.__version__, "configs": configs}


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    table = build_table()
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in table.pop("configs").items())
    head = json.dumps(table, indent=1)[:-2]  # without the closing brace
    TABLE_PATH.write_text(f'{head},\n "configs": {{\n{rows}\n }}\n}}\n')
    print(f"wrote {len(json.loads(TABLE_PATH.read_text())['configs'])} configs to {TABLE_PATH}")
