"""CUDA allocator figures via torch (imported lazily: the meter must load without torch)."""

from __future__ import annotations

import sys
from typing import Any, Callable


def _cuda_torch(device: Any) -> tuple[Any, str | None]:
    try:
        import torch  # noqa: PLC0415
    except Exception as e:
        return None, f"torch not importable: {e}"
    if not torch.cuda.is_available():
        return None, "no CUDA device visible to torch"
    if device is not None and getattr(torch.device(device), "type", "cuda") != "cuda":
        return None, f"device {device} is not a CUDA device"
    return torch, None


def cuda_memory_snapshot(device: Any = None) -> dict[str, Any]:
    """allocated / reserved / max allocated / max reserved bytes on `device` (torch's view).

    On a machine without CUDA: {'not_measured_reason': ...} and no byte figures, never zeros.
    """
    torch, reason = _cuda_torch(device)
    if torch is None:
        return {"not_measured_reason": reason}
    return {
        "allocated_bytes": int(torch.cuda.memory_allocated(device)),
        "reserved_bytes": int(torch.cuda.memory_reserved(device)),
        "max_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
        "max_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
    }


def reset_peak(device: Any = None) -> str | None:
    """Reset torch's peak counters; returns the reason when there is nothing to reset (CPU)."""
    torch, reason = _cuda_torch(device)
    if torch is None:
        return reason
    torch.cuda.reset_peak_memory_stats(device)
    return None


def cuda_sync(device: Any = None) -> Callable[[], None]:
    """A sync function for EnergyMeter: waits for queued CUDA work; a no-op without CUDA.

    torch is imported when this is called (not at meter import). Pass device=None to wait for
    the current device; on several GPUs pass a function that syncs each.
    """
    torch, _ = _cuda_torch(device)
    if torch is None:
        return lambda: None
    if device is None:
        return torch.cuda.synchronize
    return lambda: torch.cuda.synchronize(device)


def torch_imported() -> bool:
    return "torch" in sys.modules
