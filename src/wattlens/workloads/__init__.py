"""Workloads layer: exact-length prompt batches (synthetic and text) and the tokenizers they use.

Imports only `wattlens.core` at load time; torch and transformers are imported inside functions.
"""

from wattlens.workloads.filler import FILLER_TEXT
from wattlens.workloads.inputs import (
    PromptBatch,
    synthetic_batch,
    template_overhead_tokens,
    text_batch,
    verify_lengths,
)
from wattlens.workloads.tokenizers import bundled_chat_template, load_tokenizer

__all__ = [
    "FILLER_TEXT",
    "PromptBatch",
    "bundled_chat_template",
    "load_tokenizer",
    "synthetic_batch",
    "template_overhead_tokens",
    "text_batch",
    "verify_lengths",
]
