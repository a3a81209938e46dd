"""Result value objects. Layers below `core` fill them; reports render them and never redo physics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from wattlens.core.spec import TrialSpec


@dataclass(frozen=True)
class EnergyWindow:
    """Energy of one named interval, from energy-counter deltas read after a device sync.

    `energy_gpu_j` is gross (everything the GPUs drew), `energy_gpu_active_j` subtracts the idle
    power measured for the run times the window's duration. Both are None, never 0, when the
    energy could not be measured; `not_measured_reason` then says why.
    """

    name: str
    start_ns: int
    end_ns: int
    energy_gpu_j: float | None = None
    energy_gpu_uncertainty_j: float | None = None  # +- half-width from counter quantisation
    energy_gpu_active_j: float | None = None
    idle_power_w: float | None = None
    counter_updates: int | None = None  # counter update periods the window spans
    update_period_s: float | None = None
    flags: tuple[str, ...] = ()
    not_measured_reason: str | None = None
    per_gpu_energy_j: tuple[float, ...] = ()

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def measured(self) -> bool:
        return self.energy_gpu_j is not None

    @property
    def average_power_w(self) -> float | None:
        if self.energy_gpu_j is None or self.duration_s <= 0:
            return None
        return self.energy_gpu_j / self.duration_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_s"] = self.duration_s
        d["average_power_w"] = self.average_power_w
        return d


@dataclass(frozen=True)
class MemoryStats:
    """GPU memory of one trial, each kind kept apart (bytes). None where not measurable (CPU)."""

    weights_bytes: int | None = None  # allocated after the model was built, before any input
    kv_analytic_bytes: int | None = None  # from the config: layers x kv heads x head dim x dtype x tokens
    kv_measured_bytes: int | None = None  # allocator delta still held after generation (the cache)
    peak_allocated_bytes: int | None = None  # max_memory_allocated over the measured repetitions
    activation_peak_bytes: int | None = None  # peak minus what stays held (weights + cache)
    reserved_bytes: int | None = None  # torch caching allocator reserve at the peak
    nvml_used_bytes: int | None = None  # device memory in use, as NVML sees it (all processes)
    not_measured_reason: str | None = None


@dataclass(frozen=True)
class Repetition:
    """One measured generation: per-token times from a backend hook, and its energy window."""

    index: int
    input_tokens: int  # verified length of each prompt
    output_tokens: int  # verified new tokens of each sequence
    batch_size: int
    token_times_s: tuple[float, ...]  # request start -> each output token, after a device sync
    e2e_s: float
    energy: EnergyWindow
    # (output token number, seconds since request start, GPU joules since request start) read at
    # selected tokens of one generation: the energy of every shorter output (runner --token-energy-reads)
    token_energy_reads: tuple[tuple[int, float, float], ...] = ()

    @property
    def ttft_s(self) -> float:
        return self.token_times_s[0]


@dataclass
class TrialResult:
    """Everything measured for one TrialSpec in one run. `status` is 'ok' or 'failed'."""

    spec: TrialSpec
    run_id: str
    status: str = "ok"
    error: str | None = None
    weights: str = "random"  # 'random' or 'pretrained': said in every output
    model_facts: dict[str, Any] = field(default_factory=dict)
    gpu_name: str | None = None
    repetitions: list[Repetition] = field(default_factory=list)
    memory: MemoryStats = field(default_factory=MemoryStats)
    summary: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def trial_id(self) -> str:
        return self.spec.trial_id


@dataclass
class RunInfo:
    """One invocation of wattlens: the environment it ran in and the meter's calibration."""

    run_id: str
    started_at: str
    environment: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    update_period_s: float | None = None
    idle_power_w: float | None = None
    finished_at: str | None = None
