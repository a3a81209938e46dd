"""Exact-length inputs: synthetic ids and templated text prompts of exactly ctx tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wattlens.core.errors import BadInput  # noqa: E402
from wattlens.workloads import (  # noqa: E402
    FILLER_TEXT,
    PromptBatch,
    bundled_chat_template,
    load_tokenizer,
    synthetic_batch,
    template_overhead_tokens,
    text_batch,
    verify_lengths,
)
from wattlens.workloads import inputs as inputs_mod  # noqa: E402
from wattlens.workloads.tokenizers import GPT2_DIR  # noqa: E402

SHORT = "What is the capital of France?"
LONG = " ".join(
    f"Paragraph {i}: rivers carry water from the hills to the sea, and towns grow along their banks."
    for i in range(160)
)  # about 3,700 GPT-2 tokens: longer than every ctx tested, so it is always trimmed
UNICODE = "Café déjà vu — naïve façade, 東京 and Zürich. " * 3
TEXTS = [SHORT, LONG, "", UNICODE]
LONG_CTX = [128, 512, 2048]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("gpt2")


@pytest.fixture(scope="module")
def tok_plain():
    return load_tokenizer("gpt2", chat_template=None)


def _gen_ids(tok, use_chat_template: bool) -> list[int]:
    text = "<|im_start|>assistant\n" if use_chat_template else "\nAnswer:"
    return tok(text, add_special_tokens=False)["input_ids"]


def _render(tok, content: str, use_chat_template: bool) -> str:
    if use_chat_template:
        return tok.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    return f"Question: {content}\nAnswer:"


def _check_batch(tok, batch: PromptBatch, ctx: int, use_chat_template: bool) -> None:
    assert batch.input_ids.shape == (len(TEXTS), ctx)
    assert batch.input_ids.dtype == torch.long
    assert batch.attention_mask.shape == batch.input_ids.shape
    assert bool((batch.attention_mask == 1).all())
    assert batch.input_tokens == ctx
    gen = _gen_ids(tok, use_chat_template)
    for i, row in enumerate(batch.input_ids.tolist()):
        assert len(row) == ctx
        assert row[-len(gen) :] == gen, f"generation prompt cut at ctx={ctx}, row {i}"
        content = batch.texts[i]
        assert tok.decode(row) == _render(tok, content, use_chat_template)
    # Long text: trimmed from its end, so the content is a prefix of it.
    assert LONG.startswith(batch.texts[1]) and batch.texts[1]


# --- synthetic ---------------------------------------------------------------------------------


def test_synthetic_shape_mask_and_source():
    b = synthetic_batch(3, 17, 1000)
    assert b.input_ids.shape == (3, 17) and b.input_ids.dtype == torch.long
    assert b.attention_mask.shape == (3, 17) and bool((b.attention_mask == 1).all())
    assert b.input_tokens == 17 and b.source == "synthetic" and b.texts is None
    assert int(b.input_ids.min()) >= 0 and int(b.input_ids.max()) < 1000
    verify_lengths(b, 17)


def test_synthetic_deterministic_per_seed():
    a = synthetic_batch(2, 64, 50257, seed=7)
    b = synthetic_batch(2, 64, 50257, seed=7)
    c = synthetic_batch(2, 64, 50257, seed=8)
    assert torch.equal(a.input_ids, b.input_ids)
    assert not torch.equal(a.input_ids, c.input_ids)


def test_synthetic_avoids_special_ids():
    b = synthetic_batch(4, 500, 6, seed=1, avoid_token_ids=[0, 5, None, 99])
    seen = set(b.input_ids.unique().tolist())
    assert seen <= {1, 2, 3, 4} and len(seen) == 4
    big = synthetic_batch(2, 4096, 50257, avoid_token_ids=[50256])
    assert not bool((big.input_ids == 50256).any())


def test_synthetic_device():
    b = synthetic_batch(2, 8, 100, device="meta")
    assert b.input_ids.device.type == "meta" and b.attention_mask.device.type == "meta"
    if torch.cuda.is_available():
        g = synthetic_batch(2, 8, 100, device="cuda", seed=3)
        assert g.input_ids.device.type == "cuda"
        assert torch.equal(g.input_ids.cpu(), synthetic_batch(2, 8, 100, seed=3).input_ids)


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        ((2, 0, 100), {}, "ctx_tokens"),
        ((0, 8, 100), {}, "batch_size"),
        ((-1, 8, 100), {}, "batch_size"),
        ((2, 8, 0), {}, "vocab_size"),
        ((2, 8, 3), {"avoid_token_ids": [0, 1, 2]}, "vocab_size=3"),
        ((True, 8, 100), {}, "batch_size"),
        ((2, 8, 100), {"device": "nodevice"}, "nodevice"),
    ],
)
def test_synthetic_bad_input(args, kwargs, needle):
    with pytest.raises(BadInput, match=needle):
        synthetic_batch(*args, **kwargs)


# --- text: exact lengths -----------------------------------------------------------------------


@pytest.mark.parametrize("use_chat_template", [True, False])
def test_text_exact_length_every_small_ctx(tok, use_chat_template):
    overhead = template_overhead_tokens(tok, use_chat_template=use_chat_template)
    for ctx in range(overhead + 1, overhead + 41):
        b = text_batch(tok, TEXTS, ctx, use_chat_template=use_chat_template)
        _check_batch(tok, b, ctx, use_chat_template)


@pytest.mark.parametrize("use_chat_template", [True, False])
@pytest.mark.parametrize("ctx", LONG_CTX)
def test_text_exact_length_long_ctx(tok, use_chat_template, ctx):
    b = text_batch(tok, TEXTS, ctx, use_chat_template=use_chat_template)
    _check_batch(tok, b, ctx, use_chat_template)
    # Short text padded: filler goes before it, so it stays next to the generation prompt.
    assert b.texts[0].endswith(SHORT)
    assert FILLER_TEXT.split(".")[1].strip() in b.texts[0]


def test_text_without_template_falls_back_to_plain_wrapper(tok_plain):
    assert not getattr(tok_plain, "chat_template", None)
    b = text_batch(tok_plain, [SHORT], 40, use_chat_template=True)
    text = tok_plain.decode(b.input_ids[0])
    assert text.startswith("Question: ") and text.endswith("\nAnswer:")
    assert b.input_ids.shape == (1, 40)


def test_text_source_device_and_determinism(tok):
    a = text_batch(tok, [SHORT, LONG], 64, device="meta")
    assert a.source == "text:gpt2" and a.input_ids.device.type == "meta"
    b = text_batch(tok, [SHORT, LONG], 64)
    c = text_batch(tok, [SHORT, LONG], 64)
    assert torch.equal(b.input_ids, c.input_ids) and b.texts == c.texts


def test_piecewise_fallback_is_exact(tok, monkeypatch):
    """With no string rounds allowed, every row is built as prefix + content + suffix ids."""
    monkeypatch.setattr(inputs_mod, "MAX_STRING_TRIES", 0)
    for use_chat_template in (True, False):
        overhead = template_overhead_tokens(tok, use_chat_template=use_chat_template)
        for ctx in [overhead + 2, overhead + 9, 300]:
            b = text_batch(tok, TEXTS, ctx, use_chat_template=use_chat_template)
            gen = _gen_ids(tok, use_chat_template)
            assert b.input_ids.shape == (len(TEXTS), ctx)
            for row in b.input_ids.tolist():
                assert row[-len(gen) :] == gen
            assert LONG.startswith(b.texts[1])


# A template in the style of models whose markers are special tokens, with a bos and a
# content trim (tokenisation then differs between the string and the pieces).
_SPECIAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n\n{{ m['content'] | trim }}"
    "<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n\n{% endif %}"
)


def test_special_token_template_with_trim():
    t = load_tokenizer("gpt2", chat_template=None)
    t.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    t.chat_template = _SPECIAL_TEMPLATE
    gen = t("<|im_start|>assistant\n\n", add_special_tokens=False)["input_ids"]
    assert gen[0] == t.convert_tokens_to_ids("<|im_start|>")
    overhead = template_overhead_tokens(t)
    for ctx in [*range(overhead + 1, overhead + 25), 256]:
        b = text_batch(t, [SHORT, LONG, "  padded  "], ctx)
        assert b.input_ids.shape == (3, ctx)
        for row in b.input_ids.tolist():
            assert row[0] == t.bos_token_id
            assert row[-len(gen) :] == gen


# --- text: errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("use_chat_template", [True, False])
def test_ctx_too_small_names_ctx_and_overhead(tok, use_chat_template):
    overhead = template_overhead_tokens(tok, use_chat_template=use_chat_template)
    for ctx in (1, overhead):
        with pytest.raises(BadInput) as info:
            text_batch(tok, [SHORT], ctx, use_chat_template=use_chat_template)
        msg = str(info.value)
        assert f"ctx_tokens={ctx}" in msg and str(overhead) in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("texts", "ctx", "kwargs", "needle"),
    [
        ("just a string", 64, {}, "list of strings"),
        ([], 64, {}, "empty"),
        ([SHORT, 3], 64, {}, r"texts\[1\]"),
        ([SHORT], 0, {}, "ctx_tokens"),
        ([SHORT], 64, {"filler_text": "  "}, "filler_text"),
    ],
)
def test_text_bad_input(tok, texts, ctx, kwargs, needle):
    with pytest.raises(BadInput, match=needle):
        text_batch(tok, texts, ctx, **kwargs)


def test_custom_filler(tok):
    b = text_batch(tok, ["Hi."], 60, filler_text="Grey stones lie still.")
    assert "Grey stones lie still." in b.texts[0] and b.texts[0].endswith("Hi.")


def test_verify_lengths_catches_bugs():
    b = synthetic_batch(2, 8, 100)
    with pytest.raises(RuntimeError):
        verify_lengths(b, 9)
    b.attention_mask[0, 3] = 0
    with pytest.raises(RuntimeError):
        verify_lengths(b, 8)


# --- tokenizers --------------------------------------------------------------------------------


def test_bundled_gpt2_tokenizer(tok):
    assert len(tok) == 50257 and tok.eos_token_id == 50256
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert tok.chat_template == bundled_chat_template("chatml")


def test_chatml_renders_exactly(tok):
    out = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert out == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_load_tokenizer_from_local_folder():
    t = load_tokenizer(str(GPT2_DIR))
    assert t("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert t.chat_template  # bundled template attached: the folder has none
    assert load_tokenizer(str(GPT2_DIR), chat_template=None).chat_template in (None, "")


@pytest.mark.parametrize(
    ("name", "template", "needle"),
    [
        ("no-such-model/at-all", "chatml", "no-such-model/at-all"),
        ("", "chatml", "tokenizer"),
        ("gpt2", "nosuchtemplate", "nosuchtemplate"),
    ],
)
def test_load_tokenizer_bad_input(name, template, needle):
    with pytest.raises(BadInput, match=needle):
        load_tokenizer(name, chat_template=template)


def test_load_tokenizer_folder_without_files(tmp_path):
    with pytest.raises(BadInput):
        load_tokenizer(str(tmp_path))


def test_bundled_files_and_provenance_present():
    for name in ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json",
                 "LICENSE_openai_whisper", "chatml.jinja", "PROVENANCE.md"]:
        assert (GPT2_DIR / name).is_file(), name
    assert "written for wattlens" in (GPT2_DIR / "chatml.jinja").read_text().lower()


def test_layer_imports_no_torch_at_load():
    src = Path(__file__).resolve().parents[1] / "src"
    code = (
        "import sys; import wattlens.workloads; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "others = sorted({m.split('.')[1] for m in sys.modules if m.startswith('wattlens.')} "
        "- {'core', 'workloads'}); "
        "assert not bad and not others, (bad, others)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(src)})
