"""Experiment (session 18): six small base models measured again, one after another on one card per GPU type.

Leave-one-architecture-out (LOAO) holds out a family whose rows were mostly measured on one card per GPU
type, so a card's own energy offset is part of what the predictor is asked to get right. Four of the six
models were picked because their families are far off when held out (Helium-1 +16%, nanochat +20%,
StableLM -7%, Llama -5% on average); ERNIE-4.5-0.3B and Qwen2.5-0.5B, of similar size, are there for
comparison. Each ran with the campaign's protocol (ctx 128, batches 8 and 64, outputs read along one
1000-token generation, 2 repeats, 1 warm-up) in one call per GPU type: `campaign/parts-samecard/`,
exports in `campaign/store/samecard/` (not part of the dataset). Random weights.

The report:
1. each model's new rows against the dataset's rows of the same requests (another card);
2. energy ratios between models on one card, in the dataset (two cards) and as predicted held out;
3. the shipped learner's held-out predictions (seed 0, the LOAO table's) scored against both cards;
4. what knowing the card would give: its idle power (recorded before every run) as a seventh physics
   basis, and a decode step's energy fitted on its measured kernel times with and without it.

Usage (repo root): PYTHONPATH=src python3 results/predictor/experiments/same_card.py \
    > results/predictor/experiments/same_card.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from wattlens.analysis import predictor as P

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from reproducibility import KEY, rows_with_cards
from step_ops_vs_gpu import PROFILES, h100_batch8_rows, phase_table

ROOT = HERE.parents[2]
STORE = ROOT / "results/predictor/campaign/store"
NEW = sorted((STORE / "samecard").glob("*.json.gz"))
PAIRS = [("helium-1-preview", "stablelm-3b-4e1t"), ("nanochat-0.26b", "ernie-4.5-0.3b"),
         ("nanochat-0.26b", "qwen2.5-0.5b"), ("llama-3.2-1b", "qwen2.5-0.5b")]


def gpu_label(name: str) -> str:
    return name.replace("NVIDIA ", "").replace(" 80GB HBM3", "")


def dataset():
    """The LOAO tables' rows (graphed mode, DiffLlama's rows left out) and their feature matrix."""
    df, _, _ = P.one_serving_mode(P.load_dataset(ROOT / "data/predictor/energy_v1.csv"))
    df, _ = P.kv_heads_read_once(df)
    df = df.reset_index(drop=True)
    df["overrides_json"] = df["overrides_json"].fillna("").astype(str)
    return df, P.feature_matrix(df)


def held_out(X, y, groups, seed: int = 0) -> np.ndarray:
    return P.held_out_cv(X, y, groups, ["physics_residual"], seed=seed)[0].y_pred_j


def held_out_time(X, time_s, groups) -> np.ndarray:
    """The shipped time model's request time (s), each family predicted by a fit without it."""
    pred = np.full(len(time_s), np.nan)
    for _, train, test in P.leave_one_group_out_indices(np.asarray(groups)):
        pred[test] = P.time_model_for("physics_residual").fit(X[train], time_s[train]).predict(X[test])
    return pred


def held_out_with_idle_basis(X, y, groups, idle_excess_w, time_s, seed: int = 0) -> np.ndarray:
    """LOAO with one more physics basis: the card's idle power above its GPU type's median x the request's
    time per prompt (J; its coefficient is fitted >= 0 like the others). The residual's trees see the
    column too. The request time is the time model's held-out prediction (`held_out_time`), so no
    held-out row's measured time enters. Done by patching `physics_basis` and `regime_features` for this run only."""
    n = X.shape[1]
    extra = (idle_excess_w * time_s / X[:, P._IDX["batch_size"]])[:, None]
    shipped_basis, shipped_regime = P.physics_basis, P.regime_features

    def basis(Xq):
        Xq = np.atleast_2d(Xq)
        return np.column_stack([shipped_basis(Xq[:, :n]), Xq[:, n:]])

    def regime(Xq, theta):  # shares of the six shipped bases, as shipped
        return shipped_regime(np.atleast_2d(Xq)[:, :n], np.asarray(theta)[:P.N_PHYSICS_BASES])

    with mock.patch.object(P, "physics_basis", basis), mock.patch.object(P, "regime_features", regime):
        return held_out(np.hstack([X, extra]), y, groups, seed)


def card_vs_card(new: pd.DataFrame, old: pd.DataFrame) -> tuple[float, float]:
    """Prints section 1; returns the largest |energy| and |time| difference of a (GPU, model, batch), in %."""
    m = new.merge(old, on=KEY, suffixes=("_new", "_old"))
    m["d_energy"] = m["energy_per_prompt_j_new"] / m["energy_per_prompt_j_old"] - 1
    m["d_time"] = m["time_s_new"] / m["time_s_old"] - 1
    m["gpu"] = m["gpu_name"].map(gpu_label)
    print("## 1. The same requests on another card\n")
    print("Differences are new / dataset - 1, mean over the matched output lengths. Idle power and temperature: "
          "recorded at the start of each run (mean over the runs behind the rows).\n")
    print("| GPU | model | batch | rows | dataset card (idle W, °C) | new card (idle W, °C) | energy diff % | "
          "time diff % |")
    print("|---|---|---|---|---|---|---|---|")
    means = []
    for (gpu, model, batch), g in m.groupby(["gpu", "model", "batch_size"]):
        means.append(g["d_energy"].mean())
        print(f"| {gpu} | {model} | {batch} | {len(g)} | {g['card_old'].iloc[0]} ({g['idle_w_old'].mean():.0f}, "
              f"{g['temp_c_old'].mean():.0f}) | {g['card_new'].iloc[0]} ({g['idle_w_new'].mean():.0f}, "
              f"{g['temp_c_new'].mean():.0f}) | {100 * g['d_energy'].mean():+.1f} | {100 * g['d_time'].mean():+.1f} |")
    rms = float(np.sqrt(np.mean(np.square(means))))
    largest_time = 100 * float(m.groupby(["gpu", "model", "batch_size"])["d_time"].mean().abs().max())
    print(f"\nEnergy differs by {100 * min(means):+.1f}% to {100 * max(means):+.1f}% (root mean square "
          f"{100 * rms:.1f}%, so one card about {100 * rms / np.sqrt(2):.1f}% from the mean of two); the time by at most "
          f"{largest_time:.1f}%. Session 9's unselected "
          "pairs (reproducibility.md) gave 2.7% root mean square: four of these models were chosen for their "
          "errors, so their first cards may be the unlucky ones.\n")
    return 100 * float(np.max(np.abs(means))), largest_time


def ratios(new: pd.DataFrame, df: pd.DataFrame) -> None:
    """`df`: the dataset's rows with their held-out predictions (`pred`)."""
    print("## 2. Energy ratios between models: one card, two cards, predicted\n")
    print("Mean over output lengths of per-prompt energy A / B at ctx 128 (1128 cache slots). Dataset: each model's "
          "rows from its own card; predicted: the shipped learner with A's and B's families held out.\n")
    print("| GPU | A / B | batch | new card | dataset | predicted held out |")
    print("|---|---|---|---|---|---|")
    key = ["batch_size", "output_tokens"]
    for gpu in sorted(new["gpu_name"].unique()):
        n = new[new["gpu_name"] == gpu]
        o = df[(df["gpu_name"] == gpu) & (df["input_tokens"] == 128) & (df["cache_tokens"] == 1128)
               & (df["overrides_json"] == "")].drop_duplicates(["model", *key])
        for a, b in PAIRS:
            def ratio(t, col="energy_per_prompt_j", a=a, b=b):
                return (t[t["model"] == a].set_index(key)[col] / t[t["model"] == b].set_index(key)[col]) \
                    .dropna().groupby(level=0).mean()
            r_new, r_old = ratio(n), ratio(o)
            r_pred = ratio(o, "pred")
            for batch in r_new.index:
                print(f"| {gpu_label(gpu)} | {a} / {b} | {batch} | "
                      f"{r_new[batch]:.3f} | {r_old.get(batch, np.nan):.3f} | {r_pred.get(batch, np.nan):.3f} |")
    print()


def scored_on_both(new: pd.DataFrame, df: pd.DataFrame) -> pd.Series:
    """Prints section 3; returns each model's mean signed error (%) against the new card."""
    m = new.merge(df[[*KEY, "pred", "energy_per_prompt_j"]], on=KEY, suffixes=("_new", "_old"))
    m = m[m["batch_size"] >= 8]
    m["err_old"] = 100 * (m["pred"] / m["energy_per_prompt_j_old"] - 1)
    m["err_new"] = 100 * (m["pred"] / m["energy_per_prompt_j_new"] - 1)
    print("## 3. The held-out predictions scored on both cards\n")
    print("The shipped learner, each family held out (seed 0: the LOAO table's predictions), against the dataset's "
          "measurement and the new card's of the same request (batch >= 8).\n")
    print("| model | rows | signed % (dataset card) | signed % (new card) | MAPE dataset card | MAPE new card |")
    print("|---|---|---|---|---|---|")
    for model, g in m.groupby("model"):
        print(f"| {model} | {len(g)} | {g['err_old'].mean():+.1f} | {g['err_new'].mean():+.1f} | "
              f"{g['err_old'].abs().mean():.2f} | {g['err_new'].abs().mean():.2f} |")
    print(f"| all | {len(m)} | {m['err_old'].mean():+.1f} | {m['err_new'].mean():+.1f} | "
          f"{m['err_old'].abs().mean():.2f} | {m['err_new'].abs().mean():.2f} |\n")
    return m.groupby("model")["err_new"].mean()


def phase_fit_with_idle(df: pd.DataFrame, states: pd.DataFrame) -> float:
    """step_ops_vs_gpu.md's second table (decode-step energy on its profiled kernel times and GB moved,
    H100, batch 8, prompt 128), again with the card's idle excess x step time as one more basis;
    prints both fits and returns the latter's mean absolute error (%)."""
    cases = [c for p in PROFILES for c in json.loads(p.read_text())["cases"]]
    rows = h100_batch8_rows(df)
    idle = rows.groupby("model")["run_id"].agg(lambda s: states.loc[sorted(set(s)), "idle_w"].mean())
    t = phase_table(rows, cases)
    idle_w = t["config"].map(idle)
    t["idle_excess_s"] = (idle_w - idle_w.median()) * t["step_s"]
    y = t["step_j"].to_numpy(float)
    print("## 4. What knowing the card would give\n")
    print(f"Decode-step energy (H100, batch 8, prompt 128, {len(t)} architectures) fitted in sample on its profiled "
          "kernel time in GEMMs, attention and other kernels, the step time and the GB it moves (step_ops_vs_gpu.md), "
          "then with the card's idle power above the median of these cards x the step time (coefficient of any sign):\n")
    bases = ["step_s", "gemm_s", "attention_s", "other_s", "gb"]
    for extra in ([], ["idle_excess_s"]):
        A = t[bases + extra].to_numpy(float)
        lower = [0.0] * len(bases) + [-np.inf] * len(extra)
        theta = lsq_linear(A / y[:, None], np.ones(len(y)), bounds=(lower, np.inf)).x
        err = 100 * np.abs(A @ theta / y - 1)
        label = "+ card idle excess x step time" if extra else "kernel times + GB"
        coef = f"; idle coefficient {theta[-1]:.2f} W per W" if extra else ""
        print(f"- {label}: mean absolute error {err.mean():.1f}%, largest {err.max():.1f}%{coef}")
    print()
    return float(err.mean())


def main() -> int:
    df, X = dataset()
    y = df["energy_per_prompt_j"].to_numpy(float)
    groups = df["family"].to_numpy()
    big = (df["batch_size"] >= 8).to_numpy()
    df["pred"] = held_out(X, y, groups)
    old = rows_with_cards(sorted(STORE.glob("*.json.gz")))
    new = rows_with_cards(NEW)
    states = pd.concat([old, new]).drop_duplicates("run_id").set_index("run_id")  # idle_w, temp_c per run

    print("# Six small models again, one card per GPU type (session 18; experiment, not shipped)\n")
    print(f"Random weights, `graphed` mode. {len(new)} new rows ({', '.join(p.name for p in NEW)}); dataset "
          f"`data/predictor/energy_v1.csv`. LOAO of the shipped learner on the dataset (batch >= 8): "
          f"{100 * np.mean(np.abs(df['pred'][big] / y[big] - 1)):.2f}%.\n")
    largest_energy, largest_time = card_vs_card(new, old)
    ratios(new, df)
    on_new_card = scored_on_both(new, df)

    oracle_mae = phase_fit_with_idle(df, states)
    idle = df["run_id"].map(states["idle_w"]).to_numpy(float)
    h200 = df["gpu_name"].str.contains("H200").to_numpy()
    idle_excess = idle - np.where(h200, np.median(idle[h200]), np.median(idle[~h200]))
    time_s = held_out_time(X, df["time_s"].to_numpy(float), groups)
    pred_idle = held_out_with_idle_basis(X, y, groups, idle_excess, time_s)
    err_ship, err_idle = (100 * np.abs(p[big] / y[big] - 1) for p in (df["pred"].to_numpy(), pred_idle))
    by_family = pd.DataFrame({"family": groups[big], "shipped": err_ship, "idle": err_idle}).groupby("family").mean()
    print(f"LOAO of the shipped learner with the card's idle power above its GPU type's median x the predicted "
          f"request time as a seventh physics basis: {err_idle.mean():.2f}% (shipped {err_ship.mean():.2f}%). "
          "Largest families, shipped -> with the card:\n")
    for fam, r in by_family.sort_values("shipped", ascending=False).head(6).iterrows():
        print(f"- {fam}: {r['shipped']:.1f}% -> {r['idle']:.1f}%")
    print("\n`wattlens predict` is asked about a GPU model, not a card, so this is not shipped; it says how much of "
          "the held-out error a card's own offset carries.\n")
    print("## What it says\n")
    print("- A card's offset is real and large for small models, whose power sits near idle: the same request "
          f"differed by up to {largest_energy:.0f}% between two cards of one type, while its time differed by at most "
          f"{largest_time:.1f}% (section 1).\n"
          "- It is not what keeps Helium-1 and nanochat off: measured on one card together with the models they are "
          "compared with, their energy ratios are still below the held-out predictions, as on the dataset's two "
          f"cards (section 2), and on the new cards they are still {on_new_card['helium-1-preview']:+.0f}% and "
          f"{on_new_card['nanochat-0.26b']:+.0f}% off (section 3). Their configs resemble "
          "StableLM's and ERNIE's; their decode steps draw less, for reasons the config does not carry.\n"
          f"- Even the measured kernel times of each architecture's step, its GB and its card's idle power leave {oracle_mae:.1f}% "
          "in sample on 33 H100 steps at batch 8 (section 4): the LOAO target of 5% asks config-level features to do "
          "better than that, from other families, on rows measured mostly on one card per GPU type.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
