"""Workloads layer: exact-length prompt batches (synthetic and text), ragged
synthetic batches and their prompt lengths (mixed_batches) and the tokenizers they use.

Imports only `wattlens.core` at load time; torch and transformers are imported inside functions.
"""

from wattlens.workloads.filler import FILLER_TEXT
from wattlens.workloads.inputs import (
    PromptBatch,
    ragged_synthetic_batch,
    synthetic_batch,
    template_overhead_tokens,
    text_batch,
    verify_lengths,
)
from wattlens.workloads.mixed import mixed_batches
from wattlens.workloads.tokenizers import bundled_chat_template, load_tokenizer

__all__ = [
    "FILLER_TEXT",
    "PromptBatch",
    "bundled_chat_template",
    "load_tokenizer",
    "mixed_batches",
    "ragged_synthetic_batch",
    "synthetic_batch",
    "template_overhead_tokens",
    "text_batch",
    "verify_lengths",
]
