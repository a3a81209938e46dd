"""The training / validation pipeline on a SYNTHETIC dataset made in this file from a known formula.

Test-only: these numbers are never shipped or reported as results.
"""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from wattlens.analysis import predictor as P  # noqa: E402
from wattlens.analysis.predict_features import ALL_FEATURES  # noqa: E402
from wattlens.core.errors import BadInput  # noqa: E402

MODELS = [("llama-3.2-1b", {}), ("llama-3.2-1b", {"num_hidden_layers": 8}), ("llama-3.2-3b", {}),
          ("qwen2.5-0.5b", {}), ("qwen2.5-0.5b", {"hidden_size": 1024, "num_attention_heads": 16}),
          ("qwen3-30b-a3b", {"num_hidden_layers": 8}), ("qwen3-30b-a3b", {"num_hidden_layers": 8, "num_experts_per_tok": 4}),
          ("mistral-7b-v0.3", {"num_hidden_layers": 8}), ("phi-2", {}), ("opt-1.3b", {}),
          # widths apart from depth, so that prefill FLOPs (~ width^2) and operator traffic (~ width) separate
          ("llama-3.2-1b", {"hidden_size": 512}), ("llama-3.2-3b", {"hidden_size": 6144})]
GPUS = ["H100", "H200", "A100"]
TRUE_THETA = np.array([2.0, 0.8, 0.5, 0.7, 0.15, 0.08])


def synthetic_frame(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for model, ov in MODELS:
        for gpu in GPUS:
            for _ in range(6):
                rows.append(dict(model=model, overrides_json=json.dumps(ov) if ov else "", config_json="", gpu_name=gpu,
                                 gpu_count=1, dtype="bf16", mode="static", input_tokens=int(rng.integers(16, 1000)),
                                 output_tokens=int(np.exp(rng.uniform(np.log(2), np.log(1000)))),
                                 batch_size=int(rng.choice([1, 8, 16, 64])),
                                 energy_per_prompt_j=np.nan))
    df = pd.DataFrame(rows)
    df["family"] = df["model"].map(P.model_family)
    X = P.feature_matrix(df)
    # known formula: the physics bases with fixed thetas and 1% multiplicative noise (at 3% the decode
    # time and decode bytes bases, told apart only by the GPUs' TDP / bandwidth, trade off by ~10%)
    y = (P.physics_basis(X) @ TRUE_THETA) * np.exp(rng.normal(0, 0.01, len(df)))
    df["energy_per_prompt_j"] = y
    return df, X, y


@pytest.fixture(scope="module")
def data():
    return synthetic_frame()


@pytest.fixture(autouse=True)
def small_ensembles(monkeypatch):
    monkeypatch.setattr(P, "N_TREES", {"random_forest": 40, "physics_residual": 30, "physics_residual_boosting": 30,
                                       "xgb_tree": 60, "xgb_linear": 60})


def test_families_come_from_catalog(data):
    df, X, y = data
    assert X.shape == (len(df), len(ALL_FEATURES))
    assert set(df["family"]) == {"llama", "qwen", "mistral", "phi", "opt"}


def test_grouped_folds_never_leak_a_family(data):
    df, _, _ = data
    seen = []
    for fam, tr, te in P.leave_one_group_out_indices(df["family"]):
        assert set(df["family"].iloc[tr]).isdisjoint(set(df["family"].iloc[te]))
        assert set(df["family"].iloc[te]) == {fam}
        assert len(tr) + len(te) == len(df)
        seen.append(fam)
    assert sorted(seen) == sorted(set(df["family"]))
    # the variants of a model are in the same held-out fold as the model itself
    for _, tr, te in P.leave_one_group_out_indices(df["family"]):
        assert set(df["model"].iloc[tr]).isdisjoint(set(df["model"].iloc[te]))


def test_repeated_cv_is_5x5_and_covers_every_row():
    seen = {}
    for rep, tr, te in P.repeated_kfold_indices(23, 5, 5, seed=1):
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 23
        seen.setdefault(rep, []).extend(te.tolist())
    assert len(seen) == 5 and all(sorted(v) == list(range(23)) for v in seen.values())


def test_physics_recovers_known_thetas_and_extrapolates(data):
    df, X, y = data
    m = P.PhysicsModel().fit(X, y)
    assert m.theta == pytest.approx(TRUE_THETA, rel=0.05)
    # leave-one-GPU-out: physics keeps MAPE near the noise level on an unseen GPU
    res = P.held_out_cv(X, y, df["gpu_name"], ["physics"])[0]
    assert res.pooled()["mape_pct"] < 5.0


def test_all_learners_run_and_tables_render(data):
    df, X, y = data
    names = P.available_learners()
    assert {"linear", "elastic_net", "svm_linear", "random_forest", "physics", "physics_residual"} <= set(names)
    cv = P.repeated_cv(X, y, names, n_splits=5, n_repeats=2)
    t2 = P.table_ii(cv)
    assert t2.count("\n") == len(names) + 1 and "Random Forest" in t2 and "MAPESD" in t2
    summ = {r.learner: r.summary() for r in cv}
    assert summ["physics"]["mape_pct"] < 5.0  # the data came from the physics formula
    assert summ["random_forest"]["mape_pct"] < 40.0
    assert summ["physics"]["folds"] == 10
    loao = P.held_out_cv(X, y, df["family"], ["physics", "physics_residual", "random_forest"])
    t3 = P.table_iii([r.pooled() for r in loao])
    assert "Physics + learned residual" in t3
    assert loao[0].pooled()["mape_pct"] < loao[2].pooled()["mape_pct"]  # physics extrapolates, trees less so


def test_ecologits_baseline_ignores_input_and_batch():
    e = P.ecologits_gpu_energy_j(8.0, 300)
    assert e == pytest.approx(300 * (8.91e-8 * 8 + 1.43e-6) * 3.6e6)
    assert P.ecologits_gpu_energy_j(8.0, 300, gpu_count=2) == pytest.approx(2 * e)


def test_metrics_units():
    m = P.regression_metrics([3600.0, 7200.0], [3600.0, 10800.0])
    assert m["mae_j"] == 1800.0 and m["mae_wh"] == 0.5 and m["mape_pct"] == 25.0
    assert m["rmse_j"] == pytest.approx(np.sqrt(3600.0**2 / 2))


def test_mixed_size_sum_and_plot(tmp_path, data):
    df, X, y = data
    predict = lambda i, o, b: 0.5 * i + 2.0 * o + 10.0 / b  # noqa: E731
    assert P.mixed_batch_energy_j(predict, [(10, 20), (30, 40)]) == pytest.approx(5 + 40 + 5 + 15 + 80 + 5)
    s = P.mixed_size_summary([100.0, 200.0], [110.0, 190.0], [2, 4])
    assert s["batch_mape_pct"] == pytest.approx(7.5) and s["per_prompt_rmse_j"] < s["batch_rmse_j"]
    P.plot_mixed_size([100.0, 200.0], [110.0, 190.0], tmp_path / "fig12.png", "synthetic")
    assert (tmp_path / "fig12.png").stat().st_size > 1000


def test_fit_save_load_predict(tmp_path, data):
    df, X, y = data
    b = P.fit_bundle(X, y, "physics_residual", groups=df["family"], trained_on={"rows": len(y)})
    assert b.calibrated and b.log_interval[0] < 0 < b.log_interval[1]
    P.save_bundle(b, tmp_path / "p.pkl")
    b2 = P.load_bundle(tmp_path / "p.pkl")
    out = b2.predict_features(X[:3])
    assert np.allclose(out["energy_per_prompt_j"], b.predict_features(X[:3])["energy_per_prompt_j"])
    assert np.all(out["energy_low_j"] < out["energy_per_prompt_j"]) and np.all(out["energy_high_j"] > out["energy_per_prompt_j"])


@pytest.mark.parametrize("learner", ["physics", "physics_linear", "physics_residual"])
def test_physics_bundles_save_as_json_and_others_refuse(tmp_path, data, learner):
    df, X, y = data
    t = X[:, P._IDX["decode_roofline_s"]] * 1.5 + 0.01  # a request time, so the time residual is saved too
    b = P.fit_bundle(X, y, learner, groups=df["family"], time_s=t, trained_on={"rows": len(y)})
    P.save_bundle(b, tmp_path / "p.json")
    b2 = P.load_bundle(tmp_path / "p.json")
    assert b2.calibrated and b2.trained_on == {"rows": len(y)} and b2.log_interval == b.log_interval
    for key in ("energy_per_prompt_j", "time_s"):  # the JSON copy predicts what the fitted model does
        assert np.allclose(b2.predict_features(X)[key], b.predict_features(X)[key], rtol=1e-12), key
    assert type(b2.time_residual) is type(b.time_residual)
    rf = P.fit_bundle(X, y, "random_forest")
    with pytest.raises(BadInput, match="only the physics learners"):
        P.save_bundle(rf, tmp_path / "rf.json")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(BadInput, match="not a wattlens predictor"):
        P.load_bundle(tmp_path / "bad.json")


def test_forest_residual_with_numpy_matches_scikit_learn(data):
    """The shipped forest is applied with numpy (no scikit-learn at prediction time): same numbers."""
    from sklearn.ensemble import RandomForestRegressor

    _, X, y = data
    r = np.log(y / P.PhysicsModel().fit(X, y).predict(X))
    ours = P.ForestResidual(seed=3).fit(X, r)
    theirs = RandomForestRegressor(n_estimators=P.N_TREES["physics_residual"],
                                   min_samples_leaf=P.ForestResidual.MIN_SAMPLES_LEAF, random_state=3).fit(X, r)
    assert np.allclose(ours.log_factor(X), theirs.predict(X), rtol=0, atol=1e-12)
    shifted = X * 1.37  # other points than the training rows, across thresholds
    assert np.allclose(ours.log_factor(shifted), theirs.predict(shifted), rtol=0, atol=1e-12)
    # as saved: inner nodes' values are written as 0 (never read), the predictions stay the same
    saved = ours.to_dict()
    inner = np.asarray(saved["trees"][0]["left"]) >= 0
    assert inner.any() and not np.any(np.asarray(saved["trees"][0]["value"])[inner])
    back = P.ForestResidual.from_dict(json.loads(json.dumps(saved)))
    assert np.array_equal(back.log_factor(shifted), ours.log_factor(shifted))


def test_ensemble_residual_with_numpy_matches_scikit_learn(data):
    """Each member the energy residual can have (forest on the features; extra trees and gradient
    boosting on the features plus the regime features) gives scikit-learn's numbers with numpy
    alone, the residual is their mean, and it survives a JSON round trip; the shipped residual has
    the extra trees alone."""
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor

    _, X, y = data
    physics = P.PhysicsModel().fit(X, y)
    r = np.log(y / physics.predict(X))
    shipped = P.EnsembleResidual(physics.theta, seed=4).fit(X, r)
    assert set(shipped.members) == set(P.SHIPPED_RESIDUAL_MEMBERS) == {"extra_trees"}
    ours = P.EnsembleResidual(physics.theta, seed=4, names=("forest", "extra_trees", "boosting")).fit(X, r)
    assert np.array_equal(ours.member_log_factors(X)["extra_trees"], shipped.log_factor(X))
    leaf, n = P.EnsembleResidual.MIN_SAMPLES_LEAF, P.N_TREES["physics_residual"]
    Z = np.hstack([X, P.regime_features(X, physics.theta)])
    theirs = {
        "forest": RandomForestRegressor(n_estimators=n, min_samples_leaf=P.ForestResidual.MIN_SAMPLES_LEAF,
                                        random_state=4).fit(X, r),
        "extra_trees": ExtraTreesRegressor(n_estimators=n, min_samples_leaf=leaf["extra_trees"],
                                           random_state=4).fit(Z, r),
        "boosting": GradientBoostingRegressor(n_estimators=P.N_TREES["physics_residual_boosting"], learning_rate=0.05,
                                              max_depth=3, min_samples_leaf=leaf["boosting"], random_state=4).fit(Z, r),
    }
    shifted = X * 1.37  # other points than the training rows, across thresholds
    for points in (X, shifted):
        members = ours.member_log_factors(points)
        assert set(members) == set(theirs)
        Zp = np.hstack([points, P.regime_features(points, physics.theta)])
        for name, est in theirs.items():
            want = est.predict(points if name == "forest" else Zp)
            assert np.allclose(members[name], want, rtol=0, atol=1e-9), name
        assert np.allclose(ours.log_factor(points), np.mean(list(members.values()), axis=0))
    for residual in (ours, shipped):
        back = P.EnsembleResidual.from_dict(json.loads(json.dumps(residual.to_dict())))
        assert np.array_equal(back.log_factor(shifted), residual.log_factor(shifted))
    with pytest.raises(ValueError, match="choose from"):
        P.EnsembleResidual(physics.theta, names=("forest", "lasso"))


def test_regime_features_are_ratios_that_do_not_grow_with_the_model(data):
    """The regime features describe a request's shape, not its size: doubling every byte, FLOP and
    second of a row (a model twice as big, proportionally) leaves the shares, FLOPs per byte and
    time ratios unchanged, and the bases' shares sum to one."""
    _, X, y = data
    theta = P.PhysicsModel().fit(X, y).theta
    R = P.regime_features(X, theta)
    n = P.N_PHYSICS_BASES
    assert R.shape == (len(X), n + 17) and np.all(np.isfinite(R))
    assert np.allclose(R[:, :n].sum(axis=1), 1.0)
    scaled = X.copy()
    for name in ("decode_flops_per_prompt", "decode_bytes_per_prompt", "decode_kv_bytes_per_prompt",
                 "decode_expert_bytes_per_prompt", "prefill_roofline_s", "decode_roofline_s", "prefill_operator_s"):
        scaled[:, ALL_FEATURES.index(name)] *= 2.0
    # FLOPs per byte (2), KV share, prefill / decode, prefill operators / roofline
    ratio_cols = [n + 1, n + 2, n + 3, n + 6, n + 8]
    assert np.allclose(P.regime_features(scaled, theta)[:, ratio_cols], R[:, ratio_cols])


def test_dataset_roundtrip_csv(tmp_path, data):
    df, X, _ = data
    df.to_csv(tmp_path / "d.csv", index=False)
    back = P.load_dataset(tmp_path / "d.csv")
    assert np.allclose(P.feature_matrix(back), X)


def test_time_model_learns_a_residual_the_roofline_basis_misses(tmp_path, data):
    """SYNTHETIC times (test-only): the NNLS fit on the roofline bases plus a log-linear factor in
    the batch size that those bases cannot express. The fitted residual recovers it, round-trips
    through JSON, and a predictor saved before it existed (no `time_residual`) still loads."""
    df, X, y = data
    batch = X[:, ALL_FEATURES.index("batch_size")]
    time_s = (P.time_basis(X) @ np.array([2.0, 1.0, 1.5, 1.2, 1.5, 3.0, 0.5])) * batch ** 0.15
    b = P.fit_bundle(X, y, "physics_linear", groups=df["family"], time_s=time_s)
    assert b.time_residual is not None
    plain = P.TimeModel(b.time_theta).predict(X)  # the NNLS part alone
    fitted = b.predict_features(X)["time_s"]
    # the KV-byte basis grows with the batch and absorbs part of the factor (its theta comes out ~4x
    # too high), so the residual has less left to recover than the whole factor
    assert np.mean(np.abs(fitted / time_s - 1)) < 0.6 * np.mean(np.abs(plain / time_s - 1))
    P.save_bundle(b, tmp_path / "p.json")
    assert np.allclose(P.load_bundle(tmp_path / "p.json").predict_features(X[:5])["time_s"], fitted[:5])
    doc = json.loads((tmp_path / "p.json").read_text())
    del doc["time_residual"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    old = P.load_bundle(tmp_path / "old.json")
    assert old.time_residual is None and np.allclose(old.predict_features(X[:5])["time_s"], plain[:5])
