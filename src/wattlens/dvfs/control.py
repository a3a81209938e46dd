"""Lock SM / memory clocks or set a power limit, check that it took, and always put things back.

`ClockController` is a context manager around one GPU's clock-control capability
(`hw.nvml.NvmlClockControl` or `hw.fake.FakeClockControl`):

    control = open_clock_control(gpu, allow_clock_control=args.allow_clock_control)
    with ClockController(gpu, control) as cc:
        cc.apply(ClockRequest(sm_clock_mhz=960))      # lock, settle, read back, or raise
        with cc.window("decode") as w:                # requested vs achieved for this window
            ...
    # previous state restored here

Restore happens on normal exit, on an exception, on SIGINT / SIGTERM (handlers chained in front
of whatever was installed before, then the previous behaviour runs: KeyboardInterrupt, or death by
the same signal) and at interpreter exit (atexit). `restore()` is idempotent, so several of these
paths firing at once is harmless. SIGKILL cannot be caught by anything; `wattlens dvfs reset`
exists for that case.

What "previous state" means: the power limit is read before the first change and written back.
NVML has no call that reports a clock lock set by someone else, so for clocks the previous state
is whatever the capability reports (`locked_*_clocks_mhz`, None = not locked): a lock is put back
by re-locking, no lock by resetting the locked clocks.
"""

from __future__ import annotations

import atexit
import os
import signal
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Protocol

from wattlens.core.errors import ClockControlError, ClockControlRefused


class ClockControl(Protocol):
    """The setter capability (hw.nvml.NvmlClockControl, hw.fake.FakeClockControl)."""

    def supported_sm_clocks_mhz(self) -> list[int]: ...
    def supported_mem_clocks_mhz(self) -> list[int]: ...
    def locked_sm_clocks_mhz(self) -> tuple[int, int] | None: ...
    def locked_mem_clocks_mhz(self) -> tuple[int, int] | None: ...
    def power_limit_w(self) -> float: ...
    def power_limit_range_w(self) -> tuple[float, float]: ...
    def lock_sm_clocks(self, min_mhz: int, max_mhz: int) -> None: ...
    def reset_sm_clocks(self) -> None: ...
    def lock_mem_clocks(self, min_mhz: int, max_mhz: int) -> None: ...
    def reset_mem_clocks(self) -> None: ...
    def set_power_limit_w(self, watts: float) -> None: ...


def open_clock_control(gpu: Any, *, allow_clock_control: bool = False, **fake_kwargs: Any) -> ClockControl:
    """The setter capability for `gpu`, only when the user opted in; ClockControlRefused otherwise.

    A FakeGPU gets a FakeClockControl (`fake_kwargs`: state_path, deny); anything else is taken to
    be an NvmlGPU.
    """
    if allow_clock_control is not True:
        raise ClockControlRefused(
            "changing GPU clocks or power limits needs the explicit opt-in --allow-clock-control "
            "(it changes a shared device; wattlens restores the previous state when it ends)")
    from wattlens.hw.fake import FakeClockControl, FakeGPU

    if isinstance(gpu, FakeGPU):
        return FakeClockControl(gpu, **fake_kwargs)
    from wattlens.hw.nvml import NvmlClockControl

    return NvmlClockControl(gpu, allow_clock_control=True)


# ---- spreads of supported clocks ---------------------------------------------------------------
def parse_clock_list(text: str) -> list[int]:
    """'2842,1500, 960 MHz' or nvidia-smi SUPPORTED_CLOCKS output -> unique MHz values, highest first.

    Every integer followed (optionally) by 'MHz' counts; for nvidia-smi's `-q -d SUPPORTED_CLOCKS`
    text only the 'Graphics' lines are taken when present (memory lines would mix in).
    """
    import re

    lines = text.splitlines()
    graphics = [ln for ln in lines if re.search(r"\bgraphics\b", ln, re.I)]
    src = "\n".join(graphics) if graphics else text
    vals = {int(m) for m in re.findall(r"(?<![\w.])(\d+)(?:\s*MHz)?(?![\w.])", src, re.I)}
    vals.discard(0)
    if not vals:
        raise ValueError(f"no clock values in {text[:80]!r}")
    return sorted(vals, reverse=True)


def spread_clocks_mhz(supported_mhz: list[int], n: int = 7) -> list[int]:
    """`n` supported clocks spread evenly (by frequency) from the highest to the lowest, highest first."""
    ladder = sorted(set(int(c) for c in supported_mhz), reverse=True)
    if not ladder:
        raise ValueError("no supported clocks")
    if n <= 1 or len(ladder) <= n:
        return ladder[: max(n, 1)] if n <= 1 else ladder
    hi, lo = ladder[0], ladder[-1]
    picks: list[int] = []
    for k in range(n):
        target = hi - (hi - lo) * k / (n - 1)
        best = min(ladder, key=lambda c: (abs(c - target), -c))
        if best not in picks:
            picks.append(best)
    return sorted(picks, reverse=True)


# ---- records -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClockRequest:
    """What to set; None leaves that knob as it is."""

    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    power_limit_w: float | None = None


@dataclass
class ClockWindow:
    """Requested vs achieved clocks over one named window (start, end and any extra samples)."""

    name: str
    requested_sm_clock_mhz: int | None
    requested_mem_clock_mhz: int | None
    requested_power_limit_w: float | None
    sm_samples_mhz: list[int] = field(default_factory=list)
    mem_samples_mhz: list[int] = field(default_factory=list)
    throttle_reasons: list[str] = field(default_factory=list)

    @property
    def achieved_sm_clock_mhz(self) -> float | None:
        return statistics.fmean(self.sm_samples_mhz) if self.sm_samples_mhz else None

    @property
    def achieved_mem_clock_mhz(self) -> float | None:
        return statistics.fmean(self.mem_samples_mhz) if self.mem_samples_mhz else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["achieved_sm_clock_mhz"] = self.achieved_sm_clock_mhz
        d["achieved_mem_clock_mhz"] = self.achieved_mem_clock_mhz
        d["achieved_sm_clock_mhz_min"] = min(self.sm_samples_mhz) if self.sm_samples_mhz else None
        d["achieved_sm_clock_mhz_max"] = max(self.sm_samples_mhz) if self.sm_samples_mhz else None
        return d


# ---- process-wide restore on signals and at exit ----------------------------------------------
_active: list["ClockController"] = []
_registry_lock = threading.RLock()
_previous_handlers: dict[int, Any] = {}
_atexit_registered = False
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def restore_all(reason: str = "restore_all") -> list[str]:
    """Restore every active controller (newest first); returns the restore errors, never raises."""
    errors: list[str] = []
    with _registry_lock:
        ctrls = list(reversed(_active))
    for c in ctrls:
        errors += c.restore(reason=reason, raise_errors=False)
    return errors


def _on_signal(signum: int, frame: Any) -> None:
    errors = restore_all(reason=f"signal {signum}")
    for e in errors:
        print(f"wattlens: clock restore error: {e}", file=sys.stderr)
    prev = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)  # e.g. default_int_handler -> KeyboardInterrupt
        return
    if prev == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die by the same signal, as the default handler would


def _install_handlers() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(restore_all, "atexit")
        _atexit_registered = True
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still covers exit
    for sig in HANDLED_SIGNALS:
        cur = signal.getsignal(sig)
        if cur is not _on_signal:
            _previous_handlers[sig] = cur
            signal.signal(sig, _on_signal)


def _uninstall_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED_SIGNALS:
        if signal.getsignal(sig) is _on_signal and sig in _previous_handlers:
            signal.signal(sig, _previous_handlers.pop(sig))


# ---- the controller ----------------------------------------------------------------------------
class ClockController:
    """Applies clock requests to one GPU with read-back, records every window, restores on exit.

    `tolerance_mhz`: how far the read-back SM / memory clock may sit from the requested one
    before the lock counts as not taken (NVML snaps a request to the nearest supported step).
    A lock that does not take is undone at once and raises ClockControlError.
    """

    def __init__(self, gpu: Any, control: ClockControl, *, tolerance_mhz: int = 30, settle_s: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep, handle_signals: bool = True) -> None:
        self.gpu = gpu
        self.control = control
        self.tolerance_mhz = int(tolerance_mhz)
        self.settle_s = float(settle_s)
        self.sleep = sleep
        self.handle_signals = handle_signals
        self.current = ClockRequest()
        self.windows: list[ClockWindow] = []
        self.events: list[dict[str, Any]] = []  # apply / restore log
        self._prev_sm: tuple[int, int] | None = None
        self._prev_mem: tuple[int, int] | None = None
        self._prev_power_w: float | None = None
        self._changed_sm = self._changed_mem = self._changed_power = False
        self._entered = False
        self._restoring = threading.Lock()

    # -- lifecycle --
    def __enter__(self) -> "ClockController":
        self._prev_sm = self.control.locked_sm_clocks_mhz()
        self._prev_mem = self.control.locked_mem_clocks_mhz()
        self._prev_power_w = self.control.power_limit_w()
        with _registry_lock:
            _active.append(self)
            if self.handle_signals:
                _install_handlers()
        self._entered = True
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            errors = self.restore(reason="exception" if exc_type else "exit", raise_errors=exc_type is None)
        finally:
            with _registry_lock:
                if self in _active:
                    _active.remove(self)
                if not _active:
                    _uninstall_handlers()
            self._entered = False
        if errors and exc_type is None:  # pragma: no cover - restore raised already
            raise ClockControlError("; ".join(errors))

    # -- reads --
    def read_sm_clock_mhz(self) -> int:
        return int(self.gpu.sm_clock_mhz())

    def read_mem_clock_mhz(self) -> int:
        return int(self.gpu.mem_clock_mhz())

    # -- apply --
    def apply(self, req: ClockRequest, settle_s: float | None = None) -> dict[str, Any]:
        """Set what `req` names, wait `settle_s` (default: the controller's), read back;
        ClockControlError if it did not take."""
        if not self._entered:
            raise ClockControlError("ClockController.apply outside its `with` block (nothing would restore it)")
        if req.power_limit_w is not None:
            lo, hi = self.control.power_limit_range_w()
            if not lo <= req.power_limit_w <= hi:
                raise ClockControlError(f"power limit {req.power_limit_w} W outside the GPU's range {lo}-{hi} W")
            self._changed_power = True
            self.control.set_power_limit_w(req.power_limit_w)
        if req.sm_clock_mhz is not None:
            self._changed_sm = True
            self.control.lock_sm_clocks(req.sm_clock_mhz, req.sm_clock_mhz)
        if req.mem_clock_mhz is not None:
            self._changed_mem = True
            self.control.lock_mem_clocks(req.mem_clock_mhz, req.mem_clock_mhz)
        self.current = ClockRequest(
            req.sm_clock_mhz if req.sm_clock_mhz is not None else self.current.sm_clock_mhz,
            req.mem_clock_mhz if req.mem_clock_mhz is not None else self.current.mem_clock_mhz,
            req.power_limit_w if req.power_limit_w is not None else self.current.power_limit_w)
        wait_s = self.settle_s if settle_s is None else settle_s
        if wait_s > 0:
            self.sleep(wait_s)
        got = {"sm_clock_mhz": self.read_sm_clock_mhz(), "mem_clock_mhz": self.read_mem_clock_mhz(),
               "power_limit_w": self.control.power_limit_w()}
        event = {"event": "apply", "requested": asdict(req), "achieved": got}
        self.events.append(event)
        problems = []
        if req.sm_clock_mhz is not None and abs(got["sm_clock_mhz"] - req.sm_clock_mhz) > self.tolerance_mhz:
            problems.append(f"SM clock reads {got['sm_clock_mhz']} MHz after locking {req.sm_clock_mhz} MHz")
        if req.mem_clock_mhz is not None and abs(got["mem_clock_mhz"] - req.mem_clock_mhz) > self.tolerance_mhz:
            problems.append(f"memory clock reads {got['mem_clock_mhz']} MHz after locking {req.mem_clock_mhz} MHz")
        if req.power_limit_w is not None and abs(got["power_limit_w"] - req.power_limit_w) > 1.0:
            problems.append(f"power limit reads {got['power_limit_w']} W after setting {req.power_limit_w} W")
        if problems:
            self.restore(reason="lock did not take", raise_errors=False)
            raise ClockControlError("clock lock did not take (read-back): " + "; ".join(problems)
                                    + f" (tolerance {self.tolerance_mhz} MHz); previous state restored")
        return got

    # -- windows --
    @contextmanager
    def window(self, name: str) -> Iterator[ClockWindow]:
        """Record requested vs achieved clocks at the start and end of the block (plus `sample`s)."""
        w = ClockWindow(name, self.current.sm_clock_mhz, self.current.mem_clock_mhz, self.current.power_limit_w)
        self.sample(w)
        try:
            yield w
        finally:
            self.sample(w)
            self.windows.append(w)

    def sample(self, w: ClockWindow) -> None:
        w.sm_samples_mhz.append(self.read_sm_clock_mhz())
        w.mem_samples_mhz.append(self.read_mem_clock_mhz())
        try:
            for r in self.gpu.throttle_reasons():
                if r not in w.throttle_reasons:
                    w.throttle_reasons.append(r)
        except Exception:  # noqa: BLE001 - a missing reading must not break the window
            pass

    # -- restore --
    def restore(self, reason: str = "restore", raise_errors: bool = True) -> list[str]:
        """Put back what this controller changed; idempotent. Errors are collected, then raised or returned."""
        if not self._restoring.acquire(blocking=False):
            return []  # another path (signal during exit) is restoring right now
        errors: list[str] = []
        try:
            steps: list[tuple[str, Callable[[], None]]] = []
            if self._changed_sm:
                p = self._prev_sm
                steps.append(("sm", (lambda: self.control.lock_sm_clocks(*p)) if p else self.control.reset_sm_clocks))
            if self._changed_mem:
                p2 = self._prev_mem
                steps.append(("mem", (lambda: self.control.lock_mem_clocks(*p2)) if p2
                              else self.control.reset_mem_clocks))
            if self._changed_power and self._prev_power_w is not None:
                pw = self._prev_power_w
                steps.append(("power", lambda: self.control.set_power_limit_w(pw)))
            for what, fn in steps:
                try:
                    fn()
                    if what == "sm":
                        self._changed_sm = False
                    elif what == "mem":
                        self._changed_mem = False
                    else:
                        self._changed_power = False
                except Exception as e:  # noqa: BLE001 - keep restoring the other knobs
                    errors.append(f"restoring {what}: {e}")
            if steps:
                self.events.append({"event": "restore", "reason": reason, "errors": errors})
                self.current = ClockRequest()
        finally:
            self._restoring.release()
        if errors and raise_errors:
            raise ClockControlError("could not restore the GPU's previous clock state: " + "; ".join(errors))
        return errors
