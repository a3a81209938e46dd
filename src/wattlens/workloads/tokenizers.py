"""Tokenizers for text workloads: the bundled GPT-2 tokenizer, or a local Hugging Face folder.

GPT-2 is bundled (see data/gpt2/PROVENANCE.md) so that tests and demos run without network.
It has no chat template, so a small ChatML-style template written for wattlens is attached
when asked for; a tokenizer that already has its own template keeps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattlens.core.errors import BadInput

DATA_DIR = Path(__file__).resolve().parent / "data"
GPT2_DIR = DATA_DIR / "gpt2"
BUNDLED_TOKENIZERS = {"gpt2": GPT2_DIR, "openai-community/gpt2": GPT2_DIR}
BUNDLED_CHAT_TEMPLATES = {"chatml": GPT2_DIR / "chatml.jinja"}


def bundled_chat_template(name: str = "chatml") -> str:
    """The text of a chat template shipped with wattlens, by name."""
    path = BUNDLED_CHAT_TEMPLATES.get(name)
    if path is None:
        known = ", ".join(sorted(BUNDLED_CHAT_TEMPLATES))
        raise BadInput(f"unknown chat template {name!r} (bundled: {known})")
    return path.read_text(encoding="utf-8")


def _resolve_template(chat_template: str) -> str:
    """A bundled template name, or a path to a .jinja file."""
    if chat_template in BUNDLED_CHAT_TEMPLATES:
        return bundled_chat_template(chat_template)
    path = Path(chat_template).expanduser()
    if path.suffix == ".jinja" and path.is_file():
        return path.read_text(encoding="utf-8")
    known = ", ".join(sorted(BUNDLED_CHAT_TEMPLATES))
    raise BadInput(f"unknown chat template {chat_template!r}: use one of {known} or a path to a .jinja file")


def load_tokenizer(name_or_path: str = "gpt2", chat_template: str | None = "chatml") -> Any:
    """Load a tokenizer offline: 'gpt2' (bundled) or a local folder of Hugging Face tokenizer files.

    `chat_template` ('chatml' or a .jinja path) is attached only when the tokenizer has no
    template of its own; None leaves it without one. Nothing is ever fetched from the network.
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise BadInput(f"tokenizer must be a name or a folder path, got {name_or_path!r}")
    template_text = _resolve_template(chat_template) if chat_template is not None else None

    if name_or_path in BUNDLED_TOKENIZERS:
        try:
            from transformers import GPT2TokenizerFast
        except ImportError:  # transformers >= 5 merged the slow and fast classes
            from transformers import GPT2Tokenizer as GPT2TokenizerFast
        tok = GPT2TokenizerFast.from_pretrained(str(BUNDLED_TOKENIZERS[name_or_path]), local_files_only=True)
        tok.name_or_path = "gpt2"
    else:
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            bundled = ", ".join(sorted(BUNDLED_TOKENIZERS))
            raise BadInput(
                f"unknown tokenizer {name_or_path!r}: use a bundled one ({bundled}) or a local folder "
                "with Hugging Face tokenizer files"
            )
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BadInput(f"no loadable tokenizer in {str(folder)!r}: {str(exc).splitlines()[0]}") from exc

    if template_text is not None and not getattr(tok, "chat_template", None):
        tok.chat_template = template_text
    return tok
