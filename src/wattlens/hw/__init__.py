"""Hardware layer: the GPUDevice protocol, its NVML implementation (the only NVML import site),
a scripted FakeGPU for tests, the GPU spec table and environment capture. Imports only core."""

from wattlens.hw.device import GPUDevice, THROTTLE_REASON_BITS, throttle_reason_names

__all__ = ["GPUDevice", "THROTTLE_REASON_BITS", "throttle_reason_names"]
