"""Exact-length prompt batches: every row has exactly `ctx_tokens` tokens, generation prompt intact.

A ragged (mixed-size) synthetic batch is the one exception: rows of given lengths, left-padded to
the longest with an attention mask of 0 on the padding, as a server batching such prompts would.

The published GPT-OSS study truncated prompts after applying the chat template, which cut off
the assistant header (DESIGN.md section 6). Here the user message content is trimmed or padded
before templating, so the template, and the generation prompt at its end, is always whole.

torch is imported inside the functions: this layer imports only `wattlens.core` at load time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wattlens.core.errors import BadInput
from wattlens.core.spec import check_prompt_lengths
from wattlens.workloads.filler import FILLER_TEXT

if TYPE_CHECKING:
    import torch

PLAIN_TEMPLATE_PREFIX = "Question: "
PLAIN_TEMPLATE_SUFFIX = "\nAnswer:"
"""Wrapper used without a chat template: 'Question: {content}\\nAnswer:'."""

MAX_STRING_TRIES = 8
"""Templated-string rounds before building the ids piecewise (tokenisation is not additive)."""

_MARKER = "WATTLENSCONTENTMARKER"
_FILLER_SEPARATOR = "\n\n"


@dataclass
class PromptBatch:
    """A batch of prompts of one exact length (mask all ones), or ragged: left-padded rows."""

    input_ids: torch.LongTensor  # [batch, ctx]
    attention_mask: torch.LongTensor  # [batch, ctx]; all ones unless ragged (0 on the left padding)
    input_tokens: int  # ctx: the padded length of every row (the longest prompt when ragged)
    source: str  # 'synthetic' or 'text:<tokenizer name>'
    texts: list[str] | None = None  # user message content of each row (after trim/pad); None if synthetic
    row_tokens: tuple[int, ...] = ()  # real (unpadded) input tokens of each row when ragged; () = all ctx

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def ragged(self) -> bool:
        return bool(self.row_tokens)


def _check_positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadInput(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _torch_device(device: Any) -> Any:
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BadInput(f"unknown device {device!r}") from exc


def synthetic_batch(
    batch_size: int,
    ctx_tokens: int,
    vocab_size: int,
    *,
    seed: int = 0,
    device: Any = "cpu",
    avoid_token_ids: Iterable[int | None] = (),
) -> PromptBatch:
    """Uniform random token ids, the same for a seed on every device.

    Special ids (eos, pad, bos) passed in `avoid_token_ids` never appear, so a random prompt can
    neither stop generation early nor look like padding. Ids are drawn on the CPU with a seeded
    generator (device-independent) and then placed on `device`. None entries are ignored, so
    `[tok.eos_token_id, tok.pad_token_id]` can be passed as is.
    """
    import torch

    _check_positive_int("batch_size", batch_size, 1)
    _check_positive_int("ctx_tokens", ctx_tokens, 1)
    _check_positive_int("vocab_size", vocab_size, 1)
    target = _torch_device(device)
    avoid = {int(i) for i in avoid_token_ids if i is not None}
    allowed = torch.tensor([i for i in range(vocab_size) if i not in avoid], dtype=torch.long)
    if allowed.numel() == 0:
        raise BadInput(
            f"vocab_size={vocab_size} is too small: every id is in avoid_token_ids {sorted(avoid)}"
        )
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    picks = torch.randint(0, allowed.numel(), (batch_size, ctx_tokens), generator=gen)
    ids = allowed[picks].to(target)
    batch = PromptBatch(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        input_tokens=ctx_tokens,
        source="synthetic",
        texts=None,
    )
    verify_lengths(batch, ctx_tokens)
    return batch


def ragged_synthetic_batch(
    prompt_lengths: Sequence[int],
    vocab_size: int,
    *,
    seed: int = 0,
    device: Any = "cpu",
    avoid_token_ids: Iterable[int | None] = (),
    pad_token_id: int | None = None,
) -> PromptBatch:
    """Random prompts of the given lengths, left-padded to the longest (a mixed-size batch).

    Row i keeps the last `prompt_lengths[i]` ids of a `synthetic_batch` of the longest length
    (same seed, same draw); its left is filled with the pad id (the model's, else 0) and masked
    with 0. The pad id is never drawn as a real token, so padding and prompt cannot be confused.
    Left padding, as decoder-only generation needs: every row's last real token sits at the end.
    """
    if isinstance(prompt_lengths, (str, bytes)) or not isinstance(prompt_lengths, Sequence):
        raise BadInput(f"prompt_lengths must be a list of token counts, got {type(prompt_lengths).__name__}")
    lengths = check_prompt_lengths(prompt_lengths)
    if pad_token_id is not None:
        _check_positive_int("pad_token_id", pad_token_id, 0)
    pad_id = 0 if pad_token_id is None else pad_token_id
    if pad_id >= vocab_size:
        raise BadInput(f"pad_token_id {pad_id} is outside the vocabulary of {vocab_size} ids")
    longest = max(lengths)
    full = synthetic_batch(len(lengths), longest, vocab_size, seed=seed, device=device,
                           avoid_token_ids=[*avoid_token_ids, pad_id])
    ids, mask = full.input_ids.clone(), full.attention_mask.clone()
    for row, n in enumerate(lengths):
        ids[row, : longest - n] = pad_id
        mask[row, : longest - n] = 0
    batch = PromptBatch(input_ids=ids, attention_mask=mask, input_tokens=longest, source="synthetic",
                        texts=None, row_tokens=lengths)
    verify_lengths(batch, longest)
    return batch


@dataclass(frozen=True)
class _Wrapper:
    """How content is wrapped into a prompt: as text (render) and as pieces of ids."""

    render: Any  # content str -> full prompt str
    encode_full: Any  # full prompt str -> ids (special tokens as the model expects them)
    prefix_ids: list[int]  # everything before the content
    turn_end_ids: list[int]  # after the content, before the generation prompt
    gen_ids: list[int]  # the generation prompt (assistant header); must end every row
    overhead_tokens: int  # length of the templated prompt with empty content


def _encode_plain(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _make_wrapper(tokenizer: Any, use_chat_template: bool) -> _Wrapper:
    """Split the template around the content, so its pieces can be tokenised separately."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):

        def render_with(content: str, add_generation_prompt: bool) -> str:
            out = tokenizer.apply_chat_template(
                [{"role": "user", "content": content}],
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
            if not isinstance(out, str):
                raise RuntimeError(f"apply_chat_template(tokenize=False) returned {type(out).__name__}")
            return out

        def render(content: str) -> str:
            return render_with(content, True)

        def encode_full(text: str) -> list[int]:
            # The template writes its own special tokens (bos and so on): add none on top.
            return _encode_plain(tokenizer, text)

        full = render(_MARKER)
        if full.count(_MARKER) != 1:
            raise BadInput(
                f"the chat template of {_tokenizer_name(tokenizer)!r} does not place the user message "
                "content verbatim once, so an exact-length prompt cannot be built with it"
            )
        prefix_text, rest = full.split(_MARKER)
        no_gen = render_with(_MARKER, False)
        if full.startswith(no_gen):
            gen_text = full[len(no_gen) :]
            turn_end_text = rest[: len(rest) - len(gen_text)]
        else:
            gen_text, turn_end_text = rest, ""
        prefix_ids = _encode_plain(tokenizer, prefix_text)
    else:

        def render(content: str) -> str:
            return PLAIN_TEMPLATE_PREFIX + content + PLAIN_TEMPLATE_SUFFIX

        # No template: keep the leading specials the tokenizer adds (bos for Llama, none for
        # GPT-2), found by encoding the prefix with and without them; never a trailing eos.
        with_specials = list(
            tokenizer(PLAIN_TEMPLATE_PREFIX, add_special_tokens=True, verbose=False)["input_ids"]
        )
        bare = _encode_plain(tokenizer, PLAIN_TEMPLATE_PREFIX)
        starts = range(len(with_specials) - len(bare) + 1)
        start = next((i for i in starts if with_specials[i : i + len(bare)] == bare), 0)
        head_ids = with_specials[:start]

        def encode_full(text: str) -> list[int]:
            return head_ids + _encode_plain(tokenizer, text)

        turn_end_text, gen_text = "", PLAIN_TEMPLATE_SUFFIX
        prefix_ids = head_ids + bare

    return _Wrapper(
        render=render,
        encode_full=encode_full,
        prefix_ids=prefix_ids,
        turn_end_ids=_encode_plain(tokenizer, turn_end_text) if turn_end_text else [],
        gen_ids=_encode_plain(tokenizer, gen_text) if gen_text else [],
        overhead_tokens=len(encode_full(render(""))),
    )


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def template_overhead_tokens(tokenizer: Any, *, use_chat_template: bool = True) -> int:
    """Tokens the prompt wrapper takes with empty content; ctx_tokens must exceed it."""
    return _make_wrapper(tokenizer, use_chat_template).overhead_tokens


def _filler_ids(tokenizer: Any, filler_text: str, n_tokens: int) -> list[int]:
    """At least `n_tokens` filler ids: the filler repeated, ending with a paragraph break."""
    one = _encode_plain(tokenizer, filler_text)
    if not one:
        raise BadInput(f"filler_text {filler_text!r} encodes to no tokens")
    repeats = n_tokens // len(one) + 2
    ids = _encode_plain(tokenizer, " ".join([filler_text] * repeats) + _FILLER_SEPARATOR)
    if len(ids) < n_tokens:  # cannot happen for sane text; guard against odd tokenizers
        ids = ids * (n_tokens // max(len(ids), 1) + 1)
    return ids


def _content_ids(text_ids: list[int], filler_ids: list[int], n_tokens: int) -> list[int]:
    """Exactly n_tokens content ids: the text cut at its end, or filler before the whole text.

    Filler goes first, as a preamble, so the user's text stays next to the generation prompt
    and the model answers the text rather than continuing the filler.
    """
    if n_tokens <= len(text_ids):
        return text_ids[:n_tokens]
    pad = n_tokens - len(text_ids)
    return filler_ids[len(filler_ids) - pad :] + text_ids


def _exact_row(
    tokenizer: Any, wrapper: _Wrapper, text_ids: list[int], filler_ids: list[int], ctx_tokens: int
) -> tuple[list[int], str]:
    """One prompt of exactly ctx_tokens ids ending with the generation prompt, and its content.

    First as a templated string re-tokenised whole (what a server given text would see),
    adjusting the content length until the count is exact; boundary merges can make that
    oscillate, so after MAX_STRING_TRIES the ids are built as prefix + content + suffix,
    which is exact by construction.
    """
    gen = wrapper.gen_ids
    n_content = ctx_tokens - wrapper.overhead_tokens
    tried: set[int] = set()
    for _ in range(MAX_STRING_TRIES):
        if n_content < 1 or n_content in tried:
            break
        tried.add(n_content)
        content = _decode(tokenizer, _content_ids(text_ids, filler_ids, n_content))
        ids = wrapper.encode_full(wrapper.render(content))
        if len(ids) == ctx_tokens and (not gen or ids[-len(gen) :] == gen):
            return ids, content
        if len(ids) == ctx_tokens:
            break  # right length but the generation prompt merged into the content: go piecewise
        n_content += ctx_tokens - len(ids)

    fixed = len(wrapper.prefix_ids) + len(wrapper.turn_end_ids) + len(gen)
    n_content = ctx_tokens - fixed
    if n_content < 1:
        raise BadInput(
            f"ctx_tokens={ctx_tokens} leaves no room for content: the prompt template takes {fixed} "
            "tokens when tokenised piece by piece"
        )
    content_ids = _content_ids(text_ids, filler_ids, n_content)
    return wrapper.prefix_ids + content_ids + wrapper.turn_end_ids + gen, _decode(tokenizer, content_ids)


def text_batch(
    tokenizer: Any,
    texts: Sequence[str],
    ctx_tokens: int,
    *,
    use_chat_template: bool = True,
    filler_text: str | None = None,
    device: Any = "cpu",
) -> PromptBatch:
    """One row per text, each exactly `ctx_tokens` tokens with the generation prompt whole.

    The user message content is trimmed (from its end) or padded (with neutral filler before
    the text) before templating, never after. Without a chat template (use_chat_template=False,
    or the tokenizer has none) the wrapper is 'Question: {content}\\nAnswer:'.
    """
    import torch

    _check_positive_int("ctx_tokens", ctx_tokens, 1)
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise BadInput(f"texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise BadInput("texts is empty: a batch needs at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadInput(f"texts[{i}] must be a string, got {type(text).__name__}")
    filler = FILLER_TEXT if filler_text is None else filler_text
    if not isinstance(filler, str) or not filler.strip():
        raise BadInput(f"filler_text must be non-blank text, got {filler_text!r}")
    target = _torch_device(device)

    wrapper = _make_wrapper(tokenizer, use_chat_template)
    if wrapper.overhead_tokens >= ctx_tokens:
        raise BadInput(
            f"ctx_tokens={ctx_tokens} is too small: the prompt template alone takes "
            f"{wrapper.overhead_tokens} tokens (ctx must be >= {wrapper.overhead_tokens + 1})"
        )
    all_text_ids = [_encode_plain(tokenizer, t) for t in texts]
    pad_needed = max(ctx_tokens - len(ids) for ids in all_text_ids)
    filler_ids = _filler_ids(tokenizer, filler, pad_needed + 16) if pad_needed > 0 else []

    rows, contents = [], []
    for text_ids in all_text_ids:
        ids, content = _exact_row(tokenizer, wrapper, text_ids, filler_ids, ctx_tokens)
        rows.append(ids)
        contents.append(content)

    gen = wrapper.gen_ids
    for i, ids in enumerate(rows):
        if len(ids) != ctx_tokens:
            raise RuntimeError(f"bug: prompt row {i} has {len(ids)} tokens, expected {ctx_tokens}")
        if gen and ids[-len(gen) :] != gen:
            raise RuntimeError(f"bug: prompt row {i} does not end with the generation prompt {gen}")

    input_ids = torch.tensor(rows, dtype=torch.long, device=target)
    batch = PromptBatch(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        input_tokens=ctx_tokens,
        source=f"text:{_tokenizer_name(tokenizer)}",
        texts=contents,
    )
    verify_lengths(batch, ctx_tokens)
    return batch


def verify_lengths(batch: PromptBatch, ctx_tokens: int) -> None:
    """Raise RuntimeError unless every row is exactly ctx_tokens long with an all-ones mask, or,
    for a ragged batch, unless each row's mask is zeros then exactly `row_tokens[i]` ones.

    A mismatch here is a bug, not a user error: the batch builders guarantee the length.
    """
    ids, mask = batch.input_ids, batch.attention_mask
    if ids.dim() != 2 or ids.shape[1] != ctx_tokens:
        raise RuntimeError(f"prompt batch has shape {tuple(ids.shape)}, expected [batch, {ctx_tokens}]")
    if batch.input_tokens != ctx_tokens:
        raise RuntimeError(f"prompt batch says input_tokens={batch.input_tokens}, expected {ctx_tokens}")
    if tuple(mask.shape) != tuple(ids.shape):
        raise RuntimeError(f"attention mask shape {tuple(mask.shape)} != input ids shape {tuple(ids.shape)}")
    if batch.ragged:
        _verify_ragged_mask(batch, ctx_tokens)
    elif mask.device.type != "meta" and not bool((mask == 1).all()):  # meta tensors hold no values
        raise RuntimeError("attention mask has zeros: exact-length prompts carry no padding")
    if batch.texts is not None and len(batch.texts) != ids.shape[0]:
        raise RuntimeError(f"prompt batch has {len(batch.texts)} texts for {ids.shape[0]} rows")


def _verify_ragged_mask(batch: PromptBatch, ctx_tokens: int) -> None:
    ids, mask, lengths = batch.input_ids, batch.attention_mask, batch.row_tokens
    if len(lengths) != ids.shape[0]:
        raise RuntimeError(f"ragged batch has {len(lengths)} row lengths for {ids.shape[0]} rows")
    if max(lengths) != ctx_tokens:
        raise RuntimeError(f"ragged batch's longest row is {max(lengths)}, expected {ctx_tokens}")
    if mask.device.type == "meta":
        return
    sums = [int(v) for v in mask.sum(dim=1).tolist()]
    if sums != list(lengths):
        raise RuntimeError(f"attention mask row sums {sums} != requested prompt lengths {list(lengths)}")
    for row, n in enumerate(lengths):  # left padding: zeros first, then all ones
        if not bool((mask[row, ctx_tokens - n :] == 1).all()):
            raise RuntimeError(f"ragged row {row} is not left-padded: its mask has zeros after its first "
                               "token")
