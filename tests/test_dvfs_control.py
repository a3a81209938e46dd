"""Clock controller against the FakeGPU: opt-in, read-back, restore on every exit path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wattlens.core.errors import ClockControlError, ClockControlRefused
from wattlens.dvfs.control import (
    ClockController,
    ClockRequest,
    open_clock_control,
    parse_clock_list,
    spread_clocks_mhz,
)
from wattlens.hw.fake import FakeClock, FakeClockControl, FakeGPU

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _gpu() -> FakeGPU:
    return FakeGPU(FakeClock(), power_w=100.0)


def _ctl(gpu: FakeGPU, **kw) -> FakeClockControl:
    return open_clock_control(gpu, allow_clock_control=True, **kw)  # type: ignore[return-value]


def test_without_opt_in_nothing_is_built():
    gpu = _gpu()
    with pytest.raises(ClockControlRefused, match="--allow-clock-control"):
        open_clock_control(gpu, allow_clock_control=False)
    with pytest.raises(ClockControlRefused):
        open_clock_control(gpu)  # default is off
    assert gpu.locked_sm_mhz is None


def test_lock_reads_back_and_restores_on_normal_exit():
    gpu = _gpu()
    ctl = _ctl(gpu)
    with ClockController(gpu, ctl, sleep=gpu.clock.sleep) as cc:
        got = cc.apply(ClockRequest(sm_clock_mhz=960))
        assert got["sm_clock_mhz"] == 960
        with cc.window("decode") as w:
            gpu.clock.advance(0.5)
        assert gpu.sm_clock_mhz() == 960
    assert w.requested_sm_clock_mhz == 960 and w.achieved_sm_clock_mhz == 960
    assert gpu.locked_sm_mhz is None
    assert [c[0] for c in ctl.calls] == ["lock_sm_clocks", "reset_sm_clocks"]
    assert gpu.sm_clock_mhz() == 1980


def test_restore_on_exception_and_power_limit_put_back():
    gpu = _gpu()
    ctl = _ctl(gpu)
    with pytest.raises(RuntimeError, match="boom"):
        with ClockController(gpu, ctl, sleep=gpu.clock.sleep) as cc:
            cc.apply(ClockRequest(sm_clock_mhz=480, power_limit_w=300.0))
            assert gpu.power_limit_w() == 300.0
            raise RuntimeError("boom")
    assert gpu.locked_sm_mhz is None
    assert gpu.power_limit_w() == 700.0
    assert cc.events[-1]["reason"] == "exception"


def test_previous_lock_is_relocked_not_reset():
    gpu = _gpu()
    gpu.locked_sm_mhz = (1500, 1500)  # someone locked it before us
    ctl = _ctl(gpu)
    with ClockController(gpu, ctl, sleep=gpu.clock.sleep) as cc:
        cc.apply(ClockRequest(sm_clock_mhz=600))
    assert gpu.locked_sm_mhz == (1500, 1500)
    assert ctl.calls[-1] == ("lock_sm_clocks", (1500, 1500))


def test_lock_that_does_not_take_is_detected_and_undone():
    gpu = _gpu()
    gpu.lock_takes = False  # driver accepts, clock stays at 1980
    ctl = _ctl(gpu)
    with ClockController(gpu, ctl, sleep=gpu.clock.sleep) as cc:
        with pytest.raises(ClockControlError, match="did not take"):
            cc.apply(ClockRequest(sm_clock_mhz=960))
        assert gpu.locked_sm_mhz is None  # undone at once, not only at exit
    assert cc.events[0]["achieved"]["sm_clock_mhz"] == 1980


def test_permission_denied_is_a_clear_error_and_state_untouched():
    gpu = _gpu()
    ctl = _ctl(gpu, deny=True)
    with pytest.raises(ClockControlError, match="permission"):
        with ClockController(gpu, ctl, sleep=gpu.clock.sleep) as cc:
            cc.apply(ClockRequest(sm_clock_mhz=960))
    assert gpu.locked_sm_mhz is None


def test_apply_outside_with_refused():
    gpu = _gpu()
    cc = ClockController(gpu, _ctl(gpu))
    with pytest.raises(ClockControlError, match="outside"):
        cc.apply(ClockRequest(sm_clock_mhz=960))
    assert gpu.locked_sm_mhz is None


def test_signal_handlers_installed_and_removed():
    before = signal.getsignal(signal.SIGTERM)
    gpu = _gpu()
    with ClockController(gpu, _ctl(gpu), sleep=gpu.clock.sleep):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_supported_clock_parsing_and_spread():
    smi = textwrap.dedent("""\
        Supported Clocks
            Memory                            : 2619 MHz
                Graphics                      : 1980 MHz
                Graphics                      : 1965 MHz
                Graphics                      : 345 MHz
                Graphics                      : 210 MHz
        """)
    assert parse_clock_list(smi) == [1980, 1965, 345, 210]
    assert parse_clock_list("180, 2842,960 MHz,960") == [2842, 960, 180]
    with pytest.raises(ValueError):
        parse_clock_list("none here")
    ladder = list(range(1980, 194, -15))
    spread = spread_clocks_mhz(ladder, 5)
    assert spread[0] == 1980 and spread[-1] == ladder[-1] == 195 and len(spread) == 5
    assert all(c in ladder for c in spread)
    assert spread_clocks_mhz([300, 200], 7) == [300, 200]


def test_nvml_control_needs_opt_in_and_maps_calls(monkeypatch):
    """NvmlClockControl with a stub pynvml: refused without opt-in; setters go to the right NVML calls."""
    from wattlens.hw import nvml

    calls = []

    class NoPerm(Exception):
        pass

    class Stub:
        NVMLError_NoPermission = NoPerm
        NVMLError_NotSupported = type("NS", (Exception,), {})

        def nvmlDeviceGetSupportedMemoryClocks(self, h):
            return [2619, 1593]

        def nvmlDeviceGetSupportedGraphicsClocks(self, h, mem):
            calls.append(("graphics_for_mem", mem))
            return [210, 1980, 1980.0, 960]

        def nvmlDeviceSetGpuLockedClocks(self, h, lo, hi):
            calls.append(("lock", lo, hi))

        def nvmlDeviceResetGpuLockedClocks(self, h):
            raise NoPerm("no")

    class G:
        index = 0
        _nv = Stub()
        _h = object()

    with pytest.raises(ClockControlRefused):
        nvml.NvmlClockControl(G())  # type: ignore[arg-type]
    assert calls == []
    c = nvml.NvmlClockControl(G(), allow_clock_control=True)  # type: ignore[arg-type]
    assert c.supported_sm_clocks_mhz() == [1980, 960, 210]
    assert calls == [("graphics_for_mem", 2619)]
    c.lock_sm_clocks(960, 960)
    assert c.locked_sm_clocks_mhz() == (960, 960)
    with pytest.raises(ClockControlError, match="no permission"):
        c.reset_sm_clocks()


_CHILD = """
import signal, sys, time, os
# Python's Ctrl-C handler, as a foreground process has it: a job that a non-interactive shell starts in
# the background (`pytest ... &`) inherits SIGINT ignored, and the SIGINT case would then never end
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {src!r})
from wattlens.hw.fake import FakeClock, FakeGPU
from wattlens.dvfs.control import ClockController, ClockRequest, open_clock_control
gpu = FakeGPU(FakeClock(), power_w=100.0)
ctl = open_clock_control(gpu, allow_clock_control=True, state_path={state!r})
cc = ClockController(gpu, ctl, settle_s=0.0)
cc.__enter__()
cc.apply(ClockRequest(sm_clock_mhz=480, power_limit_w=350.0))
print("locked", flush=True)
if {mode!r} == "atexit":
    sys.stdin.readline()  # wait until the parent has seen the locked state
    sys.exit(0)          # leaves without __exit__: only atexit can restore
for _ in range(600):     # a 'sweep' that is killed half way
    time.sleep(0.05)
"""


def _run_child(tmp_path: Path, mode: str, sig: int | None) -> tuple[int, dict]:
    state = tmp_path / f"state-{mode}.json"
    code = _CHILD.format(src=SRC, state=str(state), mode=mode)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # type: ignore[union-attr]
    assert line.strip() == "locked", p.stderr.read()  # type: ignore[union-attr]
    locked = json.loads(state.read_text())
    assert locked["locked_sm_mhz"] == [480, 480] and locked["power_limit_w"] == 350.0
    if sig is not None:
        p.send_signal(sig)
    else:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    rc = p.wait(timeout=20)
    return rc, json.loads(state.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_subprocess_killed_mid_sweep_restores(tmp_path, sig):
    rc, st = _run_child(tmp_path, "signal", sig)
    assert st["locked_sm_mhz"] is None
    assert st["power_limit_w"] == 700.0
    assert st["calls"][-2:] == ["reset_sm_clocks", "set_power_limit_w"]
    assert rc != 0  # the process still dies of the signal (SIGTERM) or KeyboardInterrupt (SIGINT)
    if sig == signal.SIGTERM:
        assert rc == -signal.SIGTERM


def test_subprocess_atexit_restores(tmp_path):
    rc, st = _run_child(tmp_path, "atexit", None)
    assert rc == 0
    assert st["locked_sm_mhz"] is None and st["power_limit_w"] == 700.0
