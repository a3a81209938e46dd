"""Experiment (not shipped): the same trials measured again on another physical GPU of the same kind.

Every device call may land on a different card. The dataset's rows come from 15 cards (7 H100,
8 H200), and a family is often measured on one or two of them, so a card's own energy offset is
part of what leave-one-architecture-out asks the predictor to get right. Session 9 ran six
campaign parts a second time, unchanged, on three cards not seen before (`campaign/store/repro/`,
not part of the dataset): H100 core parts 01 and 05, extended part 00 and families-2 part 12, and
H200 core parts 00 and 01. This script matches
each new row to the dataset row of the same request (model, variant, GPU, batch, input, output,
cache) and reports the energy and time differences, per trial and pooled.

Usage (repo root): PYTHONPATH=src python3 results/predictor/experiments/reproducibility.py \
    > results/predictor/experiments/reproducibility.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from wattlens.analysis import predictor as P
from wattlens.analysis.predict_dataset import rows_from_runs
from wattlens.store.export import results_from_json

STORE = Path("results/predictor/campaign/store")
KEY = ["model", "overrides_json", "gpu_name", "batch_size", "input_tokens", "output_tokens", "cache_tokens"]


def _run_card(run) -> dict:
    """The card a run used (first 8 hex digits of its UUID), its idle power (W) and temperature (°C) at the start."""
    start = (run.environment.get("gpu_state_start") or [{}])[0]
    return {"card": run.environment["gpus"][0]["uuid"][4:12], "idle_w": run.idle_power_w,
            "temp_c": start.get("temperature_c")}


def rows_with_cards(paths) -> pd.DataFrame:
    """Dataset rows of the exports, each with the card that ran it (`_run_card`'s columns)."""
    rows = []
    for p in paths:
        runs, trials = results_from_json(p)
        card = {r.run_id: _run_card(r) for r in runs}
        for row in rows_from_runs(runs, trials):
            rows.append({**row, **card[row["run_id"]], "export": p.name})
    df = P.normalize_dataset(pd.DataFrame(rows))
    df["overrides_json"] = df["overrides_json"].fillna("").astype(str)
    return df


def main() -> int:
    old = rows_with_cards(sorted(STORE.glob("*.json.gz")))
    new = rows_with_cards(sorted((STORE / "repro").glob("*.json.gz")))
    m = new.merge(old, on=KEY, suffixes=("_new", "_old"))
    m["d_energy"] = m["energy_per_prompt_j_new"] / m["energy_per_prompt_j_old"] - 1
    m["d_time"] = m["time_s_new"] / m["time_s_old"] - 1
    m["gpu"] = m["gpu_name"].str.replace("NVIDIA ", "").str.replace(" 80GB HBM3", "")
    print("# The same trials on another card (session 9; experiment, not shipped)\n")
    print(f"Random weights, `graphed` mode, the campaign's sweep specs unchanged. {len(new)} new rows, {len(m)} matched "
          "to a dataset row of the same request. Differences are new / old - 1 of the per-prompt energy and of the "
          "request time; sd is over the output lengths of one trial (the counter's and the run's noise).\n")
    print("| GPU | old card | new card | config | batch | input | rows | energy diff % (mean, sd) | time diff % |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = ["gpu", "card_old", "card_new", "model", "overrides_json", "batch_size", "input_tokens"]
    for k, g in m.groupby(groups):
        config = k[3] + (f" {k[4]}" if k[4] else "")
        print(f"| {k[0]} | {k[1]} | {k[2]} | {config} | {k[5]} | {k[6]} | {len(g)} | "
              f"{100 * g['d_energy'].mean():+.1f} ({100 * g['d_energy'].std():.1f}) | {100 * g['d_time'].mean():+.1f} |")
    print("\n## Pooled, per pair of cards\n")
    print("| GPU | old card | new card | rows | mean energy diff % | mean abs energy diff % | mean abs time diff % |")
    print("|---|---|---|---|---|---|---|")
    pair_means = []
    for k, g in m.groupby(["gpu", "card_old", "card_new"]):
        pair_means.append(g["d_energy"].mean())
        print(f"| {k[0]} | {k[1]} | {k[2]} | {len(g)} | {100 * g['d_energy'].mean():+.2f} | "
              f"{100 * g['d_energy'].abs().mean():.2f} | {100 * g['d_time'].abs().mean():.2f} |")
    rms = float(np.sqrt(np.mean(np.square(pair_means))))
    print(f"\nRoot mean square of the {len(pair_means)} pairs' mean energy differences: {100 * rms:.2f}%. If each card's "
          f"offset scatters independently around the mean of all cards, one card sits about {100 * rms / np.sqrt(2):.2f}% "
          "from it (RMS / sqrt 2).")
    big = m["batch_size"] >= 8
    print(f"\nAll matched rows at batch >= 8 ({int(big.sum())}): mean abs energy difference "
          f"{100 * m.loc[big, 'd_energy'].abs().mean():.2f}%, mean abs time difference "
          f"{100 * m.loc[big, 'd_time'].abs().mean():.2f}%; per-trial mean energy differences range "
          f"{100 * m.groupby(groups)['d_energy'].mean().min():+.1f}% to {100 * m.groupby(groups)['d_energy'].mean().max():+.1f}%.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
