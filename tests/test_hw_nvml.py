"""NvmlGPU / open_gpus against a stand-in pynvml module (this machine has no GPU)."""

import subprocess
import sys
import types
from types import SimpleNamespace

import pytest

from wattlens.core.errors import NotMeasured
from wattlens.hw import nvml as nvml_mod


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


def fake_pynvml(count=3, init_error=None, pids="ok"):
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVMLError_NotSupported = NVMLError_NotSupported
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    m.calls = []

    def init():
        if init_error:
            raise init_error
    m.nvmlInit = init
    m.nvmlDeviceGetCount = lambda: count
    m.nvmlDeviceGetHandleByIndex = lambda i: SimpleNamespace(i=i)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetUUID = lambda h: f"GPU-aaaa-{h.i}"
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: 1_000_000 + h.i
    m.nvmlDeviceGetPowerUsage = lambda h: 123_456  # mW
    m.nvmlDeviceGetClockInfo = lambda h, kind: 1980 if kind == 1 else 2619
    m.nvmlDeviceGetTemperature = lambda h, kind: 41
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x1 | 0x4
    m.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(total=80 * 2**30, used=2**30)
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    m.nvmlSystemGetDriverVersion = lambda: "580.65.06"
    m.nvmlSystemGetCudaDriverVersion = lambda: 13000
    m.nvmlDeviceGetPersistenceMode = lambda h: 1
    m.nvmlDeviceGetMaxClockInfo = lambda h, kind: 1980

    def procs(h):
        m.calls.append("v3")
        if pids == "ok":
            return [SimpleNamespace(pid=77), SimpleNamespace(pid=5)]
        if pids == "v2":
            raise NVMLError("function not found")
        raise NVMLError_NotSupported("not supported")

    def procs_v2(h):
        m.calls.append("v2")
        if pids == "v2":
            return [SimpleNamespace(pid=9)]
        raise NVMLError_NotSupported("not supported")
    m.nvmlDeviceGetComputeRunningProcesses = procs
    m.nvmlDeviceGetComputeRunningProcesses_v2 = procs_v2
    return m


@pytest.fixture
def use_fake(monkeypatch):
    def install(**kw):
        m = fake_pynvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", m)
        monkeypatch.setattr(nvml_mod, "_init_count", 0)
        return m
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install


def test_import_hw_does_not_import_pynvml():
    code = "import sys, wattlens.hw, wattlens.hw.nvml, wattlens.meter; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(__import__("pathlib").Path(nvml_mod.__file__).parents[2])})
    assert out.stdout.strip() == "False"


def test_no_driver_raises_not_measured_with_the_reason(use_fake):
    use_fake(init_error=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    with pytest.raises(NotMeasured, match="no NVIDIA driver/NVML: .*Library Not Found"):
        nvml_mod.open_gpus()


def test_zero_gpus_raises_not_measured(use_fake):
    use_fake(count=0)
    with pytest.raises(NotMeasured, match="0 GPUs"):
        nvml_mod.open_gpus()


def test_readings_in_si_units(use_fake):
    use_fake()
    g = nvml_mod.open_gpus([0])[0]
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.power_w() == pytest.approx(123.456)
    assert g.energy_mj() == 1_000_000
    assert g.throttle_reasons() == ("sw_power_cap",)  # gpu_idle left out
    assert g.power_limit_w() == 700.0
    assert g.compute_pids() == (5, 77)
    info = g.info()
    assert info["driver_version"] == "580.65.06"
    assert info["cuda_driver_version"] == "13.0"
    assert info["persistence_mode"] is True
    assert info["vbios_version"] is None  # unsupported query: None, noted, not a crash
    assert any("vbios_version" in n for n in info["notes"])


def test_cuda_visible_devices_integer_mapping(use_fake, monkeypatch):
    use_fake(count=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    gpus = nvml_mod.open_gpus()
    assert [g.index for g in gpus] == [2, 0]
    assert [g.cuda_index for g in gpus] == [0, 1]
    assert [g.index for g in nvml_mod.open_gpus([1])] == [0]
    with pytest.raises(NotMeasured):
        nvml_mod.open_gpus([2])


def test_cuda_visible_devices_uuid_and_empty(use_fake, monkeypatch):
    use_fake(count=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa-3")
    assert [g.index for g in nvml_mod.open_gpus()] == [3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(NotMeasured, match="empty"):
        nvml_mod.open_gpus()


def test_compute_pids_falls_back_to_v2_then_notes_not_supported(use_fake):
    m = use_fake(pids="v2")
    g = nvml_mod.open_gpus([0])[0]
    assert g.compute_pids() == (9,)
    m2 = use_fake(pids="none")
    g2 = nvml_mod.open_gpus([0])[0]
    assert g2.compute_pids() == ()
    assert any("compute processes not readable" in n for n in g2.notes)
    n_calls = len(m2.calls)
    assert g2.compute_pids() == ()  # not asked again once known unsupported
    assert len(m2.calls) == n_calls and "v2" in m.calls
