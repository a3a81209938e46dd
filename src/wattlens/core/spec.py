"""What a trial is: the value object every layer agrees on.

A `TrialSpec` names everything that changes the cost of inference. Its `trial_id` is a stable
hash of the canonical JSON of those fields, so the same spec always lands on the same row and a
sweep can be resumed by skipping ids already stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from wattlens.core.errors import BadInput
from wattlens.core.units import SUPPORTED_DTYPES

MODES = ("eager", "static", "compiled", "graphed")
"""Serving modes of the HF backend: dynamic cache (as the GPT-OSS study ran it), static cache,
static cache with a compiled, CUDA-graph-captured decode step, and static cache with the model's
own (uncompiled) kernels captured in a CUDA graph: GPU-bound decode with seconds of setup per
shape instead of minutes of compilation (what a dataset campaign over many shapes needs)."""

LEAN_LOOP_MODES = ("compiled", "graphed")
"""Modes that run wattlens' own decode loop over a static cache (ragged batches: graphed only)."""

PROMPT_KINDS = ("synthetic", "text")

COMPILE_SCOPES = ("model", "layers")
"""What `compiled` mode hands to torch.compile: the whole decode step and prefill ("model"), or one
decoder-layer body that every layer runs through ("layers", regional compilation: its setup does
not grow with depth; the rest of the step runs uncompiled inside the same CUDA graph)."""


@dataclass(frozen=True)
class SamplingSpec:
    """Decoding settings. Greedy unless `temperature` > 0."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k filter

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def validate(self) -> None:
        if self.temperature < 0:
            raise BadInput(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise BadInput(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise BadInput(f"top_k must be >= 0, got {self.top_k}")

    def label(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"T={self.temperature:g}"]
        if self.top_p < 1.0:
            parts.append(f"top_p={self.top_p:g}")
        if self.top_k:
            parts.append(f"top_k={self.top_k}")
        return ",".join(parts)


@dataclass(frozen=True)
class TrialSpec:
    """One measured configuration: model x shapes x precision x mode x sampling."""

    model: str
    ctx_tokens: int = 128
    gen_tokens: int = 32
    batch_size: int = 1
    dtype: str = "bf16"
    mode: str = "eager"
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    overrides: tuple[tuple[str, Any], ...] = ()  # architecture edits, e.g. (("num_hidden_layers", 16),)
    repeats: int = 5
    warmups: int = 1
    prompt: str = "synthetic"
    device: str = "auto"
    seed: int = 0
    prompt_lengths: tuple[int, ...] = ()  # input tokens of each row of a ragged batch; () = all ctx_tokens
    compile_scope: str = ""  # compiled mode: "model" or "layers" (COMPILE_SCOPES); "" = the backend's default

    @property
    def ragged(self) -> bool:
        """True for a mixed-size batch (rows of different input lengths, left-padded to ctx_tokens)."""
        return bool(self.prompt_lengths)

    def row_input_tokens(self) -> tuple[int, ...]:
        """Input tokens of each row: the ragged lengths, or ctx_tokens repeated batch_size times."""
        return self.prompt_lengths or (self.ctx_tokens,) * self.batch_size

    def validate(self) -> None:
        """Checks that need no model; the model layer checks ctx against max positions."""
        if self.ctx_tokens < 1:
            raise BadInput(f"ctx must be >= 1 token, got {self.ctx_tokens}")
        if self.gen_tokens < 1:
            raise BadInput(f"gen must be >= 1 token, got {self.gen_tokens}")
        if self.batch_size <= 0:
            raise BadInput(f"batch must be > 0, got {self.batch_size}")
        if self.repeats < 1:
            raise BadInput(f"repeats must be >= 1, got {self.repeats}")
        if self.warmups < 0:
            raise BadInput(f"warmups must be >= 0, got {self.warmups}")
        if self.dtype not in SUPPORTED_DTYPES:
            raise BadInput(f"unsupported dtype {self.dtype!r}; choose one of {', '.join(SUPPORTED_DTYPES)}")
        if self.mode not in MODES:
            raise BadInput(f"unsupported mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.prompt not in PROMPT_KINDS:
            raise BadInput(f"unsupported prompt kind {self.prompt!r}; choose one of {', '.join(PROMPT_KINDS)}")
        self.sampling.validate()
        if self.compile_scope:
            if self.compile_scope not in COMPILE_SCOPES:
                raise BadInput(f"unsupported compile_scope {self.compile_scope!r}; choose one of {', '.join(COMPILE_SCOPES)}")
            if self.mode != "compiled":
                raise BadInput(f"compile_scope applies to mode 'compiled' only, not {self.mode!r}")
        if self.prompt_lengths:
            self._validate_prompt_lengths()

    def _validate_prompt_lengths(self) -> None:
        lengths = check_prompt_lengths(self.prompt_lengths)
        if self.batch_size != len(lengths):
            raise BadInput(f"batch {self.batch_size} does not match the {len(lengths)} prompt_lengths "
                           f"{list(lengths)}")
        if self.ctx_tokens != max(lengths):
            raise BadInput(f"ctx {self.ctx_tokens} must equal the longest of prompt_lengths "
                           f"({max(lengths)}): shorter rows are left-padded to it")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overrides"] = {k: v for k, v in self.overrides}
        if self.prompt_lengths:
            d["prompt_lengths"] = list(self.prompt_lengths)
        else:
            del d["prompt_lengths"]  # absent when uniform, so ids of existing stores do not change
        if not self.compile_scope:
            del d["compile_scope"]  # absent when unset, for the same reason
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialSpec:
        d = dict(d)
        d["sampling"] = SamplingSpec(**d.get("sampling", {}))
        d["overrides"] = tuple(sorted((d.get("overrides") or {}).items()))
        d["prompt_lengths"] = tuple(d.get("prompt_lengths") or ())
        return cls(**d)

    @property
    def trial_id(self) -> str:
        """Stable 16-hex-digit hash of the canonical spec (repeats and warm-ups included)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def ragged_batch(cls, model: str, prompt_lengths: Any, **fields: Any) -> TrialSpec:
        """A mixed-size batch spec: batch and ctx follow from the lengths (batch = count, ctx = longest)."""
        lengths = check_prompt_lengths(prompt_lengths)
        return cls(model=model, prompt_lengths=lengths, batch_size=len(lengths), ctx_tokens=max(lengths),
                   **fields)

    def with_(self, **changes: Any) -> TrialSpec:
        return replace(self, **changes)

    @property
    def mode_label(self) -> str:
        """The serving mode with its compile scope when one is set, e.g. 'compiled[layers]'."""
        return f"{self.mode}[{self.compile_scope}]" if self.compile_scope else self.mode

    def model_key(self) -> tuple:
        """Trials with equal keys share one built model (a sweep orders by this)."""
        return (self.model, self.overrides, self.dtype, self.device)


def check_prompt_lengths(prompt_lengths: Any, where: str = "") -> tuple[int, ...]:
    """The prompt lengths of one ragged batch as a tuple: non-empty, whole numbers >= 1 (BadInput otherwise).
    `where` (e.g. ' in sweep.yaml') goes into the message."""
    lengths = tuple(prompt_lengths)
    if not lengths:
        raise BadInput(f"prompt_lengths{where} is empty: a ragged batch needs at least one prompt")
    for n in lengths:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise BadInput(f"prompt_lengths{where} must be whole numbers >= 1, got {n!r} in {list(lengths)}")
    return lengths


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `--set key=value` edit; the value is read as JSON when it parses, else as a string."""
    if "=" not in text:
        raise BadInput(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise BadInput(f"--set expects key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value
