"""Run one real trial on the CPU, in its own run, for the tests that need what the runner stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattlens.core.results import TrialResult
from wattlens.core.spec import TrialSpec
from wattlens.runner.session import SessionOptions, open_session
from wattlens.runner.trial import ModelHolder, run_trial


def run_cpu_trial(db: Path, spec: TrialSpec, **run_kwargs: Any) -> TrialResult:
    """One trial on the CPU, stored in `db` (no calibration: there is no GPU to calibrate)."""
    session = open_session(db, command="test", device="cpu", options=SessionOptions(calibrate=False))
    try:
        return run_trial(spec, session, ModelHolder(), **run_kwargs)
    finally:
        session.close()
