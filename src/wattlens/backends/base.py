"""What every backend returns, and the one clock everything uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

TokenHook = Callable[[int, int], None]
"""Called as hook(token_index, perf_counter_ns) right after output token `token_index` exists on the
device (after a device sync). Index 0 is the first token, so the hook at 0 marks the end of prefill."""

clock_ns = time.perf_counter_ns


@dataclass
class GenerationOutput:
    """One generation: new token ids, and the synced time at which each became available."""

    output_ids: Any  # torch.LongTensor [batch, n_new]
    start_ns: int  # after a device sync, just before the request was issued
    token_times_ns: list[int]  # one per output token (same step for every sequence of the batch)
    end_ns: int
    held: Any = None  # objects (e.g. the KV cache) kept alive so held memory can be read
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def n_new_tokens(self) -> int:
        return int(self.output_ids.shape[1])

    def token_times_s(self) -> tuple[float, ...]:
        """Seconds from request start to each output token."""
        return tuple((t - self.start_ns) / 1e9 for t in self.token_times_ns)

    @property
    def e2e_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


class Backend(Protocol):
    name: str
    mode: str

    def prepare(self, batch_size: int, ctx_tokens: int, gen_tokens: int) -> None:
        """Allocate caches, compile and capture for these shapes (outside any measured window)."""

    def generate(self, input_ids: Any, attention_mask: Any, gen_tokens: int, on_token: TokenHook | None = None) -> GenerationOutput:
        """Generate exactly gen_tokens new tokens per sequence."""

    def sync(self) -> None:
        """Wait for all queued device work (a no-op on the CPU)."""

    def describe(self) -> dict[str, Any]:
        """How this backend runs (cache kind, compile mode, kernels), stored with the trial."""
