"""Sweeps: a cartesian grid of trials from a YAML spec, resumable and failure-tolerant.

Every grid point is checked before the first trial runs, so a typo fails in a second, not after
an hour. Trials are ordered so each model is built once; trials already stored as 'ok' (by their
stable id) are skipped, so rerunning an interrupted sweep resumes it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlens.core.errors import BadInput
from wattlens.core.spec import SamplingSpec, TrialSpec, check_prompt_lengths

# YAML key -> TrialSpec field. Grid keys take a scalar or a list.
GRID_KEYS = {
    "models": "model",
    "model": "model",
    "ctx": "ctx_tokens",
    "gen": "gen_tokens",
    "batch": "batch_size",
    "dtype": "dtype",
    "mode": "mode",
    "sampling": "sampling",
    "set": "overrides",
    "prompt": "prompt",
    "compile_scope": "compile_scope",  # compiled mode: "model" or "layers"
    "prompt_lengths": "prompt_lengths",  # a list of ragged batches, each a list of prompt lengths
}
SCALAR_KEYS = {"repeats": "repeats", "warmups": "warmups", "device": "device", "seed": "seed"}
INT_KEYS = {"ctx_tokens", "gen_tokens", "batch_size", "repeats", "warmups", "seed"}


@dataclass
class SweepPlan:
    specs: list[TrialSpec]
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _sampling(value: Any) -> SamplingSpec:
    if value in (None, "greedy"):
        return SamplingSpec()
    if not isinstance(value, dict):
        raise BadInput(f"sampling entries must be 'greedy' or a mapping like {{temperature: 0.7}}, got {value!r}")
    unknown = set(value) - {"temperature", "top_p", "top_k"}
    if unknown:
        raise BadInput(f"unknown sampling key(s) {sorted(unknown)}; use temperature, top_p, top_k")
    try:
        return SamplingSpec(temperature=float(value.get("temperature", 0.0)), top_p=float(value.get("top_p", 1.0)),
                            top_k=int(value.get("top_k", 0)))
    except (TypeError, ValueError):
        raise BadInput(f"bad sampling values {value!r}") from None


def _overrides(value: Any) -> tuple[tuple[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise BadInput(f"'set' entries must be mappings like {{num_hidden_layers: 16}}, got {value!r}")
    return tuple(sorted(value.items()))


def _prompt_lengths(value: Any, source: str) -> tuple[int, ...]:
    """One ragged batch of the `prompt_lengths` axis: a non-empty list of whole token counts."""
    if not isinstance(value, list) or not value:
        raise BadInput(f"prompt_lengths in {source} must be a list of batches, each a list of prompt lengths "
                       f"(e.g. [[32, 500, 1000]]), got entry {value!r}")
    return check_prompt_lengths(value, f" in {source}")


def _apply_prompt_lengths(kwargs: dict[str, Any], source: str) -> None:
    """Set batch and ctx from a ragged batch, refusing a batch or ctx that says otherwise."""
    lengths = kwargs["prompt_lengths"]
    for name, key, implied in (("batch_size", "batch", len(lengths)), ("ctx_tokens", "ctx", max(lengths))):
        if name in kwargs and kwargs[name] != implied:
            raise BadInput(f"sweep spec {source}: {key} {kwargs[name]} contradicts prompt_lengths "
                           f"{list(lengths)} ({key} {implied}); leave {key} out, prompt_lengths sets it")
        kwargs[name] = implied


def plan_from_dict(data: Any, source: str = "<dict>") -> SweepPlan:
    """Expand a sweep mapping into TrialSpecs (unchecked against models; see `check_plan`)."""
    if not isinstance(data, dict):
        raise BadInput(f"sweep spec {source} must be a mapping of keys to values")
    allowed = set(GRID_KEYS) | set(SCALAR_KEYS)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadInput(f"unknown key(s) {unknown} in sweep spec {source}; allowed: {sorted(allowed)}")
    if "models" not in data and "model" not in data:
        raise BadInput(f"sweep spec {source} names no models (key 'models')")
    axes: dict[str, list[Any]] = {}
    for key, field_name in GRID_KEYS.items():
        if key in data:
            values = _as_list(data[key])
            if not values:
                raise BadInput(f"sweep key {key!r} in {source} has an empty list")
            axes[field_name] = values
    fixed: dict[str, Any] = {}
    for key, field_name in SCALAR_KEYS.items():
        if key in data:
            fixed[field_name] = data[key]
    for name in list(axes) + list(fixed):
        if name in INT_KEYS:
            vals = axes.get(name, [fixed.get(name)])
            for v in vals:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise BadInput(f"{name} must be whole numbers in {source}, got {v!r}")
    if "prompt_lengths" in axes:
        axes["prompt_lengths"] = [_prompt_lengths(v, source) for v in axes["prompt_lengths"]]
    names = list(axes)
    specs = []
    for combo in itertools.product(*(axes[n] for n in names)):
        kwargs = dict(zip(names, combo)) | fixed
        if "sampling" in kwargs:
            kwargs["sampling"] = _sampling(kwargs["sampling"])
        if "overrides" in kwargs:
            kwargs["overrides"] = _overrides(kwargs["overrides"])
        if "prompt_lengths" in kwargs:
            _apply_prompt_lengths(kwargs, source)
        kwargs["model"] = str(kwargs["model"])
        specs.append(TrialSpec(**kwargs))
    # Group by model so each is built once; keep the YAML's order within a model.
    first_seen: dict[tuple, int] = {}
    for i, s in enumerate(specs):
        first_seen.setdefault(s.model_key(), i)
    specs.sort(key=lambda s: first_seen[s.model_key()])
    return SweepPlan(specs=specs, source=source)


def load_plan(path: str | Path) -> SweepPlan:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise BadInput(f"sweep spec not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else "parse error"
        raise BadInput(f"malformed sweep YAML {p}: {first}") from None
    return plan_from_dict(data, str(p))


def check_plan(plan: SweepPlan, check: Callable[[TrialSpec], Any]) -> None:
    """Run the no-GPU checks on every grid point before anything is measured."""
    for spec in plan.specs:
        check(spec)


def session_device(specs: Iterable[TrialSpec]) -> str:
    """The device one session runs these specs on: theirs when they all name the same one, else "auto"."""
    devices = {s.device for s in specs}
    return devices.pop() if len(devices) == 1 else "auto"


def pending(plan: SweepPlan, done_ids: Iterable[str]) -> tuple[list[TrialSpec], int]:
    done = set(done_ids)
    todo = [s for s in plan.specs if s.trial_id not in done]
    return todo, len(plan.specs) - len(todo)
