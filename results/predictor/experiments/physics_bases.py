"""Which energy bases for the physics fit? (sessions 12 and 13; the `expert_bytes` variant ships)

Every variant keeps the time bases (prefill and decode rooflines, decode operators, prefill operator
traffic, each x TDP / batch) and the energy per GB the decode steps move; they differ in what is
added (`predictor.physics_basis` is swapped while a variant runs):

  one_byte_energy   nothing: one energy per byte for every byte (shipped until session 11)
  expert_bytes      + the GB of routed-expert weights the decode steps read (`decode_expert_bytes_per_prompt`),
                    an extra energy per expert byte (shipped from session 12)
  expert_time       + TDP x those bytes' time at HBM bandwidth / batch (a power over their time instead)
  kv_bytes          expert_bytes, with the KV cache's bytes given their own energy per byte (the
                    decode bytes split into weights and KV)

The residual (`predictor.EnsembleResidual`) is the shipped one in every variant, fitted against that
variant's physics. Scores: leave-one-architecture-out MAPE (batch >= 8, the rows and mode analyse.py
uses), per family, and a nested version that does not pick on the held-out family: for each held-out
family F the variant is chosen by an inner leave-one-family-out over the other families, then
scored on F (with n families, each variant is fitted n + n(n-1)/2 times).

    PYTHONPATH=src python3 results/predictor/experiments/physics_bases.py \
        --dataset data/predictor/energy_v1.csv > results/predictor/experiments/physics_bases.md
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import numpy as np

from wattlens.analysis import predictor as P

SHIPPED_BASIS = P.physics_basis


def _col(X, name):
    return X[:, P._IDX[name]]


def one_byte_energy(X):
    return SHIPPED_BASIS(X)[:, :-1]  # the shipped bases without the expert column


def expert_time(X):
    X = np.atleast_2d(X)
    expert_s = _col(X, "decode_expert_bytes_per_prompt") / _col(X, "gpu_bandwidth_bytes_per_s")
    return np.column_stack([one_byte_energy(X), expert_s * _col(X, "gpu_tdp_w")])


def kv_bytes(X):
    X = np.atleast_2d(X)
    kv_gb = _col(X, "decode_kv_bytes_per_prompt") * 1e-9
    shipped = SHIPPED_BASIS(X)  # ..., all decode GB, expert GB
    return np.column_stack([shipped[:, :-2], shipped[:, -2] - kv_gb, kv_gb, shipped[:, -1]])


VARIANTS = {"one_byte_energy": one_byte_energy, "expert_bytes": SHIPPED_BASIS, "expert_time": expert_time,
            "kv_bytes": kv_bytes}


@contextlib.contextmanager
def bases(name: str):
    P.physics_basis = VARIANTS[name]
    try:
        yield
    finally:
        P.physics_basis = SHIPPED_BASIS


def held_out_predictions(name: str, X, y, groups, rows) -> np.ndarray:
    """Leave-one-family-out predictions for `rows` (indices) under variant `name` (NaN elsewhere)."""
    pred = np.full(len(y), np.nan)
    with bases(name):
        for _, tr, te in P.leave_one_group_out_indices(groups[rows]):
            model = P.make_learner("physics_residual", 0).fit(X[rows[tr]], y[rows[tr]])
            pred[rows[te]] = model.predict(X[rows[te]])
    return pred


def mape(pred, y, mask) -> float:
    return float(np.mean(np.abs(pred[mask] / y[mask] - 1.0)) * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--min-batch", type=int, default=8)
    args = ap.parse_args()
    t0 = time.time()
    df, mode, _ = P.one_serving_mode(P.load_dataset(args.dataset))
    df, _ = P.kv_heads_read_once(df)
    X, y = P.feature_matrix(df), df["energy_per_prompt_j"].to_numpy(float)
    groups = df["family"].to_numpy()
    scored = df["batch_size"].to_numpy() >= args.min_batch
    everyone = np.arange(len(y))
    families = sorted(set(groups))

    outer = {}
    for name in VARIANTS:
        outer[name] = held_out_predictions(name, X, y, groups, everyone)
        print(f"{name}: {mape(outer[name], y, scored):.2f}% ({time.time() - t0:.0f} s)", file=sys.stderr)

    chosen = {}
    nested = np.full(len(y), np.nan)
    for fam in families:
        inner_rows = np.flatnonzero(groups != fam)
        inner = {name: mape(held_out_predictions(name, X, y, groups, inner_rows), y, scored & (groups != fam))
                 for name in VARIANTS}
        chosen[fam] = min(inner, key=inner.get)
        out = groups == fam
        nested[out] = outer[chosen[fam]][out]
        print(f"nested {fam}: {chosen[fam]} ({time.time() - t0:.0f} s)", file=sys.stderr)

    print(f"# Physics bases compared (made in session 12, re-run in sessions 13 and 14; {mode} rows, batch >= {args.min_batch}: {int(scored.sum())} "
          f"scored rows of {len(y)}, {len(families)} families)\n")
    print("Made by `results/predictor/experiments/physics_bases.py` (its docstring says what each variant is). "
          "Random weights, as the dataset. The residual is the shipped one in every variant.\n")
    print("| variant | LOAO MAPE % | " + " | ".join(families) + " |")
    print("|---|---|" + "---|" * len(families))
    for name, pred in outer.items():
        per = [mape(pred, y, scored & (groups == f)) for f in families]
        print(f"| {name} | {mape(pred, y, scored):.2f} | " + " | ".join(f"{v:.1f}" for v in per) + " |")
    per = [mape(nested, y, scored & (groups == f)) for f in families]
    print(f"| nested (chosen per held-out family) | {mape(nested, y, scored):.2f} | "
          + " | ".join(f"{v:.1f}" for v in per) + " |")
    print("\nChosen by the inner leave-one-family-out, per held-out family: "
          + ", ".join(f"{f} {chosen[f]}" for f in families) + ".\n")
    with bases("expert_bytes"):
        theta = P.PhysicsModel().fit(X, y).theta
    print("Fitted on all rows (expert_bytes): theta = [" + ", ".join(f"{v:.3f}" for v in theta) + "] (prefill, "
          "decode roofline, decode operators, prefill operator traffic as fractions of TDP; J per GB moved; "
          "extra J per expert GB).\n")
    print(f"Run time {time.time() - t0:.0f} s.")


if __name__ == "__main__":
    main()
