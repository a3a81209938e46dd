"""Which residual learner for the physics + learned residual predictor? (sessions 11 and 13)

The physics fit (`predictor.PhysicsModel`) is the same for every candidate; they differ in what
learns log(measured / physics). Components, each fitted on the training families' rows:

  forest          random forest on the features (the residual shipped until session 11)
  forest_regime   the same on the features + `predictor.regime_features`
  extra_regime    extremely randomised trees on the features + regime features
  boost_regime    gradient boosting (scikit-learn, depth 3) on the features + regime features
  hist_regime     histogram gradient boosting (depth 3, l2 1.0) on the features + regime features

A candidate is one component or the mean of several components' log factors. Session 11 shipped the
mean of forest, extra_regime and boost_regime; since session 13 `extra_regime` ships alone
(`predictor.SHIPPED_RESIDUAL_MEMBERS`). `predictor.EnsembleResidual` fits the first three components.

Scores: leave-one-architecture-out MAPE (batch >= 8, the rows and mode analyse.py uses), and a
nested version that does not pick on the held-out family: for each held-out family F a candidate
is chosen by an inner leave-one-family-out over the other families (fits without F and G, for
every other family G), then scored on F. So each component is fitted 15 + 105 times.

    PYTHONPATH=src python3 results/predictor/experiments/residual_ensemble.py \
        --dataset data/predictor/energy_v1.csv > results/predictor/experiments/residual_ensemble.md
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np

from wattlens.analysis import predictor as P

SEED = 0


# The members `predictor.EnsembleResidual` can fit, under this report's names.
ENSEMBLE_MEMBERS = {"forest": "forest", "extra_regime": "extra_trees", "boost_regime": "boosting"}


def other_components() -> dict:
    """The components the shipped learner does not have: name -> a fresh estimator (all take the
    features plus the regime features), with the shipped members' sizes."""
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

    E = P.EnsembleResidual
    return {
        "forest_regime": lambda: RandomForestRegressor(n_estimators=P.N_TREES["physics_residual"],
                                                       min_samples_leaf=P.ForestResidual.MIN_SAMPLES_LEAF,
                                                       random_state=SEED, n_jobs=-1),
        "hist_regime": lambda: HistGradientBoostingRegressor(
            max_iter=P.N_TREES["physics_residual_boosting"], learning_rate=E.BOOSTING_LEARNING_RATE,
            max_depth=E.BOOSTING_DEPTH, min_samples_leaf=E.MIN_SAMPLES_LEAF["boosting"], l2_regularization=1.0,
            random_state=SEED),
    }


CANDIDATES = {("shipped since session 13: extra_regime" if name == "extra_regime" else name): (name,)
              for name in ("forest", "forest_regime", "extra_regime", "boost_regime", "hist_regime")}
CANDIDATES.update({
    "forest + extra_regime": ("forest", "extra_regime"),
    "forest + boost_regime": ("forest", "boost_regime"),
    "session 11's: forest + extra_regime + boost_regime": ("forest", "extra_regime", "boost_regime"),
    "forest + extra_regime + hist_regime": ("forest", "extra_regime", "hist_regime"),
    "all five": ("forest", "forest_regime", "extra_regime", "boost_regime", "hist_regime"),
})


def fit_predict(X, y, train, test) -> dict[str, np.ndarray]:
    """Physics fit on `train`, then each component's log factor on `test` rows: name -> log energy."""
    physics = P.PhysicsModel().fit(X[train], y[train])
    residual = np.log(y[train] / physics.predict(X[train]))
    log_physics = np.log(physics.predict(X[test]))
    members = P.EnsembleResidual(physics.theta, seed=SEED, names=tuple(ENSEMBLE_MEMBERS.values()))
    logs = members.fit(X[train], residual).member_log_factors(X[test])
    out = {name: log_physics + logs[member] for name, member in ENSEMBLE_MEMBERS.items()}
    with_regime = np.hstack([X, P.regime_features(X, physics.theta)])
    for name, make in other_components().items():
        out[name] = log_physics + make().fit(with_regime[train], residual).predict(with_regime[test])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    a = ap.parse_args()
    df, mode, _ = P.one_serving_mode(P.load_dataset(a.dataset))
    df, _ = P.kv_heads_read_once(df)
    X = P.feature_matrix(df)
    y = df["energy_per_prompt_j"].to_numpy(float)
    family = df["family"].to_numpy()
    scored = df["batch_size"].to_numpy() >= 8
    families = sorted(set(family))
    rows_of = {f: np.flatnonzero(family == f) for f in families}
    started = time.time()

    def held_out(without: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Log predictions for every row, from fits without `without` (rows of `without` filled)."""
        train = np.flatnonzero(~np.isin(family, without))
        test = np.flatnonzero(np.isin(family, without))
        logs = {name: np.full(len(y), np.nan) for name in (*ENSEMBLE_MEMBERS, *other_components())}
        for name, values in fit_predict(X, y, train, test).items():
            logs[name][test] = values
        return logs

    outer = {f: held_out((f,)) for f in families}
    print(f"outer fits done ({time.time() - started:.0f} s)", file=sys.stderr)
    pairs = {}
    for f, g in itertools.combinations(families, 2):
        pairs[f, g] = pairs[g, f] = held_out((f, g))
    print(f"pair fits done ({time.time() - started:.0f} s)", file=sys.stderr)

    def candidate(logs: dict[str, np.ndarray], name: str) -> np.ndarray:
        return np.exp(np.mean([logs[c] for c in CANDIDATES[name]], axis=0))

    def mape(pred: np.ndarray, mask: np.ndarray) -> float:
        return float(np.mean(np.abs(pred[mask] / y[mask] - 1)) * 100)

    loao = {}
    for name in CANDIDATES:
        pred = np.full(len(y), np.nan)
        for f in families:
            pred[rows_of[f]] = candidate(outer[f], name)[rows_of[f]]
        loao[name] = pred

    def nested(names: list[str]) -> tuple[float, dict[str, str]]:
        pred, chosen = np.full(len(y), np.nan), {}
        for f in families:
            inner_mask = scored & (family != f)
            score = {}
            for name in names:
                inner = np.full(len(y), np.nan)
                for g in families:
                    if g != f:
                        inner[rows_of[g]] = candidate(pairs[f, g], name)[rows_of[g]]
                score[name] = mape(inner, inner_mask)
            chosen[f] = min(score, key=score.get)
            pred[rows_of[f]] = loao[chosen[f]][rows_of[f]]
        return mape(pred, scored), chosen

    print("# Residual learners compared (made in session 11, re-run in sessions 13 and 14; random weights)\n")
    print(f"Dataset `{a.dataset}`, mode {mode}, {len(y)} rows ({int(scored.sum())} with batch >= 8, scored), "
          f"{len(families)} families; physics fit unchanged, seed {SEED}. Made by "
          "`results/predictor/experiments/residual_ensemble.py` (its docstring says what each candidate is).\n")
    print("| candidate | LOAO MAPE % | " + " | ".join(families) + " |")
    print("|---|---|" + "---|" * len(families))
    for name, pred in loao.items():
        per = " | ".join(f"{mape(pred, scored & (family == f)):.1f}" for f in families)
        print(f"| {name} | {mape(pred, scored):.2f} | {per} |")
    print("\nNested leave-one-architecture-out (a candidate chosen per held-out family by an inner "
          "leave-one-family-out over the other families, then scored on the held-out one):\n")
    print("| candidates to choose from | nested LOAO MAPE % | chosen (held-out family: candidate) |")
    print("|---|---|---|")
    singles = [n for n, parts in CANDIDATES.items() if len(parts) == 1]
    means = [n for n, parts in CANDIDATES.items() if len(parts) > 1]
    for label, names in (("all", list(CANDIDATES)), ("single components", singles), ("means", means)):
        score, chosen = nested(names)
        picks = "; ".join(f"{f}: {c}" for f, c in chosen.items())
        print(f"| {label} | {score:.2f} | {picks} |")
    print(f"\n({time.time() - started:.0f} s on this machine)")


if __name__ == "__main__":
    main()
