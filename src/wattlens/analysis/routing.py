"""Energy-aware routing: map query difficulty to a model tier, and combine it with lower clocks.

Arithmetic (seeds/003 section VII): a tier t has an energy per query E_t (J) at the default clock
and a DVFS saving s_t (fraction) at the low clock. The baseline sends every query to the largest
tier at the default clock (E_base). A policy sends query i to tier t(i); its energy per query is
mean_i E_t(i) * (1 - s_t(i) if low clock else 1), its quality mean_i q[i, t(i)], and its saving
1 - energy / E_base. Per pattern category the saving is 1 - E_t (1 - s_t) / E_base and the
weighted saving is sum_c share_c * saving_c (which equals the policy's saving).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattlens.analysis.workload import (
    ALWAYS_EASY,
    ALWAYS_HARD,
    INCONSISTENT,
    PATTERNS,
    SCALING_HELPS,
    QualityTable,
    rule_is_easy,
    scaling_patterns,
)
from wattlens.core.errors import BadInput

# Published by the third study (seeds/003, Table XVI: phase-aware 2842 -> 180 MHz on an RTX PRO 6000
# Blackwell, batch 1): NOT measured by wattlens. Keys are the study's model names.
PUBLISHED_DVFS_SAVING_FRAC = {
    "Llama-3.2-1B": 0.423, "Llama-3.2-3B": 0.399, "Llama-3.1-8B": 0.422, "Qwen2.5-14B": 0.410, "Qwen2.5-32B": 0.440,
}
PUBLISHED_ENERGY_J_PER_QUERY = {  # same table, baseline clock
    "Llama-3.2-1B": 2.92, "Llama-3.2-3B": 4.19, "Llama-3.1-8B": 6.24, "Qwen2.5-14B": 8.32, "Qwen2.5-32B": 20.97,
}


@dataclass(frozen=True)
class Tier:
    model: str  # the model whose per-query quality is in the quality table
    energy_j_per_query: float  # at the default clock
    dvfs_saving_frac: float  # energy saved at the low clock (0-1)
    energy_source: str  # where the energy figure comes from
    dvfs_source: str


@dataclass(frozen=True)
class StrategyResult:
    name: str
    energy_j_per_query: float
    quality: float
    saving_frac: float  # vs the baseline
    low_clock: bool


def tier_energy(tier: Tier, low_clock: bool) -> float:
    return tier.energy_j_per_query * ((1.0 - tier.dvfs_saving_frac) if low_clock else 1.0)


def category_savings(shares: dict[str, float], route: dict[str, Tier], baseline: Tier, low_clock: bool = True) -> dict[str, float]:
    """Table XVII: saving per category and the share-weighted total ('weighted')."""
    if abs(sum(shares.values()) - 1.0) > 1e-6:
        raise BadInput(f"category shares sum to {sum(shares.values())}, not 1")
    base = tier_energy(baseline, False)
    out = {c: 1.0 - tier_energy(route[c], low_clock) / base for c in shares}
    out["weighted"] = sum(shares[c] * out[c] for c in shares)
    return out


# ------------------------------------------------------------------ policies: query index -> tier index
def pattern_policy(n_tiers: int) -> dict[str, int]:
    """The study's Table XV mapping, for tiers ordered small -> large: always easy and always hard go to
    the smallest tier, scaling-helps to the largest, inconsistent to the middle one."""
    return {ALWAYS_EASY: 0, ALWAYS_HARD: 0, SCALING_HELPS: n_tiers - 1, INCONSISTENT: n_tiers // 2}


def route_by_patterns(table: QualityTable, threshold: float = 0.5) -> list[int]:
    """Oracle routing (uses the measured quality): each query's tier from its scaling pattern."""
    m = pattern_policy(len(table.models))
    return [m[p] for p in scaling_patterns(table, threshold)]


def route_by_rule(table: QualityTable, features: dict[str, dict]) -> list[int]:
    """Deployable routing from features alone: rule-easy queries to the smallest tier, the rest to the largest."""
    last = len(table.models) - 1
    return [0 if rule_is_easy(features[i]["entity_density"], features[i]["causal_question_score"]) else last
            for i in table.ids]


def evaluate(table: QualityTable, tiers: Sequence[Tier], assignment: Sequence[int], low_clock: bool, name: str,
             baseline_j: float) -> StrategyResult:
    energy = float(np.mean([tier_energy(tiers[t], low_clock) for t in assignment]))
    quality = float(np.mean([table.q[i, t] for i, t in enumerate(assignment)]))
    return StrategyResult(name, energy, quality, 1.0 - energy / baseline_j, low_clock)


def strategies(table: QualityTable, tiers: Sequence[Tier], features: dict[str, dict], threshold: float = 0.5) -> list[StrategyResult]:
    """Table XVIII and more: every single tier, pattern routing and rule routing, at both clocks."""
    if [t.model for t in tiers] != table.models:
        raise BadInput(f"tiers {[t.model for t in tiers]} must match the quality table's models {table.models} (small -> large)")
    n = len(table.ids)
    base_j = tier_energy(tiers[-1], False)
    out = []
    for low in (False, True):
        clock = "low clock" if low else "default clock"
        for k, t in enumerate(tiers):
            out.append(evaluate(table, tiers, [k] * n, low, f"always {t.model}, {clock}", base_j))
        out.append(evaluate(table, tiers, route_by_patterns(table, threshold), low, f"pattern routing (oracle), {clock}", base_j))
        out.append(evaluate(table, tiers, route_by_rule(table, features), low, f"rule routing, {clock}", base_j))
    return out


def pareto_front(points: Sequence[StrategyResult]) -> list[StrategyResult]:
    """Strategies not beaten by another with less (or equal) energy and more (or equal) quality."""
    front = [p for p in points if not any(
        (o.energy_j_per_query <= p.energy_j_per_query and o.quality >= p.quality)
        and (o.energy_j_per_query < p.energy_j_per_query or o.quality > p.quality) for o in points)]
    return sorted(front, key=lambda p: p.energy_j_per_query)


def plot_frontier(results: Sequence[StrategyResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    colours = plt.get_cmap("tab10")
    for i, r in enumerate(results):
        # One colour per strategy and a legend instead of labels: strategies often share a quality.
        ax.scatter(r.energy_j_per_query, r.quality, marker="v" if r.low_clock else "o", s=40,
                   color=colours(i % 10), label=r.name, zorder=3)
    front = pareto_front(results)
    ax.plot([p.energy_j_per_query for p in front], [p.quality for p in front], "--", color="tab:red",
            label="Pareto front", zorder=2)
    ax.set_xlabel("energy per query (J)")
    ax.set_ylabel("mean quality (0-1)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="o default clock, v low clock",
              title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ------------------------------------------------------------------ measured energies from a store export
def energies_from_store(paths: Sequence[Path], mode: str = "eager",
                        figure: str = "energy_gpu_j_per_prompt") -> dict[str, tuple[float, str]]:
    """model -> (energy J per query, description) from successful trials of store JSON exports."""
    from wattlens.store.export import results_from_json

    out: dict[str, tuple[float, str]] = {}
    for path in paths:
        _, trials = results_from_json(path)
        for t in trials:
            value = (t.summary or {}).get(figure)
            if t.status != "ok" or t.spec.mode != mode or value is None:
                continue
            s = t.spec
            out[s.model] = (float(value), f"{Path(path).name} trial {t.trial_id}: {figure} = {value:.1f} J "
                            f"({s.mode}, {s.dtype}, ctx {s.ctx_tokens}, {s.gen_tokens} output tokens, batch {s.batch_size})")
    return out


def _fmt_pct(x: float) -> str:
    return f"{x:.1%}"


def routing_report(table: QualityTable, tiers: Sequence[Tier], features: dict[str, dict], threshold: float = 0.5,
                   plot_name: str | None = None, header: str = "") -> str:
    res = strategies(table, tiers, features, threshold)
    pats = scaling_patterns(table, threshold)
    shares = {p: pats.count(p) / len(pats) for p in PATTERNS}
    policy = pattern_policy(len(tiers))
    route = {p: tiers[policy[p]] for p in PATTERNS}
    cat = category_savings(shares, route, tiers[-1], low_clock=True)
    cat_default = category_savings(shares, route, tiers[-1], low_clock=False)
    lines = [header, "## Tiers", "", "| tier | model (quality) | energy per query (J) | energy source | DVFS saving | DVFS source |",
             "|---|---|---|---|---|---|"]
    for k, t in enumerate(tiers):
        lines.append(f"| {k} | {t.model} | {t.energy_j_per_query:.1f} | {t.energy_source} | {t.dvfs_saving_frac:.1%} | {t.dvfs_source} |")
    lines += ["", "## Routing by scaling pattern (cf. Tables XV and XVII)", "",
              "| pattern | share | tier | saving, routing only | saving, routing + low clock |", "|---|---|---|---|---|"]
    for p in PATTERNS:
        lines.append(f"| {p} | {shares[p]:.1%} | {route[p].model} | {_fmt_pct(cat_default[p])} | {_fmt_pct(cat[p])} |")
    lines.append(f"| **weighted** | 100% | | **{_fmt_pct(cat_default['weighted'])}** | **{_fmt_pct(cat['weighted'])}** |")
    lines += ["", "## Energy-quality of strategies (cf. Table XVIII)", "",
              "| strategy | energy per query (J) | mean quality | saving vs baseline | on Pareto front |", "|---|---|---|---|---|"]
    front = {r.name for r in pareto_front(res)}
    for r in res:
        lines.append(f"| {r.name} | {r.energy_j_per_query:.1f} | {r.quality:.3f} | {_fmt_pct(r.saving_frac)} | "
                     f"{'yes' if r.name in front else ''} |")
    if plot_name:
        lines += ["", f"![energy-quality frontier]({plot_name})"]
    return "\n".join(lines) + "\n"


def parse_assignments(items: Sequence[str], convert: Callable[[str], object] = str) -> dict[str, object]:
    """['a=b', ...] -> {'a': convert('b')}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise BadInput(f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = convert(v.strip())
    return out
