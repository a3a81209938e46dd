"""What a run ran on: hardware, driver, libraries, code version. Stored once per run.

Everything is best effort: a missing piece is None (with the reason where useful), never a
crash, so a CPU-only machine still gets a complete record.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any, Sequence

from wattlens.hw.device import GPUDevice

_LIBRARIES = ("torch", "transformers", "vllm", "numpy", "nvidia-ml-py", "accelerate", "zeus")


def _try(fn, default=None):
    try:
        return fn()
    except Exception:
        return default


def _library_versions() -> dict[str, str | None]:
    """Installed versions from package metadata (no import, so no heavy start-up)."""
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    from wattlens import __version__

    out["wattlens"] = __version__
    return out


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_state(cwd: str | None = None) -> dict[str, Any]:
    """sha and dirty flag of the git work tree at cwd; both None when it is not a repository."""
    def run(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    sha = run("rev-parse", "HEAD")
    if sha is None:
        return {"git_sha": None, "git_dirty": None}
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": None if status is None else bool(status)}


def _torch_facts(import_torch: bool) -> dict[str, Any]:
    if not import_torch and "torch" not in sys.modules:
        return {"torch_cuda_version": None, "torch_cuda_available": None, "torch_note": "torch not imported"}
    try:
        import torch  # noqa: PLC0415  (lazy: heavy)
    except Exception as e:
        return {"torch_cuda_version": None, "torch_cuda_available": None, "torch_note": f"torch: {e}"}
    out: dict[str, Any] = {"torch_cuda_version": getattr(torch.version, "cuda", None)}
    out["torch_cuda_available"] = _try(torch.cuda.is_available, False)
    out["cudnn_version"] = _try(torch.backends.cudnn.version)
    return out


def capture_gpu_state(gpus: Sequence[GPUDevice] | None) -> list[dict[str, Any]]:
    """A snapshot per GPU of what drifts during a run: clocks, temperature, power, throttling.

    Taken at the start and end of a trial; a read that fails is None, never 0.
    """
    out = []
    for g in gpus or ():
        out.append({
            "index": g.index,
            "sm_clock_mhz": _try(g.sm_clock_mhz),
            "mem_clock_mhz": _try(g.mem_clock_mhz),
            "temperature_c": _try(g.temperature_c),
            "power_w": _try(g.power_w),
            "power_limit_w": _try(g.power_limit_w),
            "throttle_reasons": list(_try(g.throttle_reasons, ()) or ()),
            "memory_used_bytes": _try(g.memory_used_bytes),
        })
    return out


def capture_environment(gpus: Sequence[GPUDevice] | None = None, *, import_torch: bool = True,
                        cwd: str | None = None) -> dict[str, Any]:
    """The environment record of one run (GPUs, driver, CUDA, libraries, host, code version).

    Works with no GPUs (gpus None or []). `import_torch=False` skips importing torch when it is
    not already imported (its CUDA version is then None).
    """
    gpus = list(gpus or ())
    infos = [_try(g.info, {}) or {} for g in gpus]
    first = infos[0] if infos else {}
    env: dict[str, Any] = {
        "gpu_count": len(gpus),
        "gpu_names": [g.name for g in gpus],
        "gpus": infos,
        "gpu_state": capture_gpu_state(gpus),
        "driver_version": first.get("driver_version"),
        "cuda_driver_version": first.get("cuda_driver_version"),
        "persistence_mode": [i.get("persistence_mode") for i in infos],
        "power_limit_w": [i.get("power_limit_w") for i in infos],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "libraries": _library_versions(),
    }
    env.update(_torch_facts(import_torch))
    env.update(git_state(cwd))
    return env
