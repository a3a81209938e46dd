"""Does the static-cache term predict what a shorter cache costs? (capacity.md)

Every row of the core and extended tiers was cut from a 1000-token generation, so its decode steps
attended over input + 1000 cache slots whatever its output length. The capacity tier measured the
same models with 100- and 300-token generations (smaller caches). This script fits the shipped
learner on the 1000-token rows only and predicts the capacity rows, two ways:

* `static cache` (wattlens now): each decode step reads every slot of the cache (`cache_tokens`);
* `context so far` (wattlens before 2026-11-22, session 7): each step reads the context up to
  its position, and the launch-bound term is 0.1 ms per layer-step for every architecture.

Same rows, same learner, same residual features otherwise. Rows with batch >= 8, graphed mode.
The measured pairs (same request, two cache sizes) are listed too: they need no model at all.

Usage (repo root): PYTHONPATH=src python3 results/predictor/capacity_check.py \
    --dataset data/predictor/energy_v1.csv --out results/predictor/capacity.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from wattlens.analysis import predictor as P

GEN_OF_THE_TRAINING_TIERS = 1000


def context_so_far_features(df: pd.DataFrame) -> np.ndarray:
    """The features as computed before the static-cache term and the operator counts existed."""
    eager = df.assign(mode="eager")  # eager: a dynamic cache, each step attends to the context so far
    X = P.feature_matrix(eager)
    idx = {k: i for i, k in enumerate(P.ALL_FEATURES)}
    X[:, idx["mode_is_eager"]] = 0.0  # the rows are graphed
    X[:, idx["decode_kernels"]] = X[:, idx["layer_steps"]] * 40  # 40 x KERNEL_S = the old 0.1 ms per layer-step
    return X


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, default=Path("data/predictor/energy_v1.csv"))
    ap.add_argument("--out", type=Path, default=Path("results/predictor/capacity.md"))
    ap.add_argument("--learner", default="physics_residual", help="default: the shipped learner")
    a = ap.parse_args(argv)
    df, mode, _ = P.one_serving_mode(P.load_dataset(a.dataset), "graphed")
    df, _ = P.kv_heads_read_once(df)  # the rows analyse.py and `wattlens train` fit on
    df = df[df["batch_size"] >= 8].reset_index(drop=True)
    gen = df["cache_tokens"] - df["input_tokens"]
    train, test = (gen == GEN_OF_THE_TRAINING_TIERS).to_numpy(), (gen < GEN_OF_THE_TRAINING_TIERS).to_numpy()
    if not test.any():
        raise SystemExit("no rows from generations shorter than 1000 tokens in the dataset")
    y = df["energy_per_prompt_j"].to_numpy(float)
    lines = ["# Shorter caches, predicted from 1000-token generations (capacity tier)", "",
             f"Learner `{a.learner}` fitted on the {int(train.sum())} rows cut from 1000-token generations "
             f"(batch >= 8, {mode}); scored on the {int(test.sum())} rows of 100- and 300-token generations "
             "(`results/predictor/campaign/parts-capacity/`), measured after the static-cache term was written. "
             "Random weights.", "",
             "| decode attention in the features | MAPE % | mean error % | n |", "|---|---|---|---|"]
    for label, X in (("static cache (every slot, each step)", P.feature_matrix(df)),
                     ("context so far (before)", context_so_far_features(df))):
        pred = P.make_learner(a.learner).fit(X[train], y[train]).predict(X[test])
        err = pred / y[test] - 1
        lines.append(f"| {label} | {100 * np.mean(np.abs(err)):.2f} | {100 * np.mean(err):+.2f} | {int(test.sum())} |")
    # Measured pairs: the same request (model, batch, input, output) cut from generations of two lengths.
    key = ["model", "overrides_json", "gpu_name", "batch_size", "input_tokens", "output_tokens"]
    short = df[test].assign(gen=gen[test])
    long_ = df[train].set_index(key)["energy_per_prompt_j"]
    pairs = short.join(long_.rename("long_j"), on=key).dropna(subset=["long_j"])
    pairs = pairs[pairs["output_tokens"].isin([100, 300])]
    lines += ["", "Measured: the same request in a smaller cache (no model involved), output 100 and 300 tokens.", "",
              "| model | batch | input | output | cache slots | J per prompt | cache input + 1000: J | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for r in pairs.sort_values(["model", "batch_size", "input_tokens", "output_tokens", "gen"]).itertuples():
        lines.append(f"| {r.model} | {r.batch_size} | {r.input_tokens} | {r.output_tokens} | {r.cache_tokens} | "
                     f"{r.energy_per_prompt_j:.2f} | {r.long_j:.2f} | {r.energy_per_prompt_j / r.long_j:.2f} |")
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:10]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
