"""NVIDIA GPUs through NVML (nvidia-ml-py): the ONLY module of wattlens that imports pynvml.

pynvml is imported inside `open_gpus` / methods, so `import wattlens.hw` works on a machine with
no driver. `NvmlGPU` makes only read-only NVML calls. The setters (locked clocks, power limit)
live in `NvmlClockControl`, a capability object that cannot be built without
`allow_clock_control=True`; the dvfs layer builds it only when the user passed
`--allow-clock-control`.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Sequence

from wattlens.core.errors import ClockControlError, ClockControlRefused, NotMeasured
from wattlens.hw.device import GPUDevice, throttle_reason_names

_init_lock = threading.Lock()
_init_count = 0


def _pynvml():
    """Import pynvml lazily; NotMeasured with the real reason when it is missing."""
    try:
        import pynvml  # noqa: PLC0415  (the one import site)
    except ImportError as e:  # pragma: no cover - the package depends on nvidia-ml-py
        raise NotMeasured(f"no NVIDIA driver/NVML: nvidia-ml-py is not installed ({e})") from e
    return pynvml


def _nvml_init() -> Any:
    """nvmlInit once per process (reference counted); NotMeasured when the driver is absent."""
    global _init_count
    nv = _pynvml()
    with _init_lock:
        if _init_count == 0:
            try:
                nv.nvmlInit()
            except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, NoPermission...
                raise NotMeasured(f"no NVIDIA driver/NVML: {type(e).__name__}: {e}") from e
        _init_count += 1
    return nv


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _is_not_supported(nv: Any, e: Exception) -> bool:
    return isinstance(e, getattr(nv, "NVMLError_NotSupported", ())) or isinstance(
        e, getattr(nv, "NVMLError_FunctionNotFound", ())
    )


class NvmlGPU:
    """One physical GPU read through NVML. Implements `hw.device.GPUDevice`.

    `index` is the NVML (PCI-order) index; `cuda_index` the ordinal this process's CUDA sees
    (differs when CUDA_VISIBLE_DEVICES remaps). Calls NVML cannot answer on this GPU are noted
    in `notes` (e.g. compute processes on some vGPU/MIG setups) instead of failing the run.
    """

    def __init__(self, index: int, cuda_index: int | None = None, handle: Any = None) -> None:
        nv = _nvml_init()
        self._nv = nv
        self.index = int(index)
        self.cuda_index = self.index if cuda_index is None else int(cuda_index)
        self._h = handle if handle is not None else nv.nvmlDeviceGetHandleByIndex(self.index)
        self.name = _text(nv.nvmlDeviceGetName(self._h))
        self.uuid = _text(nv.nvmlDeviceGetUUID(self._h))
        self.notes: list[str] = []
        self._pids_supported = True
        self._event_reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons"
        )
        # Fail early, with the reason, when this GPU has no energy counter (pre-Volta, MIG slice).
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(self._h)
        except Exception as e:
            raise NotMeasured(f"GPU {self.index} ({self.name}) has no readable energy counter: {e}") from e

    def __repr__(self) -> str:
        return f"NvmlGPU(index={self.index}, name={self.name!r})"

    def _note(self, msg: str) -> None:
        if msg not in self.notes:
            self.notes.append(msg)

    # --- GPUDevice ---------------------------------------------------------------------------
    def energy_mj(self) -> int:
        return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h))

    def power_w(self) -> float:
        return self._nv.nvmlDeviceGetPowerUsage(self._h) / 1000.0

    def sm_clock_mhz(self) -> int:
        return int(self._nv.nvmlDeviceGetClockInfo(self._h, self._nv.NVML_CLOCK_SM))

    def mem_clock_mhz(self) -> int:
        return int(self._nv.nvmlDeviceGetClockInfo(self._h, self._nv.NVML_CLOCK_MEM))

    def temperature_c(self) -> float:
        return float(self._nv.nvmlDeviceGetTemperature(self._h, self._nv.NVML_TEMPERATURE_GPU))

    def throttle_reasons(self) -> tuple[str, ...]:
        return throttle_reason_names(int(self._event_reasons_fn(self._h)))

    def memory_used_bytes(self) -> int:
        return int(self._nv.nvmlDeviceGetMemoryInfo(self._h).used)

    def memory_total_bytes(self) -> int:
        return int(self._nv.nvmlDeviceGetMemoryInfo(self._h).total)

    def compute_pids(self) -> tuple[int, ...]:
        """PIDs with compute contexts on this GPU; () with a note when NVML cannot tell.

        Tries the current NVML entry point, then the older _v2 struct layout (drivers older than
        the installed nvidia-ml-py). In a container without the host PID namespace these are
        host PIDs, so even this process may look foreign (see meter.energy allowed_pids).
        """
        if not self._pids_supported:
            return ()
        nv = self._nv
        fns = [getattr(nv, n, None) for n in ("nvmlDeviceGetComputeRunningProcesses",
                                               "nvmlDeviceGetComputeRunningProcesses_v2")]
        last: Exception | None = None
        for fn in fns:
            if fn is None:
                continue
            try:
                return tuple(sorted({int(p.pid) for p in fn(self._h)}))
            except Exception as e:  # version mismatch, FunctionNotFound, NotSupported
                last = e
        self._pids_supported = False
        self._note(f"compute processes not readable: {type(last).__name__}: {last}")
        return ()

    def power_limit_w(self) -> float:
        return self._nv.nvmlDeviceGetEnforcedPowerLimit(self._h) / 1000.0

    def info(self) -> dict[str, Any]:
        nv, h = self._nv, self._h
        out: dict[str, Any] = {"index": self.index, "cuda_index": self.cuda_index, "name": self.name,
                               "uuid": self.uuid}

        def put(key: str, fn, *args, conv=lambda x: x) -> None:
            try:
                if isinstance(fn, str):
                    fn = getattr(nv, fn)
                out[key] = conv(fn(*args))
            except Exception as e:  # one unsupported query must not lose the rest
                out[key] = None
                self._note(f"{key}: {type(e).__name__}")

        put("driver_version", "nvmlSystemGetDriverVersion", conv=_text)
        put("nvml_version", "nvmlSystemGetNVMLVersion", conv=_text)
        put("cuda_driver_version", "nvmlSystemGetCudaDriverVersion",
            conv=lambda v: f"{v // 1000}.{(v % 1000) // 10}")
        put("persistence_mode", "nvmlDeviceGetPersistenceMode", h, conv=lambda v: bool(v))
        put("power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", h, conv=lambda v: v / 1000.0)
        put("power_management_limit_w", "nvmlDeviceGetPowerManagementLimit", h, conv=lambda v: v / 1000.0)
        put("default_power_limit_w", "nvmlDeviceGetPowerManagementDefaultLimit", h,
            conv=lambda v: v / 1000.0)
        put("max_sm_clock_mhz", "nvmlDeviceGetMaxClockInfo", h, getattr(nv, "NVML_CLOCK_SM", 1), conv=int)
        put("max_mem_clock_mhz", "nvmlDeviceGetMaxClockInfo", h, getattr(nv, "NVML_CLOCK_MEM", 2), conv=int)
        put("memory_total_bytes", lambda: nv.nvmlDeviceGetMemoryInfo(h).total, conv=int)
        put("pci_bus_id", lambda: nv.nvmlDeviceGetPciInfo(h).busId, conv=_text)
        put("vbios_version", "nvmlDeviceGetVbiosVersion", h, conv=_text)
        put("compute_mode", "nvmlDeviceGetComputeMode", h, conv=int)
        put("cuda_cores", "nvmlDeviceGetNumGpuCores", h, conv=int)
        try:
            cur, _pending = nv.nvmlDeviceGetMigMode(h)
            out["mig_mode"] = bool(cur)
        except Exception:
            out["mig_mode"] = None
        out["notes"] = list(self.notes)
        return out


def _cuda_visible() -> list[str] | None:
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    if v is None:
        return None
    return [p.strip() for p in v.split(",") if p.strip() != ""] if v.strip() else []


def open_gpus(indices: Sequence[int] | None = None) -> list[GPUDevice]:
    """Open the GPUs this process can use, in CUDA ordinal order.

    `indices` are CUDA ordinals (what `torch.device('cuda:i')` means). When CUDA_VISIBLE_DEVICES
    lists integers, ordinal i maps to NVML index CUDA_VISIBLE_DEVICES[i]; when it lists
    'GPU-<uuid>' entries they are matched by UUID prefix. NVML numbers GPUs in PCI order; set
    CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA agrees. Raises NotMeasured("no NVIDIA driver/NVML: ...")
    with the real reason when NVML cannot start or there is no GPU.
    """
    nv = _nvml_init()
    try:
        count = nv.nvmlDeviceGetCount()
    except Exception as e:
        raise NotMeasured(f"no NVIDIA driver/NVML: nvmlDeviceGetCount failed: {e}") from e
    if count == 0:
        raise NotMeasured("no NVIDIA driver/NVML: NVML sees 0 GPUs")
    physical: list[int] = list(range(count))
    visible = _cuda_visible()
    if visible is not None:
        if not visible:
            raise NotMeasured("no NVIDIA GPU: CUDA_VISIBLE_DEVICES is empty")
        if all(p.lstrip("-").isdigit() for p in visible):
            mapped = []
            for p in visible:
                i = int(p)
                if i < 0 or i >= count:
                    break  # CUDA ignores everything from the first invalid entry on
                mapped.append(i)
            physical = mapped
        elif all(p.startswith("GPU-") for p in visible):
            uuids = {i: _text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in range(count)}
            physical = []
            for p in visible:
                hits = [i for i, u in uuids.items() if u.startswith(p)]
                if len(hits) != 1:
                    break
                physical.append(hits[0])
        # other forms (MIG-...) : energy counters are per physical GPU; use all and let the caller decide
        if not physical:
            raise NotMeasured(f"no NVIDIA GPU: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} "
                              f"names none of the {count} GPUs")
    wanted = range(len(physical)) if indices is None else list(indices)
    gpus: list[GPUDevice] = []
    for cuda_i in wanted:
        if cuda_i < 0 or cuda_i >= len(physical):
            raise NotMeasured(f"no NVIDIA GPU: CUDA ordinal {cuda_i} not visible ({len(physical)} visible)")
        gpus.append(NvmlGPU(physical[cuda_i], cuda_index=cuda_i))
    return gpus


def parse_supported_clocks_mhz(values: Sequence[Any]) -> list[int]:
    """NVML supported-clock lists -> unique positive MHz values, highest first."""
    out = set()
    for v in values:
        mhz = int(round(float(v)))
        if mhz > 0:
            out.add(mhz)
    return sorted(out, reverse=True)


class NvmlClockControl:
    """Setters for one NVML GPU: locked SM / memory clocks and the power limit.

    Building one requires `allow_clock_control=True` (the user's explicit opt-in); nothing else
    in wattlens calls an NVML setter. Every NVML failure becomes `ClockControlError` naming the
    call and the reason (typically NoPermission: locking clocks needs root or an admin-granted
    permission; NotSupported on GPUs without locked-clock support).
    """

    def __init__(self, gpu: "NvmlGPU", *, allow_clock_control: bool = False) -> None:
        if allow_clock_control is not True:
            raise ClockControlRefused("clock / power-limit control needs the explicit opt-in "
                                      "--allow-clock-control")
        self.gpu = gpu
        self._nv = gpu._nv
        self._h = gpu._h
        self._sm_lock: tuple[int, int] | None = None  # what this object set (NVML cannot read a lock back)
        self._mem_lock: tuple[int, int] | None = None

    def _call(self, what: str, fn_name: str, *args: Any) -> Any:
        nv = self._nv
        try:
            return getattr(nv, fn_name)(self._h, *args)
        except Exception as e:
            if isinstance(e, getattr(nv, "NVMLError_NoPermission", ())):
                raise ClockControlError(f"{what} on GPU {self.gpu.index}: no permission ({fn_name}); "
                                        "run as root or let an admin grant clock control") from e
            if _is_not_supported(nv, e):
                raise ClockControlError(f"{what} on GPU {self.gpu.index}: not supported by this GPU/driver "
                                        f"({fn_name})") from e
            raise ClockControlError(f"{what} on GPU {self.gpu.index} failed: {type(e).__name__}: {e}") from e

    # ---- reads -------------------------------------------------------------------------------
    def supported_mem_clocks_mhz(self) -> list[int]:
        return parse_supported_clocks_mhz(self._call("reading supported memory clocks",
                                                     "nvmlDeviceGetSupportedMemoryClocks"))

    def supported_sm_clocks_mhz(self) -> list[int]:
        """SM clocks supported at the highest memory clock (the ladder a sweep picks from)."""
        mem = self.supported_mem_clocks_mhz()
        if not mem:
            return []
        return parse_supported_clocks_mhz(self._call("reading supported SM clocks",
                                                     "nvmlDeviceGetSupportedGraphicsClocks", mem[0]))

    def locked_sm_clocks_mhz(self) -> tuple[int, int] | None:
        """The lock this object applied, or None (NVML has no query for a lock set elsewhere)."""
        return self._sm_lock

    def locked_mem_clocks_mhz(self) -> tuple[int, int] | None:
        return self._mem_lock

    def power_limit_w(self) -> float:
        return self._call("reading the power limit", "nvmlDeviceGetPowerManagementLimit") / 1000.0

    def power_limit_range_w(self) -> tuple[float, float]:
        lo, hi = self._call("reading power-limit constraints", "nvmlDeviceGetPowerManagementLimitConstraints")
        return (lo / 1000.0, hi / 1000.0)

    # ---- setters -----------------------------------------------------------------------------
    def lock_sm_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self._call("locking SM clocks", "nvmlDeviceSetGpuLockedClocks", int(min_mhz), int(max_mhz))
        self._sm_lock = (int(min_mhz), int(max_mhz))

    def reset_sm_clocks(self) -> None:
        self._call("resetting SM clocks", "nvmlDeviceResetGpuLockedClocks")
        self._sm_lock = None

    def lock_mem_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self._call("locking memory clocks", "nvmlDeviceSetMemoryLockedClocks", int(min_mhz), int(max_mhz))
        self._mem_lock = (int(min_mhz), int(max_mhz))

    def reset_mem_clocks(self) -> None:
        self._call("resetting memory clocks", "nvmlDeviceResetMemoryLockedClocks")
        self._mem_lock = None

    def set_power_limit_w(self, watts: float) -> None:
        self._call("setting the power limit", "nvmlDeviceSetPowerManagementLimit", int(round(watts * 1000)))
