"""Turn stored trials into predictor dataset rows (one per trial x output length).

Per-prompt energy = batch energy / prompts (From Prompts to Power's definition). A repetition
yields one row at its full output length; when the runner stored counter reads at selected
tokens (`token_energy_reads`: (token, seconds since window start, joules since window start)),
`token_energy.energy_at_output_lengths` expands it to every requested output length. Across
repetitions the median is kept, and the uncertainty is the larger of the reads' own error and the
spread of the repetitions (half the interquartile range).

Rows of static-cache modes carry `cache_tokens`, the slots every decode step attended over (the
cache of the whole generation, not of the row's output length).

Ragged (mixed-size) trials are not training rows: `rows_from_trials` skips them and
`mixed_rows_from_trials` returns them, one record per batch, for the study's Fig. 12 validation
(measured batch energy vs the sum of per-prompt predictions).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from wattlens.analysis.predictor import DATASET_COLUMNS, model_family
from wattlens.analysis.token_energy import energy_at_output_lengths
from wattlens.models.build import kv_cache_copied_per_step, kv_copied_attention_record

# Output lengths whose batch energy is known worse than this (1 sigma / value) are not rows: with a
# 100 ms counter the first tens of tokens of a fast model are not resolved (token_energy.py).
DEFAULT_MAX_REL_UNCERTAINTY = 0.05
DEFAULT_OUTPUT_GRID = (1, 2, 4, 8, 16, 32, 64, 100, 128, 200, 256, 300, 400, 512, 600, 700, 800, 900, 1000, 1024)


def _iqr_half(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[2] - q[0]) / 2.0


def run_versions(environment: dict | None) -> dict[str, str]:
    """The software versions a dataset row records, from a stored run's environment."""
    e = environment or {}
    libs = e.get("libraries") or {}
    return {"wattlens_version": str(libs.get("wattlens") or ""), "torch_version": str(libs.get("torch") or ""),
            "transformers_version": str(libs.get("transformers") or ""),
            "driver_version": str(e.get("driver_version") or "")}


def static_cache_tokens(trial: Any) -> int | str:
    """Slots of the static KV cache the trial's decode steps attended over ("" in eager mode).

    The backend records what it allocated (`static_cache_tokens`); stores from before it did are
    read as input + generated tokens, which is what the lean loop allocates for a fresh shape (it
    matched the measured KV bytes of every graphed trial of the campaign)."""
    spec = trial.spec
    if spec.mode == "eager":
        return ""
    recorded = ((trial.model_facts or {}).get("backend") or {}).get("static_cache_tokens")
    return int(recorded) if recorded else spec.ctx_tokens + spec.gen_tokens


def recorded_decode_attention(model_facts: dict) -> str:
    """The trial's recorded decode attention; for an architecture whose own attention copies its KV cache
    each step (`models.build.KV_CACHE_COPIED_PER_STEP`), that reason instead, for trials recorded before
    the backend said so (DiffLlama's first trials, session 16, say "each KV head read once")."""
    recorded = (model_facts.get("backend") or {}).get("decode_attention") or ""
    copied = kv_cache_copied_per_step(model_facts.get("model_type"))
    if copied and copied not in recorded:
        return kv_copied_attention_record(recorded.split(" (")[0], copied)
    return recorded


def rows_from_trials(trials: Iterable[Any], env: dict | None = None,
                     output_grid: Sequence[int] = DEFAULT_OUTPUT_GRID,
                     max_rel_uncertainty: float | None = DEFAULT_MAX_REL_UNCERTAINTY) -> list[dict[str, Any]]:
    """Dataset rows (dicts with `DATASET_COLUMNS`) from `TrialResult`s of status 'ok'.

    `max_rel_uncertainty` drops output lengths whose batch energy is known worse than that
    fraction (1 sigma); None keeps every length with an energy.
    """
    env = env or {}
    rows = []
    for t in trials:
        if t.status != "ok" or not t.repetitions or t.spec.prompt_lengths:
            continue  # ragged batches validate the predictor; they are not rows of one input length
        spec = t.spec
        per_len: dict[int, list[tuple[float, float, float]]] = {}  # n -> [(energy J, sd J, time s)]
        for rep in t.repetitions:
            w = rep.energy
            if w is None or w.energy_gpu_j is None:
                continue
            reads = getattr(rep, "token_energy_reads", None)
            if reads and rep.token_times_s:
                wanted = sorted({n for n in output_grid if n <= len(rep.token_times_s)} | {len(rep.token_times_s)})
                for pe in energy_at_output_lengths(rep.token_times_s, reads, wanted, w.update_period_s or 0.1):
                    if pe.energy_j is not None:
                        per_len.setdefault(pe.output_tokens, []).append((pe.energy_j, pe.uncertainty_j, pe.time_s))
            else:
                per_len.setdefault(rep.output_tokens, []).append(
                    (w.energy_gpu_j, w.energy_gpu_uncertainty_j or 0.0, rep.e2e_s))
        has_reads = any(getattr(rep, "token_energy_reads", None) for rep in t.repetitions)
        for n, vals in sorted(per_len.items()):
            energies = [v[0] for v in vals]
            e = statistics.median(energies)
            unc = max(statistics.median([v[1] for v in vals]), _iqr_half(energies))
            if max_rel_uncertainty is not None and not (e > 0 and unc <= max_rel_uncertainty * e):
                continue
            b = spec.batch_size
            overrides = dict(spec.overrides)
            rows.append({
                "model": spec.model, "family": model_family(spec.model),
                "overrides_json": json.dumps(overrides, sort_keys=True) if overrides else "", "config_json": "",
                "gpu_name": t.gpu_name, "gpu_count": len((t.repetitions[0].energy.per_gpu_energy_j or (0,))),
                "dtype": spec.dtype, "mode": spec.mode, "input_tokens": spec.ctx_tokens, "output_tokens": n,
                "batch_size": b, "cache_tokens": static_cache_tokens(t), "energy_batch_j": e,
                "energy_batch_uncertainty_j": unc,
                "energy_per_prompt_j": e / b, "energy_per_prompt_uncertainty_j": unc / b,
                "energy_per_output_token_j": e / (b * n), "time_s": statistics.median([v[2] for v in vals]),
                "energy_source": "counter reads at tokens" if has_reads else "energy window",
                "trial_id": spec.trial_id, "run_id": t.run_id, "measured_at": t.started_at,
                "wattlens_version": env.get("wattlens_version", ""), "torch_version": env.get("torch_version", ""),
                "transformers_version": env.get("transformers_version", ""),
                "driver_version": env.get("driver_version", ""),
                "decode_attention": recorded_decode_attention(t.model_facts or {}),
            })
    return [{k: r.get(k, "") for k in DATASET_COLUMNS} for r in rows]


MIXED_COLUMNS = (
    "model", "family", "overrides_json", "gpu_name", "gpu_count", "dtype", "mode", "prompt_lengths_json",
    "padded_input_tokens", "output_tokens", "batch_size", "energy_batch_j", "energy_batch_uncertainty_j",
    "repetitions", "trial_id", "run_id",
)


def rows_from_runs(runs: Iterable[Any], trials: Iterable[Any], **options: Any) -> list[dict[str, Any]]:
    """`rows_from_trials` for the trials of a store or export, each row with its own run's software
    versions (`run_versions`); `options` go to `rows_from_trials`."""
    versions = {r.run_id: run_versions(r.environment) for r in runs}
    rows: list[dict[str, Any]] = []
    for t in trials:
        rows += rows_from_trials([t], versions.get(t.run_id, {}), **options)
    return rows


def mixed_rows_from_trials(trials: Iterable[Any]) -> list[dict[str, Any]]:
    """One record (`MIXED_COLUMNS`) per ragged trial of status 'ok' with measured energy.

    The batch energy is the median over repetitions of the whole window's GPU energy; its
    uncertainty is the larger of the windows' own (median) and half the repetitions' IQR.
    """
    out = []
    for t in trials:
        spec = t.spec
        if t.status != "ok" or not t.repetitions or not spec.prompt_lengths:
            continue
        windows = [r.energy for r in t.repetitions
                   if r.energy is not None and r.energy.energy_gpu_j is not None]
        if not windows:
            continue
        energies = [w.energy_gpu_j for w in windows]
        own_unc = statistics.median([w.energy_gpu_uncertainty_j or 0.0 for w in windows])
        unc = max(own_unc, _iqr_half(energies))
        overrides = dict(spec.overrides)
        out.append({
            "model": spec.model, "family": model_family(spec.model),
            "overrides_json": json.dumps(overrides, sort_keys=True) if overrides else "",
            "gpu_name": t.gpu_name, "gpu_count": len(windows[0].per_gpu_energy_j or (0,)),
            "dtype": spec.dtype, "mode": spec.mode,
            "prompt_lengths_json": json.dumps(list(spec.prompt_lengths)),
            "padded_input_tokens": spec.ctx_tokens, "output_tokens": t.repetitions[0].output_tokens,
            "batch_size": spec.batch_size, "energy_batch_j": statistics.median(energies),
            "energy_batch_uncertainty_j": unc, "repetitions": len(windows), "trial_id": spec.trial_id,
            "run_id": t.run_id,
        })
    return out
