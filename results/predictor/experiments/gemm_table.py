"""Do measured decode GEMMs help the predictor? (session 14; `gemm_time` ships)

Session 13 traced the worst held-out family, Helium-1, to its GEMM widths: cuBLAS splits K (adding
a reduce kernel) for 1 GEMM per Helium layer and 5 per Llama-3.2-3B layer at batch 8 on an H100,
which the CPU operator count cannot see. Session 14 measured the GEMMs of every Linear shape of the
dataset's models on an H100 and an H200 (`wattlens.hw.gemm_table`, rows 1..128) and tried four ways
of using them; the features (`predict_features`) now carry the table's figures, and each variant
says which it uses:

  cpu_ops     session 13's predictor: kernels = operators counted on the CPU, one per Linear;
              time bases: prefill and decode rooflines, kernels x 2.5 us, prefill operator traffic;
              energy bases: those x TDP / batch, GB moved, extra GB of routed experts. The two new
              feature columns (`decode_linears`, `decode_gemm_s`) are set to 0, so the residual
              cannot use them (its trees then draw differently from session 13's, so this row is
              close to, not equal to, session 13's 5.66% / 6.84%)
  split       as cpu_ops, with the table's extra kernels (split-K reduces) in the kernel count
  gemm_time   shipped from session 14: energy as split, with the new columns; time bases: the
              decode step taken apart into the Linears' measured GEMM time, the other kernels x 2.5 us,
              KV-cache bytes and routed-expert bytes at HBM bandwidth, beside the prefill roofline and
              prefill operator traffic (`predictor.time_basis`)
  gemm_both   as gemm_time, with the energy's power terms on the same taken-apart times

Scores: leave-one-architecture-out MAPE of per-prompt energy and of request time, physics alone and
physics + the shipped residual, on the rows and mode analyse.py uses (batch >= 8).

    PYTHONPATH=src python3 results/predictor/experiments/gemm_table.py --dataset data/predictor/energy_v1.csv \
        --tables results/h100/gemm/gemm_decode.csv results/h200/gemm/gemm_decode.csv \
        > results/predictor/experiments/gemm_table.md
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import numpy as np

from wattlens.analysis import predictor as P
from wattlens.hw.gemm_table import decode_gemms, load_table, shipped_table
from wattlens.hw.specs import gpu_spec_by_name
from wattlens.models.decode_gemms import decode_linear_shapes
from wattlens.models.decode_ops import decode_ops

SHIPPED_TIME, SHIPPED_ENERGY = P.time_basis, P.physics_basis


def _col(X, name):
    return X[:, P._IDX[name]]


def gemm_energy_basis(X):
    X = np.atleast_2d(X)
    per_prompt_w = _col(X, "gpu_tdp_w") / _col(X, "batch_size")
    gb_moved = _col(X, "decode_bytes_per_prompt") * 1e-9
    expert_gb = _col(X, "decode_expert_bytes_per_prompt") * 1e-9
    return np.column_stack([SHIPPED_TIME(X) * per_prompt_w[:, None], gb_moved, expert_gb])


# session 13's time bases are the four the energy's power terms still use (`energy_time_bases`)
BASES = {"cpu_ops": (P.energy_time_bases, SHIPPED_ENERGY), "split": (P.energy_time_bases, SHIPPED_ENERGY),
         "gemm_time": (SHIPPED_TIME, SHIPPED_ENERGY), "gemm_both": (SHIPPED_TIME, gemm_energy_basis)}


@contextlib.contextmanager
def bases(variant: str):
    P.time_basis, P.physics_basis = BASES[variant]
    try:
        yield
    finally:
        P.time_basis, P.physics_basis = SHIPPED_TIME, SHIPPED_ENERGY


def variant_features(df, X) -> dict[str, np.ndarray]:
    """The feature rows each variant sees (module doc)."""
    steps = _col(X, "decode_steps")
    cpu_ops = np.array([decode_ops(P.config_for_row(*("" if isinstance(v, float) else v for v in r))).per_step(n)
                        for r, n in zip(df[["model", "overrides_json", "config_json"]].itertuples(index=False),
                                        _col(X, "num_layers").astype(int))], float)
    without_new = X.copy()
    without_new[:, [P._IDX["decode_linears"], P._IDX["decode_gemm_s"]]] = 0.0
    old = without_new.copy()
    old[:, P._IDX["decode_kernels"]] = steps * cpu_ops
    return {"cpu_ops": old, "split": without_new, "gemm_time": X, "gemm_both": X}


def held_out(variant: str, X, y, t, groups):
    """LOAO predictions: energy (physics, physics + residual) and time (physics, physics + residual)."""
    out = {k: np.full(len(y), np.nan) for k in ("energy_physics", "energy", "time_physics", "time")}
    with bases(variant):
        for _, tr, te in P.leave_one_group_out_indices(groups):
            model = P.make_learner("physics_residual", 0).fit(X[tr], y[tr])
            out["energy_physics"][te], out["energy"][te] = model.physics.predict(X[te]), model.predict(X[te])
            tm = P.time_model_for("physics_residual").fit(X[tr], t[tr])
            out["time_physics"][te] = np.maximum(P.time_basis(X[te]) @ tm.theta, 1e-12)
            out["time"][te] = tm.predict(X[te])
        theta = P._nnls_relative(P.time_basis(X), t)
    return out, theta


def mape(pred, y, mask) -> float:
    return float(np.mean(np.abs(pred[mask] / y[mask] - 1.0)) * 100)


def split_summary(table) -> list[str]:
    lines = ["| GPU | rows | shapes | split (2 kernels) | GB/s per GEMM: min / median / max |", "|---|---|---|---|---|"]
    gpus = sorted({k[0] for k in table})
    for gpu in gpus:
        for rows in (1, 8, 64):
            r = [v for k, v in table.items() if k[0] == gpu and k[1] == rows]
            gbs = sorted(v.out_features * v.in_features * 2 / v.us_per_call / 1e3 for v in r if v.out_features * v.in_features * 2 >= 1e6)
            lines.append(f"| {gpu} | {rows} | {len(r)} | {sum(v.kernels > 1 for v in r)} | "
                         f"{gbs[0]:.0f} / {gbs[len(gbs) // 2]:.0f} / {gbs[-1]:.0f} |")
    return lines


def per_model_rows(table, gpu: str, batch: int, models: list[str]) -> list[str]:
    from wattlens.models.catalog import resolve_model

    lines = [(f"| model ({gpu}, batch {batch}) | Linears / step | extra kernels / step | per layer | GEMM ms / step | "
              "Linear weights at HBM bandwidth, ms |"), "|---|---|---|---|---|---|"]
    bw = gpu_spec_by_name(gpu).memory_bandwidth_bytes_per_s
    for name in models:
        config = resolve_model(name).config
        shapes = decode_linear_shapes(config)
        g = decode_gemms(shapes, gpu, bw, batch, table=table)
        roof_ms = sum(s.count * s.out_features * s.in_features * 2 for s in shapes) / bw * 1e3
        layers = config["num_hidden_layers"]
        lines.append(f"| {name} | {g.linears} | {g.extra_kernels} | {g.extra_kernels / layers:.1f} | "
                     f"{g.seconds * 1e3:.2f} | {roof_ms:.2f} |")
    return lines


def fallback_accuracy(table, batch: int = 8) -> list[str]:
    """How far the stand-ins for a missing table are from the measured step: the GPU's own law (a shape
    it lacks) and the other GPU's law scaled by bandwidth (a GPU with no table), over the catalog's
    models (toy ones left out)."""
    from wattlens.hw.gemm_table import law_for, nearest_rows
    from wattlens.models.catalog import list_catalog, resolve_model

    lines = ["| GPU | stand-in | GEMM time per step, MAPE % (max) | extra kernels per step: measured / estimated, summed |",
             "|---|---|---|---|"]
    gpus = sorted({k[0] for k in table})
    for gpu in gpus:
        bw = gpu_spec_by_name(gpu).memory_bandwidth_bytes_per_s
        others = {k: v for k, v in table.items() if k[0] != gpu}
        for label, source in (("its own law", table), ("the other GPU's law, scaled", others)):
            law, _ = law_for(source, gpu, bw, nearest_rows(batch))
            errs, measured_extra, estimated_extra = [], 0.0, 0.0
            for entry in list_catalog():
                if entry.name.startswith("tiny"):
                    continue
                shapes = decode_linear_shapes(resolve_model(entry.name).config)
                g = decode_gemms(shapes, gpu, bw, batch, table=table)
                est = sum(s.count * law.us(s.out_features * s.in_features * 2) for s in shapes) * 1e-6
                errs.append(abs(est / g.seconds - 1) * 100)
                measured_extra += g.extra_kernels
                estimated_extra += law.split_fraction * g.linears
            lines.append(f"| {gpu} | {label} | {np.mean(errs):.1f} ({max(errs):.1f}) | "
                         f"{measured_extra:.0f} / {estimated_extra:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--tables", nargs="+", required=True)
    ap.add_argument("--min-batch", type=int, default=8)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    t0 = time.time()
    table = load_table(args.tables)
    df, mode, _ = P.one_serving_mode(P.load_dataset(args.dataset))
    df, _ = P.kv_heads_read_once(df)
    X, y, t = P.feature_matrix(df), df["energy_per_prompt_j"].to_numpy(float), df["time_s"].to_numpy(float)
    groups = df["family"].to_numpy()
    scored = df["batch_size"].to_numpy() >= args.min_batch
    rows_of = variant_features(df, X)
    runs = {name: held_out(name, rows_of[name], y, t, groups) for name in BASES}
    families = sorted(set(groups))

    print(f"# Measured decode GEMMs as predictor inputs (session 14; {mode} rows, batch >= {args.min_batch}: "
          f"{int(scored.sum())} scored rows of {len(y)}, {len(families)} families)\n")
    print("Made by `results/predictor/experiments/gemm_table.py` (its docstring says what each variant is) from "
          "the GEMM tables in `results/h100/gemm/` and `results/h200/gemm/`. Random weights, as the dataset "
          "(a GEMM's speed does not depend on its values).\n")
    print("## The tables\n")
    print("\n".join(split_summary(table)) + "\n")
    print("A split GEMM launches a second kernel (cuBLAS's split-K reduce). GB/s: the weight's bytes over the "
          "measured time per call (HBM: 3350 GB/s on the H100, 4800 on the H200), over the weights of at least 1 MB "
          "(the catalog's toy model and Qwen1.5-MoE's 1 x 2048 shared-expert gate left out). The fastest call of "
          "the table takes " + f"{min(v.us_per_call for v in table.values()):.1f}" + " us: the floor a GEMM costs "
          "however small.\n")
    print("\n".join(per_model_rows(table, "NVIDIA H100 SXM 80GB", 8,
                                   ["helium-1-preview", "llama-3.2-3b", "starcoder2-3b", "phi-3-mini",
                                    "llama-3.1-8b", "glm-4-9b", "olmo-2-7b", "qwen1.5-moe-a2.7b", "qwen2.5-0.5b"]))
          + "\n")
    print("The session-13 profile (`step_profile-h100-session13*.json`) counted 1 split GEMM per Helium-1 layer and "
          "5 per Llama-3.2-3B layer on an H100 at batch 8; the table gives the same.\n")
    print("Where the table lacks a shape or a GPU, `wattlens.hw.gemm_table.law_for` stands in (a floor plus a time "
          "per byte fitted to a GPU's table, and its share of split GEMMs). Against the measured step, at batch 8, "
          "over the catalog's non-toy models:\n")
    print("\n".join(fallback_accuracy(table)) + "\n")
    same = table == shipped_table()
    print(f"The features use the copy that ships with wattlens (`src/wattlens/hw/data/gemm_decode.csv`): "
          f"{'the same rows as these tables' if same else 'NOT the same rows as these tables'}.\n")
    print("## Held out by family (LOAO MAPE %)\n")
    print("| variant | energy, physics | energy, predictor | time, physics | time, predictor |")
    print("|---|---|---|---|---|")
    for name, (out, _) in runs.items():
        print(f"| {name} | {mape(out['energy_physics'], y, scored):.2f} | {mape(out['energy'], y, scored):.2f} | "
              f"{mape(out['time_physics'], t, scored):.2f} | {mape(out['time'], t, scored):.2f} |")
    print("\nPer family, energy / time (predictor):\n")
    print("| variant | " + " | ".join(families) + " |")
    print("|---|" + "---|" * len(families))
    for name, (out, _) in runs.items():
        cells = [f"{mape(out['energy'], y, scored & (groups == f)):.1f} / {mape(out['time'], t, scored & (groups == f)):.1f}"
                 for f in families]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nTime theta fitted on all rows, `gemm_time`: [" + ", ".join(f"{v:.3f}" for v in runs["gemm_time"][1])
          + "] (prefill roofline, the Linears' GEMM s, other kernels x 2.5 us, KV s, routed-expert s, prefill "
          "operator traffic); `cpu_ops`: [" + ", ".join(f"{v:.3f}" for v in runs["cpu_ops"][1]) + "] (prefill "
          "and decode rooflines, kernels x 2.5 us, prefill operator traffic).\n")
    print(f"Run time {time.time() - t0:.0f} s.")


if __name__ == "__main__":
    main()
