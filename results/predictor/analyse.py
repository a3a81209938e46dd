"""Build the dataset from campaign exports and write every predictor table (CPU only).

Usage (repo root):
  PYTHONPATH=src python3 results/predictor/analyse.py results/predictor/campaign/store/*.json \
      --dataset data/predictor/energy_v1.csv --out results/predictor
Writes: the dataset CSV; table_ii_cv.md (repeated 5x5 CV, study's Table II); table_loao.md and
table_logo.md (study's Table III layout, pooled and per held-out group, batch >= 8 and all);
table_lomo.md (the study's own protocol: one base model held out, its variants with it);
ecologits.md (EcoLogits' formula on the same held-out points); time.md (the request-time model held
out by family and GPU); mixed_size.{md,png} and
mixed_size_shipped.{md,png} when the exports hold ragged (mixed-size) trials; commands.md. Every
figure comes from the given exports.

Mixed-size validation (the study's Fig. 12): ragged trials are not training rows. The learner with
the lowest pooled leave-one-architecture-out MAPE (random forest when LOAO cannot be computed) is
fitted on all uniform rows; each prompt of a ragged batch is predicted at its own input length and
at the batch's padded length (transformers left-pads, so every row is computed at the longest), at
the batch's size and output length; the sums are compared with the measured batch energy, for all
batches and per serving mode (only batches in the training rows' mode are a fair test; the plot
shows those). The same
comparison with the shipped predictor's learner (`SHIPPED_LEARNER`) goes to mixed_size_shipped.*
(the same learner when it also has the lowest LOAO).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from wattlens.analysis import predictor as P
from wattlens.analysis.predict_dataset import DEFAULT_MAX_REL_UNCERTAINTY, mixed_rows_from_trials, rows_from_runs
from wattlens.models.arithmetic import model_facts
from wattlens.store.export import results_from_json

SHIPPED_LEARNER = "physics_residual"  # src/wattlens/analysis/data/default_predictor.json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("exports", nargs="+", type=Path)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("results/predictor"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mode", default=None, help="serving mode to fit and validate on (default: the mode with most rows)")
    ap.add_argument("--max-rel-uncertainty", type=float, default=DEFAULT_MAX_REL_UNCERTAINTY,
                    help="drop output lengths whose energy is less certain than this (1 sigma / value)")
    a = ap.parse_args(argv)
    rows, trials = [], []
    for p in a.exports:
        runs, ts = results_from_json(p)
        rows += rows_from_runs(runs, ts, max_rel_uncertainty=a.max_rel_uncertainty)
        trials += ts
    a.dataset.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(a.dataset, index=False)
    df, mode, left_out = P.one_serving_mode(P.load_dataset(a.dataset), a.mode)
    df, kv_left_out = P.kv_heads_read_once(df)
    rows_note = (f"serving mode {mode}" + (f"; left out (other modes): {left_out}" if left_out else "")
                 + (f"; left out (KV heads copied per query head): {kv_left_out}" if kv_left_out else ""))
    X, y = P.feature_matrix(df), df["energy_per_prompt_j"].to_numpy(float)
    names = P.available_learners()
    a.out.mkdir(parents=True, exist_ok=True)
    cv = P.repeated_cv(X, y, names, 5, a.repeats)
    (a.out / "table_ii_cv.md").write_text(f"# Repeated 5x{a.repeats} CV, {len(y)} rows ({rows_note})\n\n{P.table_ii(cv)}\n")
    big = (df["batch_size"] >= 8).to_numpy()
    active_b = [model_facts(P.config_for_row(r.model, r.overrides_json, r.config_json)).params_active / 1e9
                for r in df.itertuples()]
    eco = np.array([P.ecologits_gpu_energy_j(p, r.output_tokens, int(r.gpu_count))
                    for p, r in zip(active_b, df.itertuples())])
    mixed_learner = "random_forest"
    eco_lines = ["# EcoLogits' formula vs our learners on the same held-out points (batch >= 8)", "",
                 f"EcoLogits: {P.ECOLOGITS_SOURCE}; GPU term only, per output token x active parameters, "
                 "no input tokens, no batch size. Ours: each learner predicts a row only when its model family "
                 "(LOAO), its GPU (LOGO) or its base model (LOMO, the study's protocol) was held out of "
                 "training.", "",
                 "| validation | EcoLogits MAPE % | best learner | its MAPE % | EcoLogits / best | n |",
                 "|---|---|---|---|---|---|"]
    # lomo: the study's own protocol (one base model out; its variants and its family's other models stay
    # in training), a context for the stricter family-grouped LOAO that the targets are set on
    for label, col in (("loao", "family"), ("logo", "gpu_name"), ("lomo", "model")):
        if df[col].nunique() < 2:
            (a.out / f"table_{label}.md").write_text(f"# {label}: only one {col} in the data; not computed\n")
            continue
        res = P.held_out_cv(X, y, df[col], names)
        if label == "loao":
            mixed_learner = min(res, key=lambda r: r.pooled()["mape_pct"]).learner
        eco_res = P.held_out_baseline(y, eco, df[col], "EcoLogits (GPU term)")
        best = min(res, key=lambda r: r.pooled(big)["mape_pct"])
        e_mape, b_mape = eco_res.pooled(big)["mape_pct"], best.pooled(big)["mape_pct"]
        eco_lines.append(f"| {label.upper()} | {e_mape:.1f} | {best.learner} | {b_mape:.2f} | {e_mape / b_mape:.0f}x "
                         f"| {int(big.sum())} |")
        res.append(eco_res)
        parts = [f"# {label.upper()} (held-out {col}), {len(y)} rows ({rows_note})\n", "## batch >= 8\n",
                 P.table_iii([r.pooled(big) for r in res]), "\n## all rows\n", P.table_iii([r.pooled() for r in res])]
        for r in res:
            parts += [f"\n### {r.learner} per held-out group\n",
                      "\n".join(f"- {g['group']}: MAPE {g['mape_pct']:.2f}% (n={g['n']})" for g in r.per_group())]
        (a.out / f"table_{label}.md").write_text("\n".join(parts) + "\n")
    (a.out / "ecologits.md").write_text("\n".join(eco_lines) + "\n")
    time_validation(df, X, big, a.out)
    mixed = mixed_rows_from_trials(trials)
    if mixed:
        mixed_size_validation(df, X, y, mixed, mixed_learner, a.out, rule="lowest pooled leave-one-architecture-out "
                              "MAPE, or random forest when LOAO could not be computed")
        mixed_size_validation(df, X, y, mixed, SHIPPED_LEARNER, a.out, rule="the shipped predictor's learner",
                              stem="mixed_size_shipped")
    (a.out / "commands.md").write_text("```\n" + " ".join(["python3", *sys.argv]) + "\n```\n")
    return 0


def time_validation(df: pd.DataFrame, X: np.ndarray, big: np.ndarray, out: Path) -> None:
    """time.md: the request time `wattlens predict` prints, held out by family and by GPU, from the
    NNLS fit on the time bases alone and with the residual the shipped learner's time model carries."""
    t = df["time_s"].to_numpy(float)
    lines = ["# Request time (whole batch, s), held out", "",
             "The time model `wattlens predict` prints: non-negative fit of the time bases (`predictor.time_basis`: "
             "prefill roofline; the decode steps' Linears at their measured GEMM time (the per-GPU GEMM table), their "
             "other kernels x 2.5 us, KV-cache and routed-expert bytes at HBM bandwidth; prefill operator traffic; since session 17 the decode attention calls, layers x steps x 20 us), "
             "times a residual of the shipped learner's kind (a forest for physics + learned residual, else a ridge "
             "regression) of the log residual (`TimeModel`). Rows with batch >= 8. Before session 14 the decode "
             "bases were the decode roofline and the CPU operator count: 7.99 / 6.84% LOAO, 9.53 / 8.22% LOGO "
             "(`experiments/gemm_table.md`).", "",
             "| validation | time bases alone, MAPE % | with the residual (shipped), MAPE % | n |", "|---|---|---|---|"]
    for label, col in (("LOAO", "family"), ("LOGO", "gpu_name")):
        if df[col].nunique() < 2:
            continue
        plain, full = np.full(len(t), np.nan), np.full(len(t), np.nan)
        for _, tr, te in P.leave_one_group_out_indices(df[col].to_numpy()):
            model = P.time_model_for(SHIPPED_LEARNER).fit(X[tr], t[tr])
            full[te] = model.predict(X[te])
            plain[te] = P.TimeModel(model.theta).predict(X[te])
        mape = lambda pred: P.regression_metrics(t[big], pred[big])["mape_pct"]  # noqa: E731
        lines.append(f"| {label} | {mape(plain):.2f} | {mape(full):.2f} | {int(big.sum())} |")
    (out / "time.md").write_text("\n".join(lines) + "\n")


def _per_prompt_predictions_j(model, rows: list[dict]) -> np.ndarray:
    """Predicted energy per prompt (J) for dataset-like rows (model, gpu, shape, ...)."""
    frame = pd.DataFrame(rows)
    frame["config_json"] = ""
    return np.asarray(model.predict(P.feature_matrix(frame)), float)


def mixed_size_validation(df: pd.DataFrame, X: np.ndarray, y: np.ndarray, mixed: list[dict], learner: str,
                          out: Path, seed: int = 0, rule: str = "", stem: str = "mixed_size") -> dict:
    """Fit `learner` on the uniform rows, predict every ragged batch two ways, write <stem>.{md,png}."""
    model = P.make_learner(learner, seed).fit(X, y)
    measured, own, padded, sizes, table = [], [], [], [], []
    for m in mixed:
        lengths = [int(n) for n in json.loads(m["prompt_lengths_json"])]
        b, gen, longest = int(m["batch_size"]), int(m["output_tokens"]), int(m["padded_input_tokens"])
        base = {k: m[k] for k in ("model", "overrides_json", "gpu_name", "gpu_count", "dtype", "mode")}
        wanted = sorted(set(lengths) | {longest})
        pred = dict(zip(wanted, _per_prompt_predictions_j(
            model, [base | {"input_tokens": n, "output_tokens": gen, "batch_size": b, "cache_tokens": longest + gen}
                    for n in wanted])))
        e_own = P.mixed_batch_energy_j(lambda i, o, bb: pred[i], [(n, gen) for n in lengths])
        e_pad = P.mixed_batch_energy_j(lambda i, o, bb: pred[longest], [(n, gen) for n in lengths])
        measured.append(float(m["energy_batch_j"]))
        own.append(e_own)
        padded.append(e_pad)
        sizes.append(b)
        table.append(f"| {m['model']} | {m['mode']} | {b} | {min(lengths)}-{longest} | {gen} | "
                     f"{m['energy_batch_j']:.1f} ± {m['energy_batch_uncertainty_j']:.1f} | {e_own:.1f} | "
                     f"{100 * (e_own / m['energy_batch_j'] - 1):+.1f} | {e_pad:.1f} | "
                     f"{100 * (e_pad / m['energy_batch_j'] - 1):+.1f} | {m['trial_id']} |")
    keys = ("batch_mape_pct", "batch_rmse_j", "batch_r2", "per_prompt_rmse_j", "per_prompt_mape_pct")
    modes = [str(m["mode"]) for m in mixed]
    trained = sorted(set(df["mode"]))
    subsets = [("all batches", [True] * len(mixed))]
    subsets += [(f"{mode} batches" + (" (the training rows' mode)" if mode in trained else ""),
                 [m == mode for m in modes]) for mode in sorted(set(modes))]
    summary_rows, summaries = [], {}
    for name, keep in subsets:
        pick = lambda values: [v for v, k in zip(values, keep) if k]  # noqa: E731
        if len(pick(measured)) < 2:
            continue
        for how, pred in (("own input length", own), ("padded input length", padded)):
            stats = P.mixed_size_summary(pick(measured), pick(pred), pick(sizes))
            summaries[(name, how)] = stats
            summary_rows.append(f"| {name} (n={len(pick(measured))}) | {how} | "
                                + " | ".join(P._fmt(stats[k], 3) for k in keys) + " |")
    s_own, s_pad = summaries[("all batches", "own input length")], summaries[("all batches", "padded input length")]
    lines = [
        f"# Mixed-size batches (the study's Fig. 12): {len(mixed)} measured batches",
        "",
        f"Learner: `{learner}` ({rule}), fitted on all {len(y)} uniform rows (mode: {', '.join(trained)}). Each "
        "prompt is predicted at the batch's size and output length, at its own input length and at the padded "
        "(longest) one, with the static cache the batch allocates (longest input + output slots); a batch's "
        "prediction is the sum over its prompts. Batches run in another serving mode "
        "than the training rows are not a fair test of the predictor (its mode is not a feature); they show "
        "what a mode costs.",
        "",
        "| batches | prediction | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
        *summary_rows,
        "",
        "| model | mode | batch | input tokens | output tokens | measured J | own-length J | err % "
        "| padded-length J | err % | trial |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *table,
    ]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    fair = [m in trained for m in modes]  # the plot shows the fair test only
    pick = lambda values: [v for v, k in zip(values, fair) if k]  # noqa: E731
    if any(fair):
        P.plot_mixed_size(pick(measured), pick(own), out / f"{stem}.png",
                          f"mixed-size batches in {', '.join(trained)} mode, {learner} (n={sum(fair)})",
                          padded_predicted_batch_j=pick(padded))
    return {"learner": learner, "own": s_own, "padded": s_pad}


if __name__ == "__main__":
    raise SystemExit(main())
