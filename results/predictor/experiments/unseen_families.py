"""The shipped predictor on architectures measured after it was fitted (sessions 12, 13 and 15; not a fit).

The predictor in `src/wattlens/analysis/data/default_predictor.json` at commit 15abfe3 was fitted on the
3950-row dataset of session 11, before OLMo-2-7B and Persimmon-8B (campaign tier `families-5`) were
measured: no choice of features, bases or learner saw their rows. This script predicts each of their
rows with that file, unchanged, and scores it as the held-out tables do (MAPE at batch >= 8), per
configuration, GPU, batch and prompt; then the same with the request time.

    git show 15abfe3:src/wattlens/analysis/data/default_predictor.json > /tmp/predictor-15abfe3.json
    PYTHONPATH=src python3 results/predictor/experiments/unseen_families.py /tmp/predictor-15abfe3.json \\
        results/predictor/campaign/store/*-families-5-p*.json.gz > results/predictor/experiments/unseen_families.md

Session 13 did the same for Phi-3-mini, Qwen1.5-MoE-A2.7B and Helium-1 (tier `families-6`) with the
predictor of 94b936a (fitted on the 4153-row dataset of session 12):

    git show 94b936a:src/wattlens/analysis/data/default_predictor.json > /tmp/predictor-94b936a.json
    PYTHONPATH=src python3 results/predictor/experiments/unseen_families.py /tmp/predictor-94b936a.json \\
        results/predictor/campaign/store/*-families-6-p*.json.gz > results/predictor/experiments/unseen_families_6.md

Session 15 did the same for SmolLM3-3B, Granite's and Apertus' class defaults and ERNIE-4.5-21B-A3B
(tier `families-7`, with ERNIE's re-run after the router fix) with the predictor of e50ebe7 (fitted on the
4486-row dataset of session 14; its features are this version's):

    git show e50ebe7:src/wattlens/analysis/data/default_predictor.json > /tmp/predictor-e50ebe7.json
    PYTHONPATH=src python3 results/predictor/experiments/unseen_families.py /tmp/predictor-e50ebe7.json \\
        results/predictor/campaign/store/*-families-7-*.json.gz > results/predictor/experiments/unseen_families_7.md

Session 16 did the same for Jais-2-8B, nanochat's, DiffLlama's and Seed-OSS's class defaults and GPT-NeoX-20B
(tier `families-8`) with the predictor of 1335c24 (fitted on the 4718-row dataset of session 15):

    git show 1335c24:src/wattlens/analysis/data/default_predictor.json > /tmp/predictor-1335c24.json
    PYTHONPATH=src python3 results/predictor/experiments/unseen_families.py /tmp/predictor-1335c24.json \\
        results/predictor/campaign/store/*-families-8-*.json.gz > results/predictor/experiments/unseen_families_8.md

A predictor runs only with the features it was fitted on. Session 14 added two (the decode steps'
Linears and their GEMM time) and changed the time bases, so the first two commands now run in a
checkout of 22807f3, the last commit with the older features (`git worktree add /tmp/wl-22807f3
22807f3`, then the commands there with this repository's store paths); there they reproduce both
reports byte for byte. The third runs here.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from wattlens.analysis import predictor as P
from wattlens.analysis.predict_dataset import DEFAULT_MAX_REL_UNCERTAINTY, rows_from_runs
from wattlens.store.export import results_from_json


def residual_members_table(df: pd.DataFrame, model) -> str:
    """Energy MAPE of the physics alone, of each residual member alone and of each mean of some, on the
    rows of `df`, in all and per model: how sessions 12 and 13 chose the shipped residual."""
    X = P.feature_matrix(df)
    y = df["energy_per_prompt_j"].to_numpy()
    physics, logs = model.physics.predict(X), model.residual.member_log_factors(X)
    masks = {name: (df["model"] == name).to_numpy() for name in sorted(df["model"].unique())}

    def row(label: str, pred: np.ndarray) -> str:
        err = np.abs(pred / y - 1) * 100
        return f"| {label} | {err.mean():.2f} | " + " | ".join(f"{err[m].mean():.2f}" for m in masks.values()) + " |"

    lines = ["| residual | all | " + " | ".join(masks) + " |", "|---|---|" + "---|" * len(masks),
             row("none (physics alone)", physics)]
    for k in range(1, len(logs) + 1):
        for combo in itertools.combinations(logs, k):
            lines.append(row(" + ".join(combo), physics * np.exp(np.mean([logs[c] for c in combo], axis=0))))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictor", type=Path)
    ap.add_argument("exports", nargs="+", type=Path)
    args = ap.parse_args()
    rows = []
    for path in args.exports:
        runs, trials = results_from_json(path)
        rows += rows_from_runs(runs, trials, max_rel_uncertainty=DEFAULT_MAX_REL_UNCERTAINTY)
    df = P.normalize_dataset(pd.DataFrame(rows), "exports")
    df = df[df["batch_size"] >= 8].reset_index(drop=True)
    bundle = P.load_bundle(args.predictor)
    pred = bundle.predict_features(P.feature_matrix(df))
    df["energy_err"] = pred["energy_per_prompt_j"] / df["energy_per_prompt_j"] - 1
    df["time_err"] = pred["time_s"] / df["time_s"] - 1
    lo, hi = np.exp(bundle.log_interval[0]), np.exp(bundle.log_interval[1])
    ratio = df["energy_per_prompt_j"] / pred["energy_per_prompt_j"]
    df["inside"] = (ratio >= 1 / hi) & (ratio <= 1 / lo)

    def summary(d: pd.DataFrame) -> str:
        return (f"{len(d)} | {d.energy_err.abs().mean() * 100:.2f} | {d.energy_err.mean() * 100:+.1f} | "
                f"{d.time_err.abs().mean() * 100:.2f} | {d.time_err.mean() * 100:+.1f} | {d.inside.mean() * 100:.0f}%")

    print(f"# A shipped predictor on architectures it never saw ({bundle.learner}, "
          f"{bundle.trained_on.get('rows', '?')} training rows)\n")
    print("Made by `results/predictor/experiments/unseen_families.py` (its docstring has the command). Random "
          "weights. Rows at batch >= 8, per-prompt energy and request time; error = predicted / measured - 1; "
          f"'in interval': the measured energy inside the predictor's interval (x{lo:.2f} .. x{hi:.2f}).\n")
    print("| rows | n | energy MAPE % | energy mean error % | time MAPE % | time mean error % | in interval |")
    print("|---|---|---|---|---|---|---|")
    print(f"| all | {summary(df)} |")
    kept, _ = P.kv_heads_read_once(df.assign(row_index=np.arange(len(df))))
    if len(kept) < len(df):  # rows a fit would leave out (their attention reads the KV cache more than once)
        dropped = sorted(set(df["model"]) - set(kept["model"]))
        print(f"| all a fit keeps (without {', '.join(dropped)}: its attention reads the KV cache more than once "
              f"per step) | {summary(df.iloc[kept['row_index'].to_numpy()])} |")
    for model, d in df.groupby("model"):
        print(f"| {model} | {summary(d)} |")
    residual = getattr(bundle.model, "residual", None)
    if isinstance(residual, P.EnsembleResidual) and len(residual.members) > 1:
        print("\nThe residual's members alone and averaged (energy MAPE %, same rows):\n")
        print(residual_members_table(df, bundle.model))
    print()
    print("| model | GPU | batch | prompt | n | energy MAPE % | energy mean error % | time MAPE % | time mean error % "
          "| in interval |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (model, gpu, batch, prompt), d in df.groupby(["model", "gpu_name", "batch_size", "input_tokens"]):
        print(f"| {model} | {gpu} | {batch} | {prompt} | {summary(d)} |")


if __name__ == "__main__":
    main()
