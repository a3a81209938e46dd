"""One trial: build (or reuse) the model, make exact-length inputs, warm up, then measure
repetitions, each inside its own energy window, with memory read while the KV cache is held.

A failure (out of memory, an unsupported dtype on this device) becomes a stored failed trial
with its error; the caller decides whether to go on.
"""

from __future__ import annotations

import functools
import gc
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from wattlens.backends.hf import HFBackend, compile_seconds_by_phase, compile_seconds_since
from wattlens.core.errors import BadInput
from wattlens.core.metrics import summarise_repetitions
from wattlens.core.results import MemoryStats, Repetition, TrialResult
from wattlens.core.spec import LEAN_LOOP_MODES, TrialSpec
from wattlens.core.units import dtype_bytes
from wattlens.hw.host_cpu import HostCpuMeter
from wattlens.hw.rapl import RaplMeter
from wattlens.meter.memory import cuda_memory_snapshot, cuda_sync, reset_peak
from wattlens.meter.sampler import PowerSampler
from wattlens.meter.token_reads import TokenEnergyReader, select_read_tokens
from wattlens.models.arithmetic import ModelFacts, model_facts
from wattlens.models.build import build_model, resolve_device
from wattlens.models.catalog import ModelSource, max_positions, resolve_model
from wattlens.runner.session import Session, utc_now
from wattlens.workloads.inputs import PromptBatch, ragged_synthetic_batch, synthetic_batch, text_batch


def check_spec(spec: TrialSpec) -> tuple[ModelSource, ModelFacts]:
    """Every check that needs no GPU: bad values raise BadInput before anything runs or is stored."""
    spec.validate()
    if spec.ragged and spec.mode == "compiled":
        raise BadInput(f"mixed-size batches (prompt_lengths) cannot run in {spec.mode} mode: a compiled step "
                       "builds transformers' own masks, which a CUDA graph cannot hold; use eager, static or graphed")
    if spec.ragged and spec.prompt != "synthetic":
        raise BadInput("mixed-size batches (prompt_lengths) support synthetic prompts only, "
                       "not --prompt text")
    source = resolve_model(spec.model, spec.overrides)
    limit = max_positions(source.config)
    if spec.ctx_tokens + spec.gen_tokens > limit:
        raise BadInput(
            f"ctx {spec.ctx_tokens} + gen {spec.gen_tokens} exceeds the maximum positions of "
            f"{spec.model} ({limit})"
        )
    facts = model_facts(source.config)
    resolve_device(spec.device)  # a bad or unavailable device is bad input too, not a half-written run
    if spec.prompt == "text":
        _check_tokenizer_fits(source.path, facts.vocab_size, spec.model)
    return source, facts


@functools.lru_cache(maxsize=8)
def _tokenizer_size(path: str | None) -> int:
    from wattlens.workloads.tokenizers import load_tokenizer

    return len(load_tokenizer(path) if path else load_tokenizer("gpt2"))


def _check_tokenizer_fits(path: str | None, vocab_size: int, model: str) -> None:
    size = _tokenizer_size(path)
    if size > vocab_size:
        raise BadInput(
            f"the bundled tokenizer has {size} tokens but {model} has a vocabulary of "
            f"{vocab_size}; use --prompt synthetic or a model folder with its own tokenizer"
        )


class ModelHolder:
    """Keeps one built model, so trials that share (model, edits, dtype, device) build it once."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.model: Any = None
        self.weights_bytes: int | None = None
        self.build_s: float | None = None  # wall time of the last build (device synced)

    def get(self, spec: TrialSpec, source: ModelSource, device: str) -> Any:
        key = spec.model_key()
        if key != self.key:
            self.release()
            before = cuda_memory_snapshot(device).get("allocated_bytes")
            start = time.perf_counter()
            self.model = build_model(source, spec.dtype, device)
            cuda_sync(device)()
            self.build_s = time.perf_counter() - start
            after = cuda_memory_snapshot(device).get("allocated_bytes")
            self.weights_bytes = after - before if before is not None and after is not None else None
            self.key = key
        return self.model

    def release(self) -> None:
        self.model = None
        self.key = None
        self.weights_bytes = None
        free_device_memory()


def free_device_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def make_prompt(spec: TrialSpec, source: ModelSource, facts: ModelFacts, device: str) -> PromptBatch:
    """Exact-length inputs: synthetic ids by default, or templated text trimmed/padded to length;
    a ragged spec gets left-padded synthetic rows of its prompt_lengths."""
    special = [source.config.get(k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")]
    avoid = [i for s in special for i in (s if isinstance(s, list) else [s]) if isinstance(i, int)]
    if spec.ragged:
        pad = source.config.get("pad_token_id")
        return ragged_synthetic_batch(spec.prompt_lengths, facts.vocab_size, seed=spec.seed, device=device,
                                      avoid_token_ids=avoid,
                                      pad_token_id=pad if isinstance(pad, int) else None)
    if spec.prompt == "synthetic":
        return synthetic_batch(spec.batch_size, spec.ctx_tokens, facts.vocab_size, seed=spec.seed,
                               device=device, avoid_token_ids=avoid)
    from wattlens.workloads.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(source.path) if source.path else load_tokenizer("gpt2")  # size checked in check_spec
    texts = ["Summarise the following notes in one paragraph."] * spec.batch_size
    return text_batch(tokenizer, texts, spec.ctx_tokens, device=device)


def _gpu_figures(session: Session, dtype: str) -> dict[str, float | None]:
    spec = session.gpu_spec
    if spec is None:
        return {"hbm_bytes_per_s": None, "peak_flops_per_s": None}
    peak = spec.fp32_flops_per_s if dtype == "fp32" else spec.fp16_bf16_dense_flops_per_s
    return {"hbm_bytes_per_s": spec.memory_bandwidth_bytes_per_s, "peak_flops_per_s": peak}


def _refuse_if_host_ram_too_small(spec: TrialSpec, facts: Any) -> None:
    """On the CPU, a model larger than the host's RAM is not built: the kernel would kill the whole
    process (losing the rest of a sweep), so it becomes a failed trial with the bytes needed."""
    from wattlens.runner.study import device_memory_bytes, fit_verdict

    reason = fit_verdict(spec, facts, device_memory_bytes("cpu"), "this host's RAM")
    if reason:
        raise MemoryError(reason)


def run_trial(
    spec: TrialSpec,
    session: Session,
    models: ModelHolder,
    *,
    on_repetition: Callable[[int], None] | None = None,
    save: bool = True,
    phases: bool = False,
    token_energy_reads: int = 0,
) -> TrialResult:
    """Measure one spec; store and return the result (status 'failed' with the error on failure).

    With `phases=True`, extra passes after the repetitions attribute energy and time to prefill
    and decode by two methods (meter.phases: subtraction and in-run boundary), stored as a
    'phase_energy' artifact and as method-suffixed summary keys. Off by default: it costs about
    20 s per trial on an H100.

    With `token_energy_reads=N` (N >= 2, GPUs only), the energy counter is also read at about N
    log-spaced output tokens of every repetition, so one long generation gives the energy of
    every shorter one (stored with each repetition; see meter.token_reads).
    """
    source, facts = check_spec(spec)
    result = TrialResult(spec=spec, run_id=session.run.run_id, weights=source.weights,
                         gpu_name=session.gpu_name, started_at=utc_now())
    device = resolve_device(spec.device)
    backend = None
    sampler = None
    timeline = None
    phase_payload: dict[str, Any] | None = None
    marks_ns: list[tuple[int, int, int]] = []
    hygiene: dict[str, Any] = {}
    rapl = RaplMeter()
    host_cpu = HostCpuMeter()  # host-bound modes follow the host: record what it did
    on_gpu = bool(session.gpus) and device.startswith("cuda")  # energy, sampling and cooldown apply
    try:
        if on_gpu:
            hygiene = _cooldown_record(session.cooldown())
        if device == "cpu" and models.key != spec.model_key():
            _refuse_if_host_ram_too_small(spec, facts)
        model = models.get(spec, source, device)
        session.claim_own_gpu_processes()
        prompt = make_prompt(spec, source, facts, device)
        backend = HFBackend(model, spec.mode, spec.sampling, compile_scope=spec.compile_scope or None)
        compiled_before = compile_seconds_by_phase() if spec.mode != "eager" else {}
        setup_start = time.perf_counter()
        backend.prepare(spec.batch_size, spec.ctx_tokens, spec.gen_tokens)
        warmups = max(spec.warmups, 1 if spec.mode != "eager" else 0)  # compile/capture stays out of windows
        for _ in range(warmups):
            backend.generate(prompt.input_ids, prompt.attention_mask, spec.gen_tokens)
        backend.sync()
        setup = {"setup_s": round(time.perf_counter() - setup_start, 3), "setup_warmups": warmups}
        if spec.mode != "eager":
            setup["compile_s_by_phase"] = compile_seconds_since(compiled_before)
        free_device_memory()
        before = cuda_memory_snapshot(device)
        reset_peak(device)
        if on_gpu:
            sampler = PowerSampler(session.gpus, interval_s=min(0.05, (session.meter.update_period_s or 0.1) / 2))
            session.meter.sampler = sampler.start()
        held_bytes = None
        reps: list[Repetition] = []
        rapl.start()
        host_cpu.start()
        reader = None
        if token_energy_reads and on_gpu:
            reader = TokenEnergyReader(session.meter, select_read_tokens(spec.gen_tokens, max(2, token_energy_reads)))
        for i in range(spec.repeats):
            first_ns: list[int] = []

            def on_token(index: int, t_ns: int, _first: list[int] = first_ns) -> None:
                if index == 0:
                    _first.append(t_ns)
                if reader is not None:
                    reader(index, t_ns)

            with session.meter.window(f"rep{i}") as window:
                if reader is not None:
                    reader.start()
                out = backend.generate(prompt.input_ids, prompt.attention_mask, spec.gen_tokens, on_token=on_token)
            w = window.result
            if w is not None:
                marks_ns.append((w.start_ns, first_ns[0] if first_ns else w.end_ns, w.end_ns))
            if out.n_new_tokens != spec.gen_tokens or out.output_ids.shape[0] != spec.batch_size:
                raise RuntimeError(
                    f"generated {tuple(out.output_ids.shape)} tokens, expected ({spec.batch_size}, {spec.gen_tokens})"
                )
            if i == 0:
                held_now = cuda_memory_snapshot(device).get("allocated_bytes")
                if held_now is not None and before.get("allocated_bytes") is not None:
                    held_bytes = held_now - before["allocated_bytes"]
            reps.append(Repetition(index=i, input_tokens=prompt.input_tokens, output_tokens=out.n_new_tokens,
                                   batch_size=spec.batch_size, token_times_s=out.token_times_s(),
                                   e2e_s=out.e2e_s, energy=window.result,
                                   token_energy_reads=reader.reads(out.start_ns) if reader is not None else ()))
            del out
            if on_repetition:
                on_repetition(i)
        host_energy = rapl.stop()
        host_cpu_use = host_cpu.stop()
        timeline = sampler.stop() if sampler else None
        session.meter.sampler = None  # the phase passes below are not covered by this timeline
        result.repetitions = reps
        result.memory = _memory_stats(session, spec, facts, models, backend, before, held_bytes, device)
        if phases:  # after the memory figures, so the extra passes cannot change them
            phase_payload = measure_phases(session, backend, prompt, spec, reps)
        result.model_facts = {**asdict(facts), "backend": {**backend.describe(), **setup}, "source": source.name,
                              "weights": source.weights, "dropped_config_keys": list(source.dropped_keys),
                              "reinitialised": list(getattr(model, "wattlens_reinitialised", []))}
        result.summary = summarise_repetitions(
            reps,
            params_active=facts.params_active,
            peak_memory_bytes=result.memory.peak_allocated_bytes,
            decode_bytes_per_step=facts.decode_bytes_per_step(
                spec.ctx_tokens + spec.gen_tokens // 2, spec.batch_size, dtype_bytes(spec.dtype)),
            prefill_flops=facts.prefill_flops(spec.ctx_tokens, spec.batch_size),
            **_gpu_figures(session, spec.dtype),
        )
        result.summary["device"] = device
        result.summary["model_build_s"] = models.build_s  # of the build this trial's model came from
        result.summary.update(hygiene)
        result.summary.update(host_energy.to_dict())
        result.summary.update(host_cpu_use.to_dict())
        if timeline is not None:
            result.summary["power_timeline_samples"] = len(timeline)
        if phase_payload is not None:
            result.summary.update(phase_payload["summary"])
    except BadInput:
        raise
    except Exception as exc:  # stored as a failed trial; the sweep goes on
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"[:4000]
        result.summary = {"traceback": traceback.format_exc(limit=8)[-4000:]}
        exc.__traceback__ = None  # drop frames that pin tensors, so the memory can be freed
        timeline = sampler.stop() if sampler else None
        if "out of memory" in str(exc).lower():
            models.release()
    finally:
        session.meter.sampler = None
        if backend is not None:
            backend.release()
        backend = None
        free_device_memory()
    result.finished_at = utc_now()
    if save:
        session.store.save_trial(result)
        if timeline is not None and len(timeline):
            payload = timeline.to_compact()
            t0_ns = int(round(payload["t0_s"] * 1e9))
            payload["phase_marks_s"] = [[round((x - t0_ns) / 1e9, 4) for x in m] for m in marks_ns]
            payload["phase_marks_columns"] = ["start", "first_token", "end"]
            session.store.save_artifact(session.run.run_id, "power_timeline", "trial", payload,
                                        trial_id=result.trial_id)
        if phase_payload is not None:
            session.store.save_artifact(session.run.run_id, "phase_energy", "trial", phase_payload,
                                        trial_id=result.trial_id)
    return result


def _memory_stats(session: Session, spec: TrialSpec, facts: ModelFacts, models: ModelHolder, backend: HFBackend,
                  before: dict, held_bytes: int | None, device: str) -> MemoryStats:
    kv_analytic = facts.kv_cache_bytes(spec.ctx_tokens + spec.gen_tokens, dtype_bytes(spec.dtype),
                                       batch=spec.batch_size)
    snap = cuda_memory_snapshot(device)
    if "allocated_bytes" not in snap:
        return MemoryStats(kv_analytic_bytes=kv_analytic,
                           not_measured_reason=snap.get("not_measured_reason", "not a CUDA device"))
    if spec.mode in LEAN_LOOP_MODES:
        # The static cache is allocated once before the measured repetitions: count its tensors.
        kv_measured = _static_cache_bytes(backend)
    else:
        kv_measured = held_bytes
    peak = snap.get("max_allocated_bytes")
    weights = models.weights_bytes
    activation = peak - (weights or 0) - (kv_measured or 0) if peak is not None else None
    nvml_used = sum(g.memory_used_bytes() for g in session.gpus) if session.gpus else None
    return MemoryStats(weights_bytes=weights, kv_analytic_bytes=kv_analytic, kv_measured_bytes=kv_measured,
                       peak_allocated_bytes=peak, activation_peak_bytes=activation,
                       reserved_bytes=snap.get("reserved_bytes"), nvml_used_bytes=nvml_used)


def _static_cache_bytes(backend: HFBackend) -> int | None:
    lean = getattr(backend, "_lean", None)
    if lean is None:
        return None
    total = 0
    for layer in getattr(lean.cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None and hasattr(t, "nbytes"):
                total += t.nbytes
    return total


def _cooldown_record(info: dict[str, Any] | None) -> dict[str, Any]:
    """What the trial started from: temperatures after cooldown, the wait, and whether it reached the target."""
    if not info:
        return {}
    temps = [t for t in info.get("end_temperature_c", []) if t == t]
    return {"start_temperature_c": max(temps) if temps else None,
            "cooldown_waited_s": info.get("waited_s"), "cooldown_reached": info.get("reached"),
            "cooldown_criterion": info.get("criterion")}


def measure_phases(session: Session, backend: HFBackend, prompt: PromptBatch, spec: TrialSpec,
                   reps: list[Repetition], *, min_updates: int = 40, boundary_runs: int = 8) -> dict[str, Any]:
    """Prefill/decode energy and time by subtraction and by in-run boundary (see meter.phases).

    Times from the measured repetitions (TTFT and E2E - TTFT, medians) are stored for every trial;
    energies need a GPU. The unsuffixed share keys come from subtraction (named in
    'phase_share_method'); both methods' own keys sit beside them.
    """
    import statistics

    from wattlens.meter.phases import phases_by_boundary, phases_by_subtraction

    ids, mask, gen = prompt.input_ids, prompt.attention_mask, spec.gen_tokens
    ttft = [r.ttft_s for r in reps]
    dec = [r.e2e_s - r.ttft_s for r in reps]
    summary: dict[str, Any] = {
        "prefill_time_s": statistics.median(ttft) if ttft else None,
        "decode_time_s": statistics.median(dec) if dec else None,
        "phase_time_source": "median TTFT and E2E - TTFT of the measured repetitions",
        "phase_methods": ["subtraction", "boundary"],
    }
    payload: dict[str, Any] = {"methods": {}, "summary": summary}
    if not session.gpus:
        reason = session.meter.not_measured_reason or "no NVIDIA GPU"
        summary["phase_energy_not_measured_reason"] = reason
        payload["not_measured_reason"] = reason
        return payload
    sub = phases_by_subtraction(
        session.meter, lambda: backend.generate(ids, mask, 1), lambda: backend.generate(ids, mask, gen),
        min_updates=min_updates)
    bnd, marks = phases_by_boundary(
        session.meter, lambda hook: backend.generate(ids, mask, gen, on_token=hook), runs=boundary_runs)
    for res in (sub, bnd):
        summary.update(res.summary_keys())
        payload["methods"][res.method] = res.to_dict()
    payload["boundary_marks_ns"] = [[m.start_ns, m.first_token_ns, m.end_ns] for m in marks]
    summary["prefill_share_pct"] = sub.prefill.energy_share_pct
    summary["decode_share_pct"] = sub.decode.energy_share_pct
    summary["phase_share_method"] = "subtraction"
    a, b = sub.prefill.energy_gpu_j, bnd.prefill.energy_gpu_j
    if a and b:
        summary["prefill_energy_methods_rel_diff_pct"] = 100.0 * (b - a) / a
        sa, sb = sub.prefill.energy_gpu_uncertainty_j or 0.0, bnd.prefill.energy_gpu_uncertainty_j or 0.0
        summary["prefill_energy_methods_diff_sigma"] = abs(b - a) / max((sa * sa + sb * sb) ** 0.5, 1e-12)
    return payload
