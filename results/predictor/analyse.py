"""Build the dataset from campaign exports and write every predictor table (CPU only).

Usage (repo root):
  PYTHONPATH=src python3 results/predictor/analyse.py results/predictor/campaign/store/*.json \
      --dataset data/predictor/energy_v1.csv --out results/predictor
Writes: the dataset CSV; table_ii_cv.md (repeated 5x5 CV, study's Table II); table_loao.md and
table_logo.md (study's Table III layout, pooled and per held-out group, batch >= 8 and all);
ecologits.md (EcoLogits' formula on the same held-out points); mixed_size.{md,png} when mixed
batches exist (column batch_id); commands.md. Every figure comes from the given exports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from wattlens.analysis import predictor as P
from wattlens.analysis.predict_dataset import rows_from_trials
from wattlens.models.arithmetic import model_facts
from wattlens.store.export import results_from_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("exports", nargs="+", type=Path)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("results/predictor"))
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    trials, env = [], {}
    for p in a.exports:
        runs, ts = results_from_json(p)
        trials += ts
        for r in runs:
            e = r.environment or {}
            env = {"wattlens_version": e.get("wattlens_version", ""), "torch_version": e.get("torch", {}).get("version", "")
                   if isinstance(e.get("torch"), dict) else str(e.get("torch", "")), "driver_version": str(e.get("driver", ""))}
    a.dataset.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows_from_trials(trials, env)).to_csv(a.dataset, index=False)
    df = P.load_dataset(a.dataset)
    X, y = P.feature_matrix(df), df["energy_per_prompt_j"].to_numpy(float)
    names = P.available_learners()
    a.out.mkdir(parents=True, exist_ok=True)
    cv = P.repeated_cv(X, y, names, 5, a.repeats)
    (a.out / "table_ii_cv.md").write_text(f"# Repeated 5x{a.repeats} CV, {len(y)} rows\n\n{P.table_ii(cv)}\n")
    big = (df["batch_size"] >= 8).to_numpy()
    active_b = [model_facts(P.config_for_row(r.model, r.overrides_json, r.config_json)).params_active / 1e9
                for r in df.itertuples()]
    eco = np.array([P.ecologits_gpu_energy_j(p, r.output_tokens, int(r.gpu_count))
                    for p, r in zip(active_b, df.itertuples())])
    for label, col in (("loao", "family"), ("logo", "gpu_name")):
        if df[col].nunique() < 2:
            (a.out / f"table_{label}.md").write_text(f"# {label}: only one {col} in the data; not computed\n")
            continue
        res = P.held_out_cv(X, y, df[col], names)
        res.append(P.held_out_baseline(y, eco, df[col], "EcoLogits (GPU term)"))
        parts = [f"# {label.upper()} (held-out {col}), {len(y)} rows\n", "## batch >= 8\n",
                 P.table_iii([r.pooled(big) for r in res]), "\n## all rows\n", P.table_iii([r.pooled() for r in res])]
        for r in res:
            parts += [f"\n### {r.learner} per held-out group\n",
                      "\n".join(f"- {g['group']}: MAPE {g['mape_pct']:.2f}% (n={g['n']})" for g in r.per_group())]
        (a.out / f"table_{label}.md").write_text("\n".join(parts) + "\n")
    (a.out / "commands.md").write_text("```\n" + " ".join(["python3", *sys.argv]) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
