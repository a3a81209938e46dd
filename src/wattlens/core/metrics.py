"""Metric definitions, written once (docs/metrics.md explains each).

Pure functions over numbers and result objects; no I/O, no torch. Where a figure cannot be
computed honestly (too few samples, energy not measured) the function returns None and the
caller shows the reason; nothing here invents a value.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from wattlens.core.results import Repetition

# The fewest samples a percentile needs before it is more than the max (DESIGN.md section 3).
MIN_SAMPLES_FOR_PERCENTILE = {50: 1, 90: 10, 95: 20, 99: 100}


def ttft_s(token_times_s: Sequence[float]) -> float:
    """Time to first token: request start to the first output token, prefill included."""
    return float(token_times_s[0])


def tpot_s(e2e_s: float, ttft: float, n_out: int) -> float | None:
    """Time per output token after the first: (E2E - TTFT) / (n_out - 1). None for n_out < 2."""
    if n_out < 2:
        return None
    return (e2e_s - ttft) / (n_out - 1)


def itl_s(token_times_s: Sequence[float]) -> list[float]:
    """Every gap between consecutive output tokens (inter-token latencies)."""
    t = np.asarray(token_times_s, dtype=float)
    return np.diff(t).tolist()


def decode_tokens_per_s(tpot: float | None, batch_size: int) -> float | None:
    """Decode throughput: batch / TPOT (tokens per second over all sequences)."""
    if tpot is None or tpot <= 0:
        return None
    return batch_size / tpot


def percentile(values: Sequence[float], q: int) -> dict[str, Any]:
    """Percentile q with its sample count; value None and a note when n is too small for q."""
    n = len(values)
    need = MIN_SAMPLES_FOR_PERCENTILE.get(q, 1)
    if n == 0:
        return {"value": None, "n": 0, "note": "no samples"}
    if n < need:
        return {"value": None, "n": n, "note": f"n too small (p{q} needs >= {need})"}
    return {"value": float(np.percentile(np.asarray(values, dtype=float), q)), "n": n, "note": None}


def ratio_or_none(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def roofline_decode_tokens_per_s(bytes_per_step: float, batch_size: int, hbm_bytes_per_s: float) -> float:
    """Upper bound on decode throughput: every step must read its bytes once from HBM."""
    return batch_size * hbm_bytes_per_s / bytes_per_step


def roofline_prefill_s(flops: float, peak_flops_per_s: float) -> float:
    """Lower bound on prefill time: its FLOPs at the GPU's peak dense rate."""
    return flops / peak_flops_per_s


def summarise_repetitions(
    reps: Sequence[Repetition],
    *,
    params_active: float | None = None,
    peak_memory_bytes: float | None = None,
    decode_bytes_per_step: float | None = None,
    prefill_flops: float | None = None,
    hbm_bytes_per_s: float | None = None,
    peak_flops_per_s: float | None = None,
) -> dict[str, Any]:
    """Trial-level metrics from repetitions; every name carries its unit.

    The roofline and APE inputs are plain numbers so this module needs neither the model nor the
    GPU layer. Energy figures are None (with the reason) when any repetition was not measured.
    """
    if not reps:
        return {}
    batch = reps[0].batch_size
    n_out = reps[0].output_tokens
    ttfts = [r.ttft_s for r in reps]
    e2es = [r.e2e_s for r in reps]
    tpots = [t for t in (tpot_s(r.e2e_s, r.ttft_s, r.output_tokens) for r in reps) if t is not None]
    itls = [gap for r in reps for gap in itl_s(r.token_times_s)]

    out: dict[str, Any] = {
        "n_repetitions": len(reps),
        "batch_size": batch,
        "input_tokens": reps[0].input_tokens,
        "output_tokens": n_out,
        "ttft_s_median": statistics.median(ttfts),
        "ttft_s_list": ttfts,
        "e2e_s_median": statistics.median(e2es),
        "e2e_s_p50": percentile(e2es, 50),
        "e2e_s_p95": percentile(e2es, 95),
        "e2e_s_p99": percentile(e2es, 99),
        "tpot_s_median": statistics.median(tpots) if tpots else None,
        "itl_s_p50": percentile(itls, 50),
        "itl_s_p95": percentile(itls, 95),
        "itl_s_p99": percentile(itls, 99),
        "itl_s_list": [list(itl_s(r.token_times_s)) for r in reps],
    }
    tpot_med = out["tpot_s_median"]
    out["decode_tokens_per_s"] = decode_tokens_per_s(tpot_med, batch)
    out["e2e_tokens_per_s"] = batch * n_out / out["e2e_s_median"] if out["e2e_s_median"] > 0 else None

    # Energy: per repetition, then the median. Output tokens count every sequence of the batch.
    tokens_per_rep = batch * n_out
    windows = [r.energy for r in reps]
    if all(w.measured for w in windows):
        gross = [w.energy_gpu_j for w in windows]
        active = [w.energy_gpu_active_j for w in windows]
        unc = [w.energy_gpu_uncertainty_j or 0.0 for w in windows]
        e_med = statistics.median(gross)
        out.update(
            energy_measured=True,
            energy_not_measured_reason=None,
            energy_gpu_j_median=e_med,
            energy_gpu_j_uncertainty=statistics.median(unc),
            energy_gpu_active_j_median=statistics.median(active) if all(a is not None for a in active) else None,
            energy_gpu_j_per_output_token=e_med / tokens_per_rep,
            energy_gpu_j_per_1k_output_tokens=1000.0 * e_med / tokens_per_rep,
            energy_gpu_j_per_prompt=e_med / batch,
            output_tokens_per_j=tokens_per_rep / e_med if e_med > 0 else None,
            average_power_w=statistics.median([w.average_power_w for w in windows]),
            energy_flags=sorted({f for w in windows for f in w.flags}),
        )
        if out["energy_gpu_active_j_median"] is not None:
            a_med = out["energy_gpu_active_j_median"]
            out["energy_gpu_active_j_per_output_token"] = a_med / tokens_per_rep
            out["energy_gpu_active_j_per_1k_output_tokens"] = 1000.0 * a_med / tokens_per_rep
            out["output_tokens_per_active_j"] = tokens_per_rep / a_med if a_med > 0 else None
    else:
        reason = next((w.not_measured_reason for w in windows if not w.measured), None)
        out.update(
            energy_measured=False,
            energy_not_measured_reason=reason or "energy not measured",
            energy_gpu_j_median=None,
            energy_gpu_j_uncertainty=None,
            energy_gpu_active_j_median=None,
            energy_gpu_j_per_output_token=None,
            energy_gpu_j_per_1k_output_tokens=None,
            energy_gpu_j_per_prompt=None,
            output_tokens_per_j=None,
            average_power_w=None,
            energy_flags=sorted({f for w in windows for f in w.flags}),
        )

    # APE (GPT-OSS study): metric per active billion parameters; throughput per decimal GB of peak memory.
    active_b = params_active / 1e9 if params_active else None
    out["ape_decode_tokens_per_s_per_active_b"] = ratio_or_none(out["decode_tokens_per_s"], active_b)
    out["ape_output_tokens_per_j_per_active_b"] = ratio_or_none(out.get("output_tokens_per_j"), active_b)
    inv_ttft = 1.0 / out["ttft_s_median"] if out["ttft_s_median"] > 0 else None
    out["ape_inv_ttft_per_s_per_active_b"] = ratio_or_none(inv_ttft, active_b)
    peak_gb = peak_memory_bytes / 1e9 if peak_memory_bytes else None
    out["decode_tokens_per_s_per_peak_gb"] = ratio_or_none(out["decode_tokens_per_s"], peak_gb)

    # Roofline: achieved / bound, as a percentage.
    if decode_bytes_per_step and hbm_bytes_per_s and out["decode_tokens_per_s"]:
        bound = roofline_decode_tokens_per_s(decode_bytes_per_step, batch, hbm_bytes_per_s)
        out["decode_roofline_tokens_per_s"] = bound
        out["decode_roofline_pct"] = 100.0 * out["decode_tokens_per_s"] / bound
    else:
        out["decode_roofline_tokens_per_s"] = None
        out["decode_roofline_pct"] = None
    if prefill_flops and peak_flops_per_s:
        bound_s = roofline_prefill_s(prefill_flops, peak_flops_per_s)
        out["prefill_roofline_s"] = bound_s
        out["prefill_roofline_pct"] = 100.0 * bound_s / out["ttft_s_median"]
    else:
        out["prefill_roofline_s"] = None
        out["prefill_roofline_pct"] = None
    return out
