"""A run: one store, one energy meter calibrated once, one environment capture.

Opening a session validates the results path first (nothing is written for a bad path), then
finds the GPUs, detects the energy counter's update period, cools down, and measures idle power
so every window of the run can report idle-subtracted ("active") energy.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wattlens.core.results import RunInfo
from wattlens.hw.environment import capture_environment, capture_gpu_state
from wattlens.hw.specs import GPUSpec, match_gpu_spec
from wattlens.meter.energy import EnergyMeter, cooldown
from wattlens.store.sqlite import ResultStore


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class SessionOptions:
    """How a run treats the GPU before measuring (all times in seconds)."""

    idle_s: float = 3.0  # idle-power measurement length, after cooldown
    cooldown_max_s: float = 30.0
    cooldown_within_c: float = 5.0  # back to within N degC of the first idle reading
    calibrate: bool = True  # False: skip period detection and idle power (quick CPU runs)


@dataclass
class Session:
    store: ResultStore
    meter: EnergyMeter
    run: RunInfo
    gpu_spec: GPUSpec | None
    options: SessionOptions
    idle_temperature_c: float | None = None
    notes: list[str] = field(default_factory=list)
    baseline_pids: set[int] = field(default_factory=set)  # on the GPUs before this process used them

    def claim_own_gpu_processes(self) -> None:
        """Allow the GPU processes that appeared since the session opened (our CUDA context).

        In a container NVML reports host PIDs, so this process cannot be found by its own PID;
        whatever appeared after we created our context is ours, anything present before is foreign.
        """
        if os.getpid() in _gpu_pids(self.gpus):
            return
        new = _gpu_pids(self.gpus) - self.baseline_pids - self.meter.allowed_pids
        if new:
            self.meter.allowed_pids |= new
            self.notes.append(f"GPU processes {sorted(new)} taken as this process (container PID namespace)")

    @property
    def gpus(self) -> list[Any]:
        return list(self.meter.gpus)

    @property
    def gpu_name(self) -> str | None:
        return self.gpus[0].name if self.gpus else None

    def cooldown(self) -> dict[str, Any] | None:
        """Wait until the GPUs are back near idle temperature (bounded); return what happened."""
        if not self.gpus:
            return None
        return cooldown(
            self.gpus,
            max_wait_s=self.options.cooldown_max_s,
            within_c=self.options.cooldown_within_c,
            idle_temp_c=self.idle_temperature_c,
        )

    def close(self) -> None:
        env = dict(self.run.environment)
        env["gpu_state_end"] = capture_gpu_state(self.gpus)
        self.run.environment = env
        self.run.finished_at = utc_now()
        self.store.start_run(self.run)  # same run_id: updates the row with the end state
        self.store.finish_run(self.run.run_id, self.run.finished_at)
        self.store.close()


def _gpu_pids(gpus: list[Any]) -> set[int]:
    pids: set[int] = set()
    for g in gpus:
        try:
            pids |= set(g.compute_pids())
        except Exception:  # not supported on this GPU: nothing to attribute
            pass
    return pids


def _sync_all_cuda() -> Any:
    """A sync that waits for every visible CUDA device (a no-op without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return lambda: None
    if not torch.cuda.is_available():
        return lambda: None
    n = torch.cuda.device_count()
    return lambda: [torch.cuda.synchronize(i) for i in range(n)]


def target_gpu_name(device: str = "auto") -> str | None:
    """The GPU name a session on `device` will store with its trials (None: no GPU, as on the CPU),
    found without calibrating; a resumed sweep skips only the trials already measured there."""
    if device == "cpu":
        return None
    from wattlens.core.errors import NotMeasured
    from wattlens.hw.nvml import open_gpus

    try:
        gpus = open_gpus()
    except NotMeasured:
        return None
    return gpus[0].name if gpus else None


def open_session(
    db_path: str | Path | None,
    *,
    command: str = "",
    device: str = "auto",
    options: SessionOptions | None = None,
) -> Session:
    options = options or SessionOptions()
    store = ResultStore(db_path)  # raises BadInput for an unwritable path before anything is written
    if device == "cpu":
        meter = EnergyMeter([], not_measured_reason="the trial runs on the CPU; GPU energy does not apply")
    else:
        meter = EnergyMeter.for_visible_gpus(sync=_sync_all_cuda(), allowed_pids=(os.getpid(),))
    baseline_pids = _gpu_pids(meter.gpus)  # before this process creates its CUDA context
    notes: list[str] = []
    idle_temp = None
    if meter.gpus and options.calibrate:
        meter.detect_update_period()
        temps = [t for t in cooldown(meter.gpus, max_wait_s=0.0)["start_temperature_c"] if t == t]
        idle_temp = max(temps) if temps else None
        meter.measure_idle_power(options.idle_s)
    env = capture_environment(meter.gpus)
    env["gpu_state_start"] = capture_gpu_state(meter.gpus)
    if not meter.gpus:
        env["energy_not_measured_reason"] = meter.not_measured_reason
    run = RunInfo(
        run_id=uuid.uuid4().hex[:12],
        started_at=utc_now(),
        environment=env,
        command=command,
        update_period_s=meter.update_period_s,
        idle_power_w=meter.idle_power_w,
    )
    store.start_run(run)
    spec = match_gpu_spec(meter.gpus[0].name) if meter.gpus else None
    if meter.gpus and spec is None:
        notes.append(f"no spec-table row for {meter.gpus[0].name!r}: roofline figures omitted")
    return Session(store=store, meter=meter, run=run, gpu_spec=spec, options=options,
                   idle_temperature_c=idle_temp, notes=notes, baseline_pids=baseline_pids)
