"""Study report: every table of a reproduced paper, our figure beside the published one, plus plots.

Renders numbers already stored in `TrialResult.summary` / `MemoryStats` (and the catalog's
analytic facts); it recomputes no physics. A figure we did not measure reads "not measured", a
trial that failed reads "failed: <why>"; a published cell the paper leaves empty reads "—".
Ratios are ours / published. Sizes are decimal (1 MB = 1e6 bytes, 1 GB = 1e9 bytes).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from wattlens.analysis.report import (MISSING, TextTable, environment_summary, fmt_number, markdown_table,
                                      render_failed_table)
from wattlens.core.results import RunInfo, TrialResult
from wattlens.core.spec import SamplingSpec

MS_PER_S = 1e3
BYTES_PER_MB = 1e6
BYTES_PER_GB = 1e9

PUBLISHED_GPU_NOTE = (
    "Published figures: the paper names its GPU only as an 'H100' (bf16); the CSVs it released name an "
    "**NVIDIA H100 NVL** (94 GB HBM3, ~400 W board power), not the 80 GB SXM part. Ours: {gpu}. "
    "Ratios are ours / published."
)

DIFFERENCES = """\
- **GPU.** Ours: {gpu}. Published: an NVIDIA H100 NVL (94 GB, ~400 W) according to the study's CSVs,
  described as "H100" in the paper. The parts differ in memory bandwidth, power limit and clocks, so
  ratios near 1 are not expected; the comparison is of shapes and orderings.
- **Weights.** Ours are **random**, built from each model's catalog config (speed, memory and energy
  depend on shapes and dtypes, not on weight values); the paper used the released checkpoints. GPT-OSS-20B
  is built with unquantised bf16 experts (the checkpoint stores MXFP4 experts; the study also ran bf16).
- **TPOT.** The paper's "TPOT (tok/s)" is output tokens over the generate wall time, prefill included.
  We show that figure as "tok/s (gen/E2E)" to compare, and our decode throughput 1 / TPOT, with
  TPOT = (E2E - TTFT) / (n_out - 1), separately. p95 needs >= 20 samples (the paper took it from 5-10).
- **KV accounting.** The paper took the whole allocator delta during decode as "KV" (mostly logits and
  MoE activations). We report the analytic KV (2 x layers x KV heads x head dim x bytes x tokens, with
  sliding-window layers capped at their window) and the measured KV: the allocator delta still held
  after generation. Peak memory is `max_memory_allocated` over the measured repetitions, as published.
- **Energy.** Ours: NVML total-energy counter deltas around each repetition, read after a device sync,
  gross (idle not subtracted, as published) with the counter's quantisation uncertainty; J/1k and tok/J
  count generated tokens over the whole request, prefill included, as the paper's J/1K did. Published:
  nvidia-smi power samples (~10 Hz of a 1 s moving average) integrated over the run. "Tokens/W" in the
  paper is tokens per joule.
- **Prompts.** Ours: synthetic token ids of exactly the stated length with an attention mask, output
  length forced. Published: chat-templated text trimmed/padded to length.
"""


# --- published figures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    value: float | None
    unit: str
    note: str


def load_published(path: Path | None) -> dict[tuple[int, str, str], Published]:
    """(table, row, metric) -> Published, from the CSV shipped with a study ('#' lines are comments)."""
    if path is None or not Path(path).is_file():
        return {}
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    out = {}
    for row in csv.DictReader(lines):
        raw = (row.get("value") or "").strip()
        out[(int(row["table"]), row["row"], row["metric"])] = Published(
            float(raw) if raw else None, row.get("unit") or "", (row.get("note") or "").strip())
    return out


# --- picking trials -----------------------------------------------------------------------------


class TrialIndex:
    """Finds the stored trial for a (model, ctx, mode, dtype, sampling) point of the study."""

    def __init__(self, trials: Sequence[TrialResult], gen_tokens: int):
        self.trials = list(trials)
        self.gen = gen_tokens

    def _match(self, t: TrialResult, model: str, ctx: int, mode: str, dtype: str, sampling: SamplingSpec) -> bool:
        s = t.spec
        return (s.model == model and s.ctx_tokens == ctx and s.gen_tokens == self.gen and s.mode == mode
                and s.dtype == dtype and s.sampling == sampling and s.batch_size == 1)

    def get(self, model: str, ctx: int, mode: str = "eager", dtype: str = "bf16",
            sampling: SamplingSpec | None = None) -> TrialResult | None:
        """The ok trial with the most repetitions (latest wins ties), else the latest failed one, else None."""
        sampling = sampling or SamplingSpec()
        hits = [t for t in self.trials if self._match(t, model, ctx, mode, dtype, sampling)]
        ok = [t for t in hits if t.status == "ok"]
        if ok:
            return max(ok, key=lambda t: (len(t.repetitions) or t.summary.get("n_repetitions") or 0,
                                          t.finished_at or ""))
        return max(hits, key=lambda t: t.finished_at or "") if hits else None


# --- cells --------------------------------------------------------------------------------------


def _ok(t: TrialResult | None) -> bool:
    return t is not None and t.status == "ok"


def _absent(t: TrialResult | None) -> str:
    if t is None:
        return "not measured"
    return "failed: " + " ".join((t.error or "unknown error").split())[:140]


def _value(t: TrialResult | None, metric: str) -> float | None:
    """Named figures of one trial, in the units their names carry."""
    if not _ok(t):
        return None
    sm, mem = t.summary, t.memory
    p = lambda d: d.get("value") if isinstance(d, dict) else d  # noqa: E731
    active_b = (t.model_facts or {}).get("params_active")
    active_b = active_b / 1e9 if active_b else None
    e2e_tok_s = sm.get("e2e_tokens_per_s")
    peak = mem.peak_allocated_bytes
    table = {
        "ttft_ms": sm.get("ttft_s_median") and sm["ttft_s_median"] * MS_PER_S,
        "e2e_p50_ms": p(sm.get("e2e_s_p50")) and p(sm.get("e2e_s_p50")) * MS_PER_S,
        "e2e_p95_ms": p(sm.get("e2e_s_p95")) and p(sm.get("e2e_s_p95")) * MS_PER_S,
        "e2e_p50_s": p(sm.get("e2e_s_p50")),
        "e2e_tok_s": e2e_tok_s,
        "decode_tok_s": sm.get("decode_tokens_per_s"),
        "tpot_ms": sm.get("tpot_s_median") and sm["tpot_s_median"] * MS_PER_S,
        "tok_per_j": sm.get("output_tokens_per_j"),
        "j_per_1k": sm.get("energy_gpu_j_per_1k_output_tokens"),
        "active_j_per_1k": sm.get("energy_gpu_active_j_per_1k_output_tokens"),
        "avg_w": sm.get("average_power_w"),
        "peak_mb": peak / BYTES_PER_MB if peak else None,
        "weights_mb": mem.weights_bytes / BYTES_PER_MB if mem.weights_bytes else None,
        "kv_measured_mb": mem.kv_measured_bytes / BYTES_PER_MB if mem.kv_measured_bytes is not None else None,
        "kv_analytic_mb": mem.kv_analytic_bytes / BYTES_PER_MB if mem.kv_analytic_bytes is not None else None,
        "activation_mb": mem.activation_peak_bytes / BYTES_PER_MB if mem.activation_peak_bytes is not None else None,
        "active_b": active_b,
        "ape_tok_s": e2e_tok_s / active_b if e2e_tok_s and active_b else None,
        "ape_inv_ttft": (1 / sm["ttft_s_median"]) / active_b if sm.get("ttft_s_median") and active_b else None,
        "ape_energy": sm.get("output_tokens_per_j") / active_b if sm.get("output_tokens_per_j") and active_b else None,
        "tok_s_per_gb": e2e_tok_s / (peak / BYTES_PER_GB) if e2e_tok_s and peak else None,
        "prefill_roofline_pct": sm.get("prefill_roofline_pct"),
        "decode_roofline_pct": sm.get("decode_roofline_pct"),
    }
    return table[metric]


def _ours(t: TrialResult | None, metric: str) -> str:
    if not _ok(t):
        return _absent(t)
    v = _value(t, metric)
    if v is None:
        if metric in ("tok_per_j", "j_per_1k", "active_j_per_1k", "avg_w", "ape_energy"):
            return "not measured: " + (t.summary.get("energy_not_measured_reason") or "no energy reading")
        if metric == "e2e_p95_ms":
            n = (t.summary.get("e2e_s_p95") or {}).get("n")
            return f"n too small (n={n})"
        return "not measured"
    if metric in ("e2e_p50_ms", "e2e_p95_ms"):
        n = (t.summary.get(metric.replace("_ms", "").replace("e2e_", "e2e_s_")) or {}).get("n")
        return f"{fmt_number(v)} (n={n})"
    return fmt_number(v)


def _pub(pub: dict, table: int, row: str, metric: str) -> Published | None:
    return pub.get((table, row, metric))


def _pub_cell(p: Published | None) -> str:
    if p is None:
        return MISSING
    if p.value is None:
        return p.note or MISSING
    return fmt_number(p.value)


def _ratio(ours: float | None, p: Published | None) -> str:
    if ours is None or p is None or p.value in (None, 0):
        return MISSING
    return f"{ours / p.value:.2f}"


def _triple(t: TrialResult | None, metric: str, p: Published | None) -> list[str]:
    return [_ours(t, metric), _pub_cell(p), _ratio(_value(t, metric), p)]


def _pct_change(new: float | None, old: float | None) -> str:
    if new is None or old in (None, 0):
        return MISSING
    return f"{100.0 * (new - old) / old:+.1f}"


# --- the report ---------------------------------------------------------------------------------


@dataclass
class _Ctx:
    study: Any
    index: TrialIndex
    pub: dict
    roles: list[str]
    model: dict[str, str]  # role -> model that ran
    label: dict[str, str]  # role -> display label
    pubname: dict[str, str]  # role -> row name in the published tables
    gen: int
    headline: int
    core_ctx: list[int]
    ablation_ctx: list[int]
    short_ctx: int


def _resolve_roles(study: Any, trials: Sequence[TrialResult]) -> tuple[dict[str, str], dict[str, str]]:
    """role -> model actually stored; tiny stand-ins are used (and labelled) when only they are stored."""
    from wattlens.runner.study import TINY_STANDINS

    stored = {t.spec.model for t in trials}
    model, label = {}, {}
    pubnames = study.data.get("published_names") or {}
    for role, name in study.roles.items():
        ran = study.model_for_role(role)
        if ran == name and name not in stored and TINY_STANDINS.get(name) in stored:
            ran = TINY_STANDINS[name]
        model[role] = ran
        shown = pubnames.get(role, name)
        label[role] = shown if ran == name else f"{shown} (stand-in: {ran})"
    return model, label


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return markdown_table(TextTable(tuple(headers), rows))


def _t1(c: _Ctx) -> tuple[str, list[str]]:
    h = ["model", "TTFT ms ours", "TTFT ms published", "ratio", "E2E p50 ms ours (n)", "E2E p50 ms published",
         "ratio", "E2E p95 ms ours (n)", "E2E p95 ms published", "ratio", "tok/s (gen/E2E) ours",
         "'TPOT' tok/s published", "ratio", "decode tok/s (1/TPOT) ours", "TPOT ms ours"]
    rows = []
    for r in c.roles:
        t = c.index.get(c.model[r], c.headline)
        n = c.pubname[r]
        rows.append([c.label[r], *_triple(t, "ttft_ms", _pub(c.pub, 1, n, "ttft_ms")),
                     *_triple(t, "e2e_p50_ms", _pub(c.pub, 1, n, "e2e_p50_ms")),
                     *_triple(t, "e2e_p95_ms", _pub(c.pub, 1, n, "e2e_p95_ms")),
                     *_triple(t, "e2e_tok_s", _pub(c.pub, 1, n, "tpot_tok_s")),
                     _ours(t, "decode_tok_s"), _ours(t, "tpot_ms")])
    return f"Table 1: latency at context {c.headline}, {c.gen} generated tokens (eager, bf16, greedy)", [_table(h, rows)]


def _sweep_table(c: _Ctx, table: int, metric: str, pub_metric: str, what: str, extra: str | None) -> list[str]:
    h = ["context"]
    for r in c.roles:
        h += [f"{c.label[r]} ours", "published", "ratio"] + ([f"{c.label[r]} {extra} ours"] if extra else [])
    rows = []
    for ctx in c.core_ctx:
        row = [str(ctx)]
        for r in c.roles:
            t = c.index.get(c.model[r], ctx)
            row += _triple(t, metric, _pub(c.pub, table, f"{c.pubname[r]}@{ctx}", pub_metric))
            if extra:
                row.append(_ours(t, "decode_tok_s"))
        rows.append(row)
    return [f"Values: {what}.", "", _table(h, rows)]


def _t4(c: _Ctx) -> tuple[str, list[str]]:
    lo, hi = c.core_ctx[0], c.core_ctx[-1]
    h = ["model", f"Δ tok/s (gen/E2E) % ours", "Δ % published", f"tok/s@{lo} ours", "published",
         f"tok/s@{hi} ours", "published", "Δ decode tok/s (1/TPOT) % ours"]
    rows = []
    for r in c.roles:
        a, b = c.index.get(c.model[r], lo), c.index.get(c.model[r], hi)
        n = c.pubname[r]
        rows.append([c.label[r], _pct_change(_value(b, "e2e_tok_s"), _value(a, "e2e_tok_s")),
                     _pub_cell(_pub(c.pub, 4, n, "tpot_change_pct")),
                     _ours(a, "e2e_tok_s"), _pub_cell(_pub(c.pub, 2, f"{n}@{lo}", "tpot_tok_s")),
                     _ours(b, "e2e_tok_s"), _pub_cell(_pub(c.pub, 2, f"{n}@{hi}", "tpot_tok_s")),
                     _pct_change(_value(b, "decode_tok_s"), _value(a, "decode_tok_s"))])
    return f"Table 4: throughput change from context {lo} to {hi} (negative is a decline)", [_table(h, rows)]


def _t5(c: _Ctx) -> tuple[str, list[str]]:
    h = ["model", "peak MB ours", "peak MB published", "ratio", "Δ vs GPT-OSS MB ours", "Δ published",
         "% less than this model ours", "% less published", "weights MB ours", "after-load GB published",
         "KV measured MB ours", "KV analytic MB", "activations MB ours"]
    moe = c.index.get(c.model[c.roles[0]], c.headline)
    moe_peak = _value(moe, "peak_mb")
    rows = []
    for r in c.roles:
        t = c.index.get(c.model[r], c.headline)
        n = c.pubname[r]
        peak = _value(t, "peak_mb")
        delta = fmt_number(peak - moe_peak) if peak is not None and moe_peak is not None else MISSING
        less = f"{100 * (peak - moe_peak) / peak:.2f}" if peak and moe_peak is not None else MISSING
        rows.append([c.label[r], *_triple(t, "peak_mb", _pub(c.pub, 5, n, "peak_vram_mb")), delta,
                     _pub_cell(_pub(c.pub, 5, n, "delta_vs_gpt_oss_mb")), less,
                     _pub_cell(_pub(c.pub, 5, n, "pct_less_vs_baseline")), _ours(t, "weights_mb"),
                     _pub_cell(_pub(c.pub, 5, n, "baseline_memory_gb")), _ours(t, "kv_measured_mb"),
                     _ours(t, "kv_analytic_mb"), _ours(t, "activation_mb")])
    return (f"Table 5: peak memory at context {c.headline}, {c.gen} generated tokens (allocator peak, KV cache held)",
            [_table(h, rows)])


def _t6(c: _Ctx) -> tuple[str, list[str]]:
    h = ["model", "tok/s (gen/E2E) ours", "published", "ratio", "tok/J ours", "'tokens/W' (= tok/J) published",
         "ratio", "J/1k tok ours", "J/1k published", "ratio", "avg W ours", "active (idle-subtracted) J/1k ours"]
    rows = []
    for r in c.roles:
        t = c.index.get(c.model[r], c.headline)
        n = c.pubname[r]
        rows.append([c.label[r], *_triple(t, "e2e_tok_s", _pub(c.pub, 6, n, "tpot_tok_s")),
                     *_triple(t, "tok_per_j", _pub(c.pub, 6, n, "tokens_per_j")),
                     *_triple(t, "j_per_1k", _pub(c.pub, 6, n, "j_per_1k_tokens")),
                     _ours(t, "avg_w"), _ours(t, "active_j_per_1k")])
    return f"Table 6: energy at context {c.headline}, {c.gen} generated tokens (gross GPU energy)", [_table(h, rows)]


def _t7(c: _Ctx) -> tuple[str, list[str]]:
    h = ["model"]
    for ctx in c.core_ctx:
        h += [f"J/1k @{ctx} ours", "published", "ratio"]
    rows = []
    for r in c.roles:
        row = [c.label[r]]
        for ctx in c.core_ctx:
            row += _triple(c.index.get(c.model[r], ctx), "j_per_1k",
                           _pub(c.pub, 7, f"{c.pubname[r]}@{ctx}", "j_per_1k_tokens"))
        rows.append(row)
    return f"Table 7: energy per 1k generated tokens (J) vs context ({c.gen} generated tokens)", [_table(h, rows)]


def _t8(c: _Ctx) -> tuple[str, list[str]]:
    h = ["model", "active B ours (analytic)", "active B published", "APE-tok/s ours", "published", "ratio",
         "APE-1/TTFT ours", "published", "ratio", "APE-energy (tok/J/B) ours", "published", "ratio",
         "tok/s per peak GB ours", "published", "ratio"]
    rows = []
    for r in c.roles:
        t = c.index.get(c.model[r], c.headline)
        n = c.pubname[r]
        rows.append([c.label[r], _ours(t, "active_b"), _pub_cell(_pub(c.pub, 8, n, "active_params_b")),
                     *_triple(t, "ape_tok_s", _pub(c.pub, 8, n, "ape_tpot")),
                     *_triple(t, "ape_inv_ttft", _pub(c.pub, 8, n, "ape_inv_ttft")),
                     *_triple(t, "ape_energy", _pub(c.pub, 8, n, "ape_energy")),
                     *_triple(t, "tok_s_per_gb", _pub(c.pub, 8, n, "tpot_per_gb"))])
    return (f"Table 8: active-parameter efficiency (APE) at context {c.headline} (throughput = gen/E2E, as the paper "
            "computed it)", [_table(h, rows)])


def _sampling_of(value: Any) -> SamplingSpec:
    if value in (None, "greedy"):
        return SamplingSpec()
    return SamplingSpec(temperature=float(value.get("temperature", 0.0)), top_p=float(value.get("top_p", 1.0)),
                        top_k=int(value.get("top_k", 0)))


def _t9(c: _Ctx) -> tuple[str, list[str]]:
    moe = c.model[c.roles[0]]
    settings = c.study.data.get("decoding") or {"greedy": "greedy"}
    h = ["method", "sampling", "p50 tok/s (gen/E2E p50) ours", "published", "ratio", "p50 time s ours", "published",
         "Δ vs greedy % ours", "Δ published", "decode tok/s (1/TPOT) ours"]
    greedy = c.index.get(moe, c.short_ctx)
    g = _value(greedy, "e2e_p50_s")
    rows = []
    for label, value in settings.items():
        samp = _sampling_of(value)
        t = c.index.get(moe, c.short_ctx, sampling=samp)
        prow = label.split(" (")[0]
        p50_s = _value(t, "e2e_p50_s")
        tok_s = c.gen / p50_s if p50_s else None
        pub_tok = _pub(c.pub, 9, prow, "p50_tok_s")
        rows.append([label, samp.label(), fmt_number(tok_s) if tok_s else _ours(t, "e2e_p50_s"), _pub_cell(pub_tok),
                     _ratio(tok_s, pub_tok), _ours(t, "e2e_p50_s"), _pub_cell(_pub(c.pub, 9, prow, "p50_time_s")),
                     _pct_change(tok_s, c.gen / g if g else None),
                     _pub_cell(_pub(c.pub, 9, prow, "delta_vs_greedy_pct")), _ours(t, "decode_tok_s")])
    return (f"Table 9: decoding settings, {c.label[c.roles[0]]}, context {c.short_ctx}, {c.gen} generated tokens",
            [_table(h, rows)])


def _t10(c: _Ctx) -> tuple[str, list[str]]:
    moe = c.model[c.roles[0]]
    h = ["context", "p50 tok/s (gen/E2E p50) ours", "published", "ratio", "Δ vs first % ours", "Δ published",
         "decode tok/s (1/TPOT) ours", "TTFT ms ours"]
    base = None
    rows = []
    for ctx in c.ablation_ctx:
        t = c.index.get(moe, ctx)
        p50 = _value(t, "e2e_p50_s")
        tok_s = c.gen / p50 if p50 else None
        base = tok_s if base is None and ctx == c.ablation_ctx[0] else base
        p = _pub(c.pub, 10, str(ctx), "p50_tok_s")
        rows.append([str(ctx), fmt_number(tok_s) if tok_s else _ours(t, "e2e_p50_s"), _pub_cell(p), _ratio(tok_s, p),
                     _pct_change(tok_s, base), _pub_cell(_pub(c.pub, 10, str(ctx), "delta_vs_512_pct")),
                     _ours(t, "decode_tok_s"), _ours(t, "ttft_ms")])
    return f"Table 10: context scaling, {c.label[c.roles[0]]}, greedy, {c.gen} generated tokens", [_table(h, rows)]


def _t11(c: _Ctx) -> tuple[str, list[str]]:
    h = ["model", "precision", "p50 tok/s (gen/E2E p50) ours", "published", "ratio", "decode tok/s ours",
         "peak MB ours", "status ours", "published note"]
    rows = []
    dtypes = ("bf16", "fp16", "fp32")
    for r in c.roles:  # the MoE model always (the paper's ablation); a dense one where its part ran it
        if r != c.roles[0] and not any(c.index.get(c.model[r], c.short_ctx, dtype=d) for d in dtypes[1:]):
            continue
        for dtype in dtypes:
            t = c.index.get(c.model[r], c.short_ctx, dtype=dtype)
            p50 = _value(t, "e2e_p50_s")
            tok_s = c.gen / p50 if p50 else None
            p = _pub(c.pub, 11, dtype, "p50_tok_s") if r == c.roles[0] else None
            status = "ran" if _ok(t) else _absent(t)
            rows.append([c.label[r], dtype, fmt_number(tok_s) if tok_s else MISSING, _pub_cell(p) if p else MISSING,
                         _ratio(tok_s, p), _ours(t, "decode_tok_s") if _ok(t) else MISSING,
                         _ours(t, "peak_mb") if _ok(t) else MISSING, status, (p.note if p else "") or ""])
    return (f"Table 11: precision, context {c.short_ctx}, greedy (the paper ran GPT-OSS-20B only; fp16 and fp32 "
            "failed there with a dtype mismatch)", [_table(h, rows)])


def _t12(c: _Ctx) -> tuple[str, list[str]]:
    from wattlens.runner.study import vllm_status

    h = ["model", "serving", "context", "p50 tok/s (gen/E2E p50) ours", "published", "ratio", "p50 time s ours",
         "published", "decode tok/s (1/TPOT) ours", "TTFT ms ours", "J/1k tok ours", "notes"]
    names = {"eager": "transformers, dynamic cache (as published)", "static": "transformers, static cache",
             "compiled": "static cache + compiled, CUDA-graph decode step"}
    rows = []
    points = [(c.roles[0], "eager", c.short_ctx)] + [(r, m, c.headline) for r in c.roles for m in names]
    for r, mode, ctx in points:
        t = c.index.get(c.model[r], ctx, mode=mode)
        p50 = _value(t, "e2e_p50_s")
        tok_s = c.gen / p50 if p50 else None
        first = r == c.roles[0] and mode == "eager" and ctx == c.short_ctx
        p_tok = _pub(c.pub, 12, "transformers", "p50_tok_s") if first else None
        p_s = _pub(c.pub, 12, "transformers", "p50_time_s") if first else None
        serving = names[mode] + (" (regional: one compiled decoder-layer body)" if _regional(t) else "")
        rows.append([c.label[r], serving, str(ctx), fmt_number(tok_s) if tok_s else _absent(t) if not _ok(t) else
                     MISSING, _pub_cell(p_tok) if first else MISSING, _ratio(tok_s, p_tok), _ours(t, "e2e_p50_s"),
                     _pub_cell(p_s) if first else MISSING, _ours(t, "decode_tok_s"), _ours(t, "ttft_ms"),
                     _ours(t, "j_per_1k"), "compare with published" if first else ""])
    p_v = _pub(c.pub, 12, "vllm", "p50_tok_s")
    rows.append([c.label[c.roles[0]], "vLLM", str(c.headline), vllm_status(), _pub_cell(p_v), MISSING, MISSING,
                 MISSING, MISSING, MISSING, MISSING, ""])
    return f"Table 12: serving mode ({c.gen} generated tokens, bf16, greedy)", [_table(h, rows)]


def _regional(t: TrialResult | None) -> bool:
    """Whether a compiled trial ran with one compiled decoder-layer body: its spec says so, or (trials
    that chose it through $WATTLENS_COMPILE_SCOPE) the backend description it recorded does."""
    if t is None or t.spec.mode != "compiled":
        return False
    backend = (t.model_facts or {}).get("backend") or {}
    return t.spec.compile_scope == "layers" or backend.get("compile_scope") == "layers" or (
        "each decoder layer" in str(backend.get("decode_step", "")))


def _licence_class(licence: str | None) -> str:
    if not licence:
        return "unknown"
    if licence.strip().lower() in ("apache-2.0", "mit", "bsd-3-clause"):
        return "permissive"
    return "custom terms (read before deploying)"


def _t13(c: _Ctx) -> tuple[str, list[str]]:
    from wattlens.models.catalog import list_catalog

    entries = {e.name: e for e in list_catalog()}
    h = ["model", "licence (catalog)", "class (ours)", "model card (catalog hf_id)", "licence class published",
         "policy link published", "card link published", "safety features published (as documented)"]
    rows = []
    for r in c.roles:
        name = c.study.roles[r]  # the real model's metadata, even when a stand-in ran
        e = entries.get(name)
        n = c.pubname[r]
        note = lambda m: (_pub(c.pub, 13, n, m) or Published(None, "", MISSING)).note or MISSING  # noqa: E731
        rows.append([c.pubname[r], e.licence if e else "not in catalog", _licence_class(e.licence if e else None),
                     f"https://huggingface.co/{e.hf_id}" if e and e.hf_id else MISSING, note("license_class"),
                     note("policy_link"), note("card_link"), note("safety_features")])
    return ("Table 13: licence and governance (catalog metadata beside the paper's documentation review; "
            "nothing here is measured)", [_table(h, rows)])


def _kv_table(c: _Ctx) -> list[str]:
    from wattlens.core.units import dtype_bytes
    from wattlens.models.arithmetic import model_facts
    from wattlens.models.catalog import resolve_model

    h = ["model", "tokens held", "KV analytic B/token", "KV measured B/token", "measured / analytic",
         "KV B/token if every layer held every token", "KV B per extra token beyond the window",
         "sliding-window layers"]
    rows = []
    for r in c.roles:
        t = c.index.get(c.model[r], c.headline)
        tokens = c.headline + c.gen
        facts = model_facts(resolve_model(c.model[r]).config)
        nbytes = dtype_bytes("bf16")
        analytic = facts.kv_cache_bytes(tokens, nbytes) / tokens
        measured = t.memory.kv_measured_bytes / tokens if _ok(t) and t.memory.kv_measured_bytes is not None else None
        full = facts.kv_bytes_per_token(nbytes)
        growth = 2 * facts.num_kv_heads * facts.head_dim * nbytes * facts.n_full_layers
        sliding = (f"{facts.n_sliding_layers} of {facts.num_layers} (window {facts.sliding_window})"
                   if facts.n_sliding_layers else "none")
        rows.append([c.label[r], str(tokens), fmt_number(analytic),
                     fmt_number(measured) if measured is not None else _ours(t, "kv_measured_mb"),
                     f"{measured / analytic:.3f}" if measured and analytic else MISSING, fmt_number(full),
                     fmt_number(growth), sliding])
    return [_table(h, rows)]


def _answers(c: _Ctx) -> list[str]:
    moe_role, dense = c.roles[0], c.roles[1:]
    out = []
    # 1. decode speed and energy per token in every serving mode
    lines = []
    for mode in ("eager", "static", "compiled"):
        m = c.index.get(c.model[moe_role], c.headline, mode=mode)
        for r in dense:
            d = c.index.get(c.model[r], c.headline, mode=mode)
            if not (_ok(m) and _ok(d)):
                why = "; ".join(f"{c.label[x]}: {_absent(y)}" for x, y in ((moe_role, m), (r, d)) if not _ok(y))
                lines.append(f"- {mode}: vs {c.label[r]}: cannot say ({why}).")
                continue
            fm, fd = _value(m, "decode_tok_s"), _value(d, "decode_tok_s")
            em, ed = _value(m, "j_per_1k"), _value(d, "j_per_1k")
            faster = "faster" if fm and fd and fm > fd else "not faster"
            energy = ("energy not measured" if em is None or ed is None else
                      f"{'cheaper' if em < ed else 'not cheaper'} per token ({fmt_number(em)} vs {fmt_number(ed)} J/1k)")
            lines.append(f"- {mode}: vs {c.label[r]}: decode {faster} ({fmt_number(fm)} vs {fmt_number(fd)} tok/s, "
                         f"x{fm / fd:.2f}), {energy}.")
    out += ["**Does GPT-OSS-20B still decode faster and cheaper per token than the dense models in every serving "
            f"mode?** (context {c.headline}, decode tok/s = 1 / TPOT; energy per generated token over the request)", "",
            *lines, ""]
    # 2. TTFT, in every serving mode measured
    lines = []
    for mode in ("eager", "static", "compiled"):
        for ctx in c.core_ctx:
            m = c.index.get(c.model[moe_role], ctx, mode=mode)
            parts = []
            for r in dense:
                d = c.index.get(c.model[r], ctx, mode=mode)
                if _ok(m) and _ok(d):
                    tm, td = _value(m, "ttft_ms"), _value(d, "ttft_ms")
                    parts.append(f"{'higher' if tm > td else 'lower'} than {c.label[r]} ({fmt_number(tm)} vs "
                                 f"{fmt_number(td)} ms)")
            if parts:
                lines.append(f"- {mode}, context {ctx}: GPT-OSS-20B TTFT is " + "; ".join(parts) + ".")
    why, attention = [], {}
    for mode in ("eager", "compiled"):
        for r in [moe_role, *dense]:
            t = c.index.get(c.model[r], c.headline, mode=mode)
            if _ok(t) and _value(t, "prefill_roofline_pct") is not None:
                why.append(f"{c.label[r]} ({mode}) reaches {fmt_number(_value(t, 'prefill_roofline_pct'))}% of the "
                           "GPU's peak dense FLOP/s in its prefill")
            if _ok(t):
                attention[c.label[r]] = ((t.model_facts or {}).get("backend") or {}).get("attn_implementation")
    out += ["**Is its TTFT really higher, and why?**", "", *(lines or ["- not measured yet."]), ""]
    if why:
        text = ("Prefill efficiency at the headline context: " + "; ".join(why) + ". GPT-OSS-20B's prefill needs "
                "far fewer FLOPs (3.6 B active parameters against 32-34 B), so a TTFT that is not lower in "
                "proportion is time spent outside dense arithmetic.")
        kinds = {k: v for k, v in attention.items() if v}
        if len(set(kinds.values())) > 1:
            text += (" Attention implementations as recorded: " + ", ".join(f"{k} `{v}`" for k, v in kinds.items())
                     + " (an `eager` attention writes the full score matrix of every head to memory).")
        text += (" Candidates, not profiled here: that attention path and the MoE layers' expert dispatch "
                 "(gathers and small per-expert matrix products); the paper's 'routing overhead' may be either, "
                 "an implementation cost rather than something inherent to MoE.")
        out += [text, ""]
    else:
        out += ["Prefill roofline figures need a GPU run (they compare the prefill with the GPU's peak FLOP/s).", ""]
    # 3. KV
    out += ["**What is each model's true KV footprint per token?** Analytic bytes per token (sliding-window layers "
            "capped at their window, averaged over the tokens held) beside the measured allocator delta held "
            f"after generation, at context {c.headline} + {c.gen} generated tokens, bf16:", "", *_kv_table(c), ""]
    return out


def _context_plot(c: _Ctx, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("decode_tok_s", "e2e_tok_s", 2, "tpot_tok_s", "tokens/s", "throughput (solid: ours 1/TPOT; dotted: "
               "ours gen/E2E; dashed: published)"),
              ("ttft_ms", None, 3, "ttft_ms", "TTFT ms", "time to first token"),
              ("j_per_1k", None, 7, "j_per_1k_tokens", "J per 1k generated tokens", "energy per 1k tokens (gross)")]
    for ax, (metric, alt, table, pmetric, ylabel, title) in zip(axes, panels):
        for i, r in enumerate(c.roles):
            color = f"C{i}"
            xs = [ctx for ctx in c.core_ctx if _value(c.index.get(c.model[r], ctx), metric) is not None]
            ax.plot(xs, [_value(c.index.get(c.model[r], x), metric) for x in xs], "o-", color=color,
                    label=f"{c.label[r]} ours")
            if alt:
                ax.plot(xs, [_value(c.index.get(c.model[r], x), alt) for x in xs], "o:", color=color)
            pts = [(ctx, _pub(c.pub, table, f"{c.pubname[r]}@{ctx}", pmetric)) for ctx in c.core_ctx]
            pts = [(x, p.value) for x, p in pts if p is not None and p.value is not None]
            if pts:
                ax.plot([x for x, _ in pts], [v for _, v in pts], "s--", color=color, alpha=0.6,
                        label=f"{c.pubname[r]} published (H100 NVL)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context tokens")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{c.study.title}: context sweeps ({c.gen} generated tokens, eager, bf16)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _memory_plot(c: _Ctx, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = []
    for i, r in enumerate(c.roles):
        t = c.index.get(c.model[r], c.headline)
        labels.append(c.label[r])
        w = (_value(t, "weights_mb") or 0) / 1e3
        kv = (_value(t, "kv_measured_mb") or 0) / 1e3
        act = (_value(t, "activation_mb") or 0) / 1e3
        ax.bar(i, w, color="C0", label="weights" if i == 0 else None)
        ax.bar(i, kv, bottom=w, color="C1", label="KV cache (held)" if i == 0 else None)
        ax.bar(i, act, bottom=w + kv, color="C2", label="activations (peak)" if i == 0 else None)
        p = _pub(c.pub, 5, c.pubname[r], "peak_vram_mb")
        if p is not None and p.value is not None:
            ax.plot([i - 0.4, i + 0.4], [p.value / 1e3] * 2, "k--", label="published peak (H100 NVL)" if i == 0
                    else None)
        if not _ok(t) or t.memory.weights_bytes is None:
            ax.text(i, 0.5, "not measured", ha="center", rotation=90, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("decimal GB")
    ax.set_title(f"Memory at context {c.headline} + {c.gen} generated tokens (allocator)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


TABLE_RENDERERS = (
    ("t1", _t1),
    ("t2", lambda c: (f"Table 2: throughput vs context ({c.gen} generated tokens)",
                      _sweep_table(c, 2, "e2e_tok_s", "tpot_tok_s", "tok/s as the paper computed it (gen / E2E); "
                                   "the extra column is our decode tok/s (1 / TPOT)", "decode tok/s"))),
    ("t3", lambda c: (f"Table 3: TTFT (ms) vs context ({c.gen} generated tokens; TTFT includes prefill)",
                      _sweep_table(c, 3, "ttft_ms", "ttft_ms", "median TTFT in ms", None))),
    ("t4", _t4), ("t5", _t5), ("t6", _t6), ("t7", _t7), ("t8", _t8), ("t9", _t9), ("t10", _t10), ("t11", _t11),
    ("t12", _t12), ("t13", _t13),
)


def _make_ctx(study: Any, trials: Sequence[TrialResult]) -> _Ctx:
    data = study.data
    model, label = _resolve_roles(study, trials)
    roles = list(study.roles)
    gen = int(data.get("gen_tokens", 64))
    return _Ctx(study=study, index=TrialIndex([t for t in trials if t.spec.model in set(model.values())], gen),
                pub=load_published(study.published_path), roles=roles, model=model, label=label,
                pubname={r: (data.get("published_names") or {}).get(r, study.roles[r]) for r in roles},
                gen=gen, headline=int(data.get("headline_ctx_tokens", 2048)),
                core_ctx=[int(x) for x in data.get("core_ctx_tokens", [128, 512, 1024, 2048])],
                ablation_ctx=[int(x) for x in data.get("ablation_ctx_tokens", [512, 1024, 2048, 4096])],
                short_ctx=int(data.get("ablation_short_ctx_tokens", 128)))


def render_study_markdown(study: Any, trials: Sequence[TrialResult], runs: Sequence[RunInfo],
                          note: str | None = None, plots: Sequence[str] = ()) -> str:
    """The whole report as markdown (plots referenced by file name)."""
    data = study.data
    c = _make_ctx(study, trials)
    model, label = c.model, c.label
    mine = c.index.trials
    gpus = sorted({t.gpu_name for t in mine if t.gpu_name}) or ["no GPU (CPU run: energy and memory not measured)"]
    gpu = ", ".join(gpus)
    ok_ids = {t.trial_id for t in mine if t.status == "ok"}
    mapped = {k: v for k, v in model.items() if v != study.roles[k]}
    out = [f"# {study.title}: reproduction with wattlens", ""]
    if note:
        out += [f"> **{note}**", ""]
    out += [f"Paper: {data.get('paper', '')}. Study definition: `{study.source.name}`; published figures: "
            f"`{study.published_path.name if study.published_path else 'none'}`.", ""]
    if mapped:
        out += ["> **Stand-in models:** " + ", ".join(f"{label[r]}" for r in mapped) + ". These tiny models check the "
                "pipeline; their numbers say nothing about the real models.", ""]
    weights = sorted({t.weights for t in mine})
    out += [f"**Weights: {', '.join(weights) or 'none'}.** Random weights are built from each model's config; speed, "
            "memory and energy depend on shapes and dtypes, not on weight values.", "",
            f"**Ours: {gpu}.** " + PUBLISHED_GPU_NOTE.format(gpu=gpu), ""]
    n_expected = len(study.all_specs())
    done = sum(1 for s in study.all_specs() if s.trial_id in ok_ids) if not mapped else None
    if done is not None:
        failed_ids = {t.trial_id for t in mine if t.status != "ok"}
        failed = sum(1 for s in study.all_specs() if s.trial_id in failed_ids and s.trial_id not in ok_ids)
        pending = n_expected - done - failed
        out += [f"Coverage: {done} of {n_expected} trials of the study definition are stored as ok, {failed} failed "
                f"(listed under 'Failed and skipped trials'), {pending} not run"
                + (" (partial)." if pending else "."), ""]
    out += ["## Measurement differences from the published study", "", DIFFERENCES.format(gpu=gpu), ""]
    out += ["## Answers", "", *_answers(c)]
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    for key, fn in TABLE_RENDERERS:
        title, body = fn(c)
        out += [f"## {title}", "", *body, ""]
        if key != "t13":
            out += [PUBLISHED_GPU_NOTE.format(gpu=gpu), ""]
    failed = [t for t in mine if t.status != "ok"]
    if failed:
        out += ["## Failed and skipped trials", "", markdown_table(render_failed_table(failed)), ""]
    used_runs = [r for r in runs if r.run_id in {t.run_id for t in mine}]
    if used_runs:
        envs = [environment_summary(r) for r in used_runs]
        out += ["## Environment", "", markdown_table(TextTable(tuple(envs[0]), [list(e.values()) for e in envs])), ""]
        out += ["Commands: " + "; ".join(f"`{r.command}`" for r in used_runs if r.command), ""]
        out += ["## GPU time", "", *render_gpu_time(used_runs, mine), ""]
    return "\n".join(out).rstrip() + "\n"


def _wall_s(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def render_gpu_time(runs: Sequence[RunInfo], trials: Sequence[TrialResult]) -> list[str]:
    """How long the study held the GPU, per run and in all, with the trials' time split by serving
    mode and the setup (compile / capture) the trials recorded: the issue's time budget, stated."""
    modes = ("eager", "static", "compiled")
    header = ("run", "command", "started", "wall s", "trials ok / failed", *(f"{m} s" for m in modes),
              "setup s (recorded)")
    rows, total, by_mode, setup_total = [], 0.0, dict.fromkeys(modes, 0.0), 0.0
    for r in runs:
        mine = [t for t in trials if t.run_id == r.run_id]
        wall = _wall_s(r.started_at, r.finished_at)
        mode_s = {m: sum(_wall_s(t.started_at, t.finished_at) or 0.0 for t in mine if t.spec.mode == m) for m in modes}
        setup = sum(t.model_facts.get("backend", {}).get("setup_s", 0.0) for t in mine if t.model_facts)
        total += wall or 0.0
        setup_total += setup
        for m in modes:
            by_mode[m] += mode_s[m]
        ok = sum(1 for t in mine if t.status == "ok")
        rows.append([r.run_id, r.command.split(" --db")[0] if r.command else MISSING, r.started_at,
                     fmt_number(wall) if wall is not None else MISSING, f"{ok} / {len(mine) - ok}",
                     *(fmt_number(mode_s[m]) for m in modes), fmt_number(setup) if setup else MISSING])
    return [markdown_table(TextTable(header, rows)), "",
            f"Total: **{total:.0f} s = {total / 60:.1f} minutes** of wall time in {len(runs)} run(s), from each "
            f"run's start (after process start-up and model import) to its end; trials by mode: "
            + ", ".join(f"{m} {v:.0f} s" for m, v in by_mode.items())
            + (f"; of the trials' time, {setup_total:.0f} s was setup (model preparation and warm-ups, compile "
               "and CUDA-graph capture included) where trials recorded it." if setup_total else
               "; these trials predate setup recording (compile time is inside the static and compiled figures).")]


def write_study_report(study: Any, trials: Sequence[TrialResult], runs: Sequence[RunInfo], out_dir: Path | str,
                       note: str | None = None) -> list[Path]:
    """report.md plus context_sweeps.png and memory_breakdown.png in `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = _make_ctx(study, trials)
    written = []
    plots = []
    try:
        _context_plot(c, out_dir / "context_sweeps.png")
        _memory_plot(c, out_dir / "memory_breakdown.png")
        plots = ["context_sweeps.png", "memory_breakdown.png"]
        written += [out_dir / p for p in plots]
    except ImportError:  # matplotlib is optional (the `plot` extra)
        note = (note + " " if note else "") + "(plots skipped: matplotlib not installed)"
    md = out_dir / "report.md"
    md.write_text(render_study_markdown(study, trials, runs, note=note, plots=plots))
    return [md, *written]
