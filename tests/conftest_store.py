"""Hand-built results for the store and report tests (no GPU, no runner: core dataclasses only)."""

from __future__ import annotations

from wattlens.core.metrics import summarise_repetitions
from wattlens.core.results import EnergyWindow, MemoryStats, Repetition, RunInfo, TrialResult
from wattlens.core.spec import SamplingSpec, TrialSpec

RUN_ID = "run-2026-11-21-a"
GPU = "NVIDIA H100 80GB HBM3"


def make_run(run_id: str = RUN_ID) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        started_at="2026-11-21T10:00:00+00:00",
        environment={
            "gpus": [{"name": GPU, "memory_total_bytes": 85_000_000_000}],
            "driver_version": "580.65.06",
            "cuda_version": "12.8",
            "packages": {"torch": "2.8.0", "transformers": "5.0.0"},
            "git_sha": "abc1234",
            "wattlens_version": "0.1.0",
        },
        command="wattlens sweep --model tiny --ctx 128",
        update_period_s=0.1,
        idle_power_w=70.5,
    )


def make_window(i: int, measured: bool, start_ns: int) -> EnergyWindow:
    end_ns = start_ns + 2_000_000_000 + i * 10_000_000
    if measured:
        return EnergyWindow(
            name=f"rep{i}",
            start_ns=start_ns,
            end_ns=end_ns,
            energy_gpu_j=600.0 + 10.0 * i,
            energy_gpu_uncertainty_j=3.5,
            energy_gpu_active_j=459.0 + 10.0 * i,
            idle_power_w=70.5,
            counter_updates=20,
            update_period_s=0.1,
            flags=("throttle:sw_power_cap",) if i == 1 else (),
            per_gpu_energy_j=(600.0 + 10.0 * i,),
        )
    return EnergyWindow(
        name=f"rep{i}", start_ns=start_ns, end_ns=end_ns, not_measured_reason="no NVIDIA GPU (FakeGPU off)"
    )


def make_reps(
    n: int = 3, measured: bool = True, gen: int = 8, batch: int = 2, ctx: int = 128
) -> list[Repetition]:
    reps = []
    for i in range(n):
        ttft = 0.05 + 0.001 * i
        times = tuple(ttft + 0.02 * k for k in range(gen))
        reps.append(
            Repetition(
                index=i,
                input_tokens=ctx,
                output_tokens=gen,
                batch_size=batch,
                token_times_s=times,
                e2e_s=times[-1] + 0.001,
                energy=make_window(i, measured, start_ns=1_000_000_000 * (i + 1) * 10),
            )
        )
    return reps


def make_trial(
    model: str = "tiny-llama",
    run_id: str = RUN_ID,
    measured: bool = True,
    n_reps: int = 3,
    gpu_name: str | None = GPU,
    **spec_changes,
) -> TrialResult:
    spec = TrialSpec(model=model, ctx_tokens=128, gen_tokens=8, batch_size=2, repeats=n_reps, **spec_changes)
    reps = make_reps(n_reps, measured, gen=spec.gen_tokens, batch=spec.batch_size, ctx=spec.ctx_tokens)
    memory = MemoryStats(
        weights_bytes=2_400_000_000,
        kv_analytic_bytes=16_777_216,
        kv_measured_bytes=17_000_000,
        peak_allocated_bytes=3_100_000_000,
        activation_peak_bytes=683_000_000,
        reserved_bytes=3_300_000_000,
        nvml_used_bytes=4_000_000_000,
    )
    summary = summarise_repetitions(
        reps,
        params_active=1.2e9,
        peak_memory_bytes=memory.peak_allocated_bytes,
        decode_bytes_per_step=2.4e9,
        prefill_flops=2 * 1.2e9 * 128 * 2,
        hbm_bytes_per_s=3.35e12,
        peak_flops_per_s=989e12,
    )
    return TrialResult(
        spec=spec,
        run_id=run_id,
        weights="random",
        model_facts={"params_total": 1_200_000_000, "layers": 16, "sliding_window": None, "kv_heads": [8, 8]},
        gpu_name=gpu_name,
        repetitions=reps,
        memory=memory,
        summary=summary,
        started_at="2026-11-21T10:01:00+00:00",
        finished_at="2026-11-21T10:02:00+00:00",
    )


def make_failed_trial(model: str = "big-model", run_id: str = RUN_ID) -> TrialResult:
    return TrialResult(
        spec=TrialSpec(model=model, ctx_tokens=8192, gen_tokens=64, batch_size=32, dtype="fp32",
                       sampling=SamplingSpec(temperature=0.7, top_p=0.9)),
        run_id=run_id,
        status="failed",
        error="CUDA out of memory. Tried to allocate 20.00 GiB | reserved 70 GiB",
        weights="random",
        gpu_name=GPU,
        memory=MemoryStats(not_measured_reason="trial failed before measuring"),
        started_at="2026-11-21T10:03:00+00:00",
        finished_at="2026-11-21T10:03:05+00:00",
    )
