"""Classifier pipeline, scaling-pattern rules and routing arithmetic on small tables with known answers."""

import numpy as np
import pytest

from wattlens.analysis.routing import (
    PUBLISHED_DVFS_SAVING_FRAC as S,
    PUBLISHED_ENERGY_J_PER_QUERY as E,
    Tier,
    category_savings,
    energies_from_store,
    pareto_front,
    route_by_patterns,
    route_by_rule,
    routing_report,
    strategies,
)
from wattlens.analysis.workload import (
    ALWAYS_EASY,
    ALWAYS_HARD,
    INCONSISTENT,
    SCALING_HELPS,
    QualityTable,
    ablation,
    cv_accuracy,
    difficulty_labels,
    rule_validation,
    scaling_pattern,
    scaling_patterns,
    stratified_folds,
)

# q1, q2 easy for both; q3 only the large model; q4 neither; q5 only the small one
QUALITY = {"q1": (1, 1), "q2": (1, 1), "q3": (0, 1), "q4": (0, 0), "q5": (1, 0)}


def _table():
    rows = []
    for rid, (small, large) in QUALITY.items():
        rows.append({"request_id": rid, "dataset": "d", "model": "small", "params_b": 1.0, "quality": small})
        rows.append({"request_id": rid, "dataset": "d", "model": "large", "params_b": 10.0, "quality": large})
    return QualityTable(rows)


FEATURES = {  # q1, q2 rule-easy; the others rule-hard
    "q1": {"entity_density": 0.0, "causal_question_score": 0.0},
    "q2": {"entity_density": 0.1, "causal_question_score": 0.0},
    "q3": {"entity_density": 0.3, "causal_question_score": 0.0},
    "q4": {"entity_density": 0.0, "causal_question_score": 1.0},
    "q5": {"entity_density": 0.5, "causal_question_score": 1.0},
}
TIERS = [Tier("small", 10.0, 0.5, "test", "test"), Tier("large", 100.0, 0.4, "test", "test")]


def test_scaling_pattern_rules():
    assert scaling_pattern([0.9, 0.8, 1.0]) == ALWAYS_EASY
    assert scaling_pattern([0.1, 0.2, 0.4]) == ALWAYS_HARD
    assert scaling_pattern([0.1, 0.6, 0.7]) == SCALING_HELPS
    assert scaling_pattern([0.1, 0.2, 0.7]) == SCALING_HELPS
    assert scaling_pattern([0.9, 0.2, 0.7]) == INCONSISTENT
    assert scaling_pattern([0.1, 0.7, 0.2]) == INCONSISTENT
    t = _table()
    assert t.models == ["small", "large"]
    assert scaling_patterns(t) == [ALWAYS_EASY, ALWAYS_EASY, SCALING_HELPS, ALWAYS_HARD, INCONSISTENT]


def test_normalisation_is_per_dataset():
    rows = [{"request_id": "a", "dataset": "x", "model": "m", "params_b": 1, "quality": 0.2},
            {"request_id": "b", "dataset": "x", "model": "m", "params_b": 1, "quality": 0.4},
            {"request_id": "c", "dataset": "y", "model": "m", "params_b": 1, "quality": 0.0},
            {"request_id": "d", "dataset": "y", "model": "m", "params_b": 1, "quality": 1.0}]
    assert QualityTable(rows).normalized()[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_routing_arithmetic_by_hand():
    t = _table()
    assert route_by_patterns(t) == [0, 0, 1, 0, 1]
    res = {r.name: r for r in strategies(t, TIERS, FEATURES)}
    route = res["pattern routing (oracle), default clock"]
    assert route.energy_j_per_query == pytest.approx((10 + 10 + 100 + 10 + 100) / 5)
    assert route.saving_frac == pytest.approx(1 - 46 / 100)
    assert route.quality == pytest.approx((1 + 1 + 1 + 0 + 0) / 5)
    both = res["pattern routing (oracle), low clock"]
    assert both.energy_j_per_query == pytest.approx((5 + 5 + 60 + 5 + 60) / 5) and both.saving_frac == pytest.approx(0.73)
    assert res["always large, low clock"].saving_frac == pytest.approx(0.4)
    assert res["always small, default clock"].quality == pytest.approx(0.6)
    assert route_by_rule(t, FEATURES) == [0, 0, 1, 1, 1]
    rule = res["rule routing, default clock"]
    assert rule.energy_j_per_query == pytest.approx(64.0) and rule.quality == pytest.approx(0.6)
    # per-category savings: shares 0.4 / 0.2 / 0.2 / 0.2, weighted equals the policy's saving
    shares = {ALWAYS_EASY: 0.4, SCALING_HELPS: 0.2, ALWAYS_HARD: 0.2, INCONSISTENT: 0.2}
    cat = category_savings(shares, {ALWAYS_EASY: TIERS[0], ALWAYS_HARD: TIERS[0], SCALING_HELPS: TIERS[1],
                                    INCONSISTENT: TIERS[1]}, TIERS[1])
    assert cat[ALWAYS_EASY] == pytest.approx(0.95) and cat[SCALING_HELPS] == pytest.approx(0.4)
    assert cat["weighted"] == pytest.approx(both.saving_frac)
    front = {p.name for p in pareto_front(list(res.values()))}
    assert "always large, default clock" not in front and "always small, low clock" in front
    report = routing_report(t, TIERS, FEATURES)
    assert "| **weighted** | 100% | | **54.0%** | **73.0%** |" in report


def test_published_table_xvii_arithmetic():
    """The study's own figures: 3B at 180 MHz saves 88%, 14B 77%, 8B 83%; the weighted mean is 85.8%
    (the paper prints 87%)."""
    tier = {m: Tier(m, E[m], S[m], "published", "published") for m in E}
    shares = {ALWAYS_EASY: 0.445, SCALING_HELPS: 0.155, ALWAYS_HARD: 0.326, INCONSISTENT: 0.074}
    route = {ALWAYS_EASY: tier["Llama-3.2-3B"], SCALING_HELPS: tier["Qwen2.5-14B"], ALWAYS_HARD: tier["Llama-3.2-3B"],
             INCONSISTENT: tier["Llama-3.1-8B"]}
    cat = category_savings(shares, route, tier["Qwen2.5-32B"])
    assert round(cat[ALWAYS_EASY], 2) == 0.88 and round(cat[SCALING_HELPS], 2) == 0.77
    assert round(cat[INCONSISTENT], 2) == 0.83
    assert cat["weighted"] == pytest.approx(0.858, abs=0.001)
    # Table XVIII: routing only (3B, default clock) saves 80%
    assert 1 - E["Llama-3.2-3B"] / E["Qwen2.5-32B"] == pytest.approx(0.80, abs=0.005)


def test_stratified_folds_and_classifier():
    y = np.array([0] * 50 + [1] * 50)
    folds = stratified_folds(y, 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    assert all(y[f].sum() == 10 and len(f) == 20 for f in folds)
    rng = np.random.default_rng(1)
    separable = np.where(y == 1, 1.0, -1.0)[:, None] + 0.1 * rng.standard_normal((100, 1))
    noise = rng.standard_normal((100, 1))
    assert cv_accuracy(separable, y) == 1.0
    assert 0.3 < cv_accuracy(noise, y) < 0.7


def test_difficulty_labels_and_ablation_pipeline():
    rng = np.random.default_rng(0)
    rows, feats = [], {}
    for i in range(60):
        hard = i % 2
        rid = f"r{i}"
        q_small, q_large = (0.1, 0.3) if hard else (0.8, 0.9)
        q_small += 0.01 * rng.random()
        rows += [{"request_id": rid, "dataset": "d", "model": "s", "params_b": 1, "quality": q_small},
                 {"request_id": rid, "dataset": "d", "model": "l", "params_b": 8, "quality": q_large}]
        feats[rid] = {"input_tokens": float(rng.integers(10, 300)), "entity_density": 0.4 if hard else 0.05,
                      "causal_question_score": float(hard), "token_entropy_bits": 5.0 + rng.random(),
                      "reasoning_complexity": rng.random() * 0.1, "complexity_score": rng.random()}
    t = QualityTable(rows)
    y = difficulty_labels(t)
    assert y.tolist() == [1 - (i % 2) for i in range(60)]
    acc = dict(ablation(t, feats))
    assert acc["+ entity density"] == 1.0 and acc["features only (no length)"] == 1.0
    assert acc["length only (> 150 tokens = hard)"] < 0.8
    val = rule_validation(t, feats)
    assert val["_counts"] == {"easy": 30, "hard": 30} and val["l"]["gap"] == pytest.approx(0.6)


def test_energies_from_committed_store():
    # the first H100 session's stores (moved under earlier/ when the second session's replaced them)
    first = "results/h100/core/earlier/3-first-session"
    e = energies_from_store([f"{first}/store-8b.json", f"{first}/store-large.json"])
    assert e["llama-3.1-8b"][0] == pytest.approx(444.6445) and e["qwen3-32b"][0] > e["llama-3.1-8b"][0]
