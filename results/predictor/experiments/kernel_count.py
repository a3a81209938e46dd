"""Experiment (not shipped): does the number of kernels per decode step explain out-of-family error?

The physics model's launch-bound floor charges every architecture the same time per layer-step.
Here each dataset configuration's operators per decode step are counted on the CPU (a shrunken
copy of its config, 1 and 2 layers, every ATen call except views), and the `layer_steps` feature is
replaced by decode steps x (ops per layer x layers + ops outside the layers) / 40 (40 = a Llama
layer, so Llama rows keep their values). Leave-one-architecture-out, batch >= 8, as in table_loao.md.

Usage (repo root): PYTHONPATH=src python3 results/predictor/experiments/kernel_count.py > results/predictor/experiments/kernel_count.md
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoConfig, AutoModelForCausalLM

from wattlens.analysis import predictor as P
from wattlens.analysis.predict_features import ALL_FEATURES

VIEW_OPS = ("view", "_unsafe_view", "expand", "reshape", "t.", "transpose", "permute", "unsqueeze", "squeeze",
            "slice", "select", "alias", "split", "as_strided", "unbind", "detach")


class CountOps(TorchDispatchMode):
    """Counts ATen calls that launch work (views and aliases excluded)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.__name__.startswith(VIEW_OPS):
            self.n += 1
        return func(*args, **(kwargs or {}))


def shrunken(config: dict, layers: int) -> dict:
    """The same architecture at toy sizes: operator counts depend on structure, not widths."""
    c = dict(config)
    heads = c.get("num_attention_heads", 8)
    group = max(1, heads // (c.get("num_key_value_heads") or heads))
    c.update(num_attention_heads=2 * group, num_key_value_heads=2, head_dim=16, vocab_size=512)
    c["hidden_size"] = c["num_attention_heads"] * 16
    for k in ("intermediate_size", "moe_intermediate_size", "ffn_dim"):
        if k in c:
            c[k] = 32
    c["num_hidden_layers"] = layers
    if "layer_types" in c:
        c["layer_types"] = c["layer_types"][:layers]
    c.pop("quantization_config", None)
    return c


def decode_step_ops(config: dict, layers: int) -> int:
    c = shrunken(config, layers)
    conf = AutoConfig.for_model(c.pop("model_type"), **c)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32).eval()
    with torch.inference_mode():
        cache = model(input_ids=torch.randint(0, 500, (2, 20)), use_cache=True).past_key_values
        counter = CountOps()
        with counter:
            model(input_ids=torch.randint(0, 500, (2, 1)), past_key_values=cache, use_cache=True)
    return counter.n


def main() -> None:
    warnings.filterwarnings("ignore")
    df = P.load_dataset("data/predictor/energy_v1.csv")
    keys = (df["model"] + "|" + df["overrides_json"]).tolist()
    ops = {}
    for key in sorted(set(keys)):
        model, overrides = key.split("|", 1)
        cfg = P.config_for_row(model, overrides)
        one, two = decode_step_ops(cfg, 1), decode_step_ops(cfg, 2)
        ops[key] = (two - one, one - (two - one))
    X = P.feature_matrix(df)
    y = df["energy_per_prompt_j"].to_numpy(float)
    groups = df["model"].map(P.model_family).to_numpy()
    keep = df["batch_size"].to_numpy() >= 8
    per_layer = np.array([ops[k][0] for k in keys], float)
    outside = np.array([ops[k][1] for k in keys], float)
    col, layers, steps = (ALL_FEATURES.index(n) for n in ("layer_steps", "num_layers", "decode_steps"))
    X_kernels = X.copy()
    X_kernels[:, col] = X[:, steps] * (per_layer * X[:, layers] + outside) / 40.0
    print("# Kernels per decode step as the launch-bound feature (experiment, not shipped)\n")
    by_model = {}
    for k, v in sorted(ops.items()):
        by_model.setdefault(k.split("|")[0], set()).add(v)
    print("Operators per decode step (CPU count, toy widths; the same for every variant of a model): " + "; ".join(
        f"{m}: " + ", ".join(f"{a} per layer + {b}" for a, b in sorted(v)) for m, v in by_model.items()) + "\n")
    print("| launch feature | learner | LOAO MAPE % (batch >= 8) | " + " | ".join(sorted(set(groups))) + " |")
    print("|---|---|---|" + "---|" * len(set(groups)))
    for name, XX in (("layer-steps (shipped)", X), ("kernel-steps", X_kernels)):
        for learner in ("physics", "physics_linear"):
            (r,) = P.held_out_cv(XX, y, groups, [learner])
            fam = [P.regression_metrics(y[keep & (groups == g)], r.y_pred_j[keep & (groups == g)])["mape_pct"]
                   for g in sorted(set(groups))]
            print(f"| {name} | {learner} | {r.pooled(keep)['mape_pct']:.2f} | " + " | ".join(f"{v:.1f}" for v in fam) + " |")


if __name__ == "__main__":
    main()
