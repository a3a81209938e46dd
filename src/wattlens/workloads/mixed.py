"""Prompt lengths for mixed-size (ragged) batches, as in From Prompts to Power's Fig. 12 validation.

Real traffic mixes short and long prompts; lengths drawn log-uniformly cover both ends of a range
evenly on the log scale that energy roughly follows. Pure Python (random.Random), so a seed gives
the same batches on every machine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from wattlens.core.errors import BadInput


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadInput(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def mixed_batches(n_batches: int, batch_sizes: Sequence[int], min_tokens: int, max_tokens: int,
                  seed: int = 0) -> list[tuple[int, ...]]:
    """`n_batches` ragged batches of prompt lengths (tokens), drawn log-uniformly in [min, max].

    Batch k has `batch_sizes[k % len(batch_sizes)]` prompts, so every size is used in turn.
    """
    _whole("n_batches", n_batches, 1)
    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, Sequence) or not batch_sizes:
        raise BadInput(f"batch_sizes must be a non-empty list of prompt counts, got {batch_sizes!r}")
    sizes = [_whole("batch size", b, 1) for b in batch_sizes]
    _whole("min_tokens", min_tokens, 1)
    _whole("max_tokens", max_tokens, 1)
    if max_tokens < min_tokens:
        raise BadInput(f"max_tokens {max_tokens} is below min_tokens {min_tokens}")
    rng = random.Random(seed)
    lo, hi = math.log(min_tokens), math.log(max_tokens)
    batches = []
    for k in range(n_batches):
        draws = (round(math.exp(rng.uniform(lo, hi))) for _ in range(sizes[k % len(sizes)]))
        batches.append(tuple(min(max_tokens, max(min_tokens, n)) for n in draws))
    return batches
