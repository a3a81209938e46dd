"""Studies: a published protocol shipped as YAML, split into parts that each fit one GPU command.

A study file names its models by role (e.g. `moe: gpt-oss-20b`), its published figures (a CSV
next to it) and its parts; each part is a list of sweep blocks with the keys of a `wattlens
sweep` spec. `--models-override` maps catalog names onto others (tiny stand-ins on a CPU); the
mapping is stored with every trial's spec, so a report can say which model stood in for which.

Before a trial runs on a GPU, its weights plus its KV cache are compared with the device's
memory; a trial that cannot fit is stored as a failed trial whose error says how many bytes it
needs and how many there are, and the study goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlens.core.errors import BadInput
from wattlens.core.results import TrialResult
from wattlens.core.spec import TrialSpec
from wattlens.core.units import dtype_bytes
from wattlens.runner.sweep import plan_from_dict

STUDIES_DIR = Path(__file__).with_name("studies")

# The usual CPU stand-ins for the GPT-OSS-20B study, clearly not the real models.
TINY_STANDINS = {"gpt-oss-20b": "tiny-gpt-oss", "qwen3-32b": "tiny-llama", "yi-34b": "tiny-gqa"}
# Stand-ins are given room for the study's longest context (the tiny configs stop at 4096 positions).
STANDIN_MAX_POSITIONS = 8192


@dataclass
class Study:
    name: str
    title: str
    source: Path
    data: dict[str, Any]
    parts: dict[str, list[TrialSpec]]
    mapping: dict[str, str] = field(default_factory=dict)  # study model -> model actually run

    @property
    def roles(self) -> dict[str, str]:
        """role -> the study's model name (before any override)."""
        return dict(self.data.get("roles") or {})

    def model_for_role(self, role: str) -> str:
        """The model that actually runs for a role (a stand-in when overridden)."""
        name = self.roles[role]
        return self.mapping.get(name, name)

    @property
    def published_path(self) -> Path | None:
        rel = self.data.get("published")
        return (self.source.parent / rel) if rel else None

    def all_specs(self) -> list[TrialSpec]:
        seen: dict[str, TrialSpec] = {}
        for specs in self.parts.values():
            for s in specs:
                seen.setdefault(s.trial_id, s)
        return list(seen.values())


def study_path(name_or_path: str) -> Path:
    """A shipped study name (`gpt-oss-20b`) or a path to a copied/edited YAML file."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    shipped = STUDIES_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(f.stem for f in STUDIES_DIR.glob("*.yaml"))
    raise BadInput(f"unknown study {name_or_path!r}; shipped studies: {', '.join(names)} (or give a YAML path)")


def parse_mapping(text: str | None) -> dict[str, str]:
    """`tiny` or `a=b,c=d` -> {a: b, c: d}. Empty/None -> no mapping."""
    if not text:
        return {}
    if text.strip() == "tiny":
        return dict(TINY_STANDINS)
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise BadInput(f"--models-override expects 'tiny' or name=stand-in pairs, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        if not k or not v:
            raise BadInput(f"--models-override entry {item!r} has an empty side")
        out[k] = v
    return out


def load_study(name_or_path: str, mapping: dict[str, str] | None = None, device: str | None = None,
               repeats_cap: int | None = None) -> Study:
    """Read a study YAML and expand every part into TrialSpecs (models mapped, defaults applied)."""
    import yaml

    path = study_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise BadInput(f"malformed study YAML {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("parts"), dict) or not data["parts"]:
        raise BadInput(f"study {path} needs a mapping with a non-empty 'parts' mapping")
    mapping = dict(mapping or {})
    unknown = set(mapping) - set((data.get("roles") or {}).values())
    if unknown:
        raise BadInput(f"--models-override names {sorted(unknown)}, which the study does not use; "
                       f"its models: {sorted((data.get('roles') or {}).values())}")
    defaults = dict(data.get("defaults") or {})
    parts: dict[str, list[TrialSpec]] = {}
    for part, blocks in data["parts"].items():
        if not isinstance(blocks, list) or not blocks:
            raise BadInput(f"part {part!r} of study {path} must be a non-empty list of sweep blocks")
        specs: list[TrialSpec] = []
        for i, block in enumerate(blocks):
            if not isinstance(block, dict):
                raise BadInput(f"block {i} of part {part!r} in {path} is not a mapping")
            merged = defaults | block
            models = merged.pop("models", merged.pop("model", None))
            models = models if isinstance(models, list) else [models]
            mapped = [mapping.get(str(m), str(m)) for m in models]
            if mapping and any(m in mapping for m in models):
                merged["set"] = {**(merged.get("set") or {}), "max_position_embeddings": STANDIN_MAX_POSITIONS}
            merged["models"] = mapped
            if device:
                merged["device"] = device
            if repeats_cap is not None and int(merged.get("repeats", 5)) > repeats_cap:
                merged["repeats"] = repeats_cap
            specs += plan_from_dict(merged, f"{path}:{part}[{i}]").specs
        # one model build per (model, dtype): keep the YAML's order within each
        first: dict[tuple, int] = {}
        for j, s in enumerate(specs):
            first.setdefault(s.model_key(), j)
        unique: dict[str, TrialSpec] = {}
        for s in sorted(specs, key=lambda s: first[s.model_key()]):
            unique.setdefault(s.trial_id, s)
        parts[str(part)] = list(unique.values())
    return Study(name=str(data.get("name") or path.stem), title=str(data.get("title") or path.stem), source=path,
                 data=data, parts=parts, mapping=mapping)


# --- fitting in device memory -------------------------------------------------------------------


def bytes_needed(spec: TrialSpec, facts: Any) -> dict[str, int]:
    """Lower bound on the device bytes a trial holds: its weights and its KV cache at full length."""
    nbytes = dtype_bytes(spec.dtype)
    weights = int(facts.weights_bytes(nbytes))
    kv = int(facts.kv_cache_bytes(spec.ctx_tokens + spec.gen_tokens, nbytes, batch=spec.batch_size))
    return {"weights_bytes": weights, "kv_bytes": kv, "total_bytes": weights + kv}


def fit_verdict(spec: TrialSpec, facts: Any, available_bytes: int | None, where: str = "the device") -> str | None:
    """None when the trial may fit (or nothing is known); else the 'cannot fit' reason."""
    if available_bytes is None:
        return None
    need = bytes_needed(spec, facts)
    if need["total_bytes"] <= available_bytes:
        return None
    return (f"cannot fit: {need['total_bytes']:,} bytes needed (weights {need['weights_bytes']:,} + KV "
            f"{need['kv_bytes']:,} at {spec.dtype}) > {available_bytes:,} bytes available on {where}")


def device_memory_bytes(device: str) -> int | None:
    """Total memory of a CUDA device as torch sees it; on the CPU the host's physical RAM (an
    oversized build there is killed by the kernel, taking the sweep with it); None when unknown."""
    if not device.startswith("cuda"):
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
            return None
    import torch

    return int(torch.cuda.mem_get_info(torch.device(device))[1])


def cannot_fit_result(spec: TrialSpec, session: Any, source: Any, reason: str) -> TrialResult:
    from wattlens.runner.session import utc_now

    now = utc_now()
    return TrialResult(spec=spec, run_id=session.run.run_id, status="failed", error=reason, weights=source.weights,
                       gpu_name=session.gpu_name, started_at=now, finished_at=now,
                       summary={"skipped_reason": reason})


def run_specs(specs: list[TrialSpec], session: Any, *, available_bytes: int | None = None,
              on_trial: Callable[[TrialSpec, TrialResult], None] | None = None) -> list[TrialResult]:
    """Run trials in order with one model holder; 'cannot fit' trials are stored, not attempted."""
    from wattlens.models.build import resolve_device
    from wattlens.runner.trial import ModelHolder, check_spec, run_trial

    models = ModelHolder()
    results = []
    try:
        for spec in specs:
            source, facts = check_spec(spec)
            device = resolve_device(spec.device)
            limit = available_bytes if available_bytes is not None else device_memory_bytes(device)
            reason = fit_verdict(spec, facts, limit, session.gpu_name or device)
            if reason:
                result = cannot_fit_result(spec, session, source, reason)
                session.store.save_trial(result)
            else:
                result = run_trial(spec, session, models)
            results.append(result)
            if on_trial:
                on_trial(spec, result)
    finally:
        models.release()
    return results


def vllm_status() -> str:
    """Why the vLLM row of the serving table is empty (wattlens has no vLLM backend yet)."""
    import importlib.util

    here = "installed" if importlib.util.find_spec("vllm") is not None else "not installed"
    return f"not run: wattlens has no vLLM backend yet (vLLM is {here} where this report was rendered)"
