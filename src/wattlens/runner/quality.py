"""Per-query answer quality of a model: log-likelihood choice for classification, ROUGE-L for generation.

Classification (BoolQ, HellaSwag): each choice is scored by the sum of the log-probabilities of its
tokens given the prompt (one forward pass of prompt + choice); the predicted choice is the highest
sum and the query scores 1.0 when it is the gold one, else 0.0. Generation (TruthfulQA,
NarrativeQA): greedy decoding of up to `gen_tokens` tokens, cut at the first newline, scored by the
best ROUGE-L F1 against the references.

Works with any causal LM that maps input_ids to logits (a catalog model with random weights, or a
local folder of real weights through `wattlens.models`). torch is imported inside the functions.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from wattlens.workloads.datasets import CLASSIFICATION, EvalRequest
from wattlens.workloads.scoring import best_rouge_l_f1

QUALITY_COLUMNS = ("request_id", "dataset", "model", "params_b", "metric", "quality", "prediction")


@dataclass(frozen=True)
class QueryQuality:
    request_id: str
    dataset: str
    model: str
    params_b: float  # model size in billions of parameters (orders the scaling tiers)
    metric: str  # 'accuracy' or 'rouge_l_f1'
    quality: float  # 0-1
    prediction: str


def _encode(tokenizer, text: str, max_tokens: int | None = None) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[-max_tokens:]  # keep the end: the question sits at the end of the prompt
    return ids


def choice_logprobs(model, tokenizer, prompt: str, choices: Sequence[str], max_prompt_tokens: int = 1024) -> list[float]:
    """Sum of log p(choice tokens | prompt) for each choice."""
    import torch

    device = next(model.parameters()).device
    prompt_ids = _encode(tokenizer, prompt, max_prompt_tokens)
    scores = []
    with torch.inference_mode():
        for choice in choices:
            choice_ids = _encode(tokenizer, choice)
            ids = torch.tensor([prompt_ids + choice_ids], device=device)
            logits = model(input_ids=ids).logits.float()
            logp = torch.log_softmax(logits[0, :-1], dim=-1)
            targets = ids[0, 1:]
            token_lp = logp.gather(1, targets[:, None])[:, 0]
            scores.append(float(token_lp[len(prompt_ids) - 1:].sum()))
    return scores


def greedy_answer(model, tokenizer, prompt: str, gen_tokens: int = 32, max_prompt_tokens: int = 1024) -> str:
    """Greedy continuation of `prompt` (at most `gen_tokens` tokens), cut at the first line break."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([_encode(tokenizer, prompt, max_prompt_tokens)], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen_tokens,
                             min_new_tokens=1, do_sample=False, pad_token_id=tokenizer.eos_token_id or 0)
    text = tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
    return text.strip().split("\n", 1)[0].strip()


def score_requests(model, tokenizer, requests: Iterable[EvalRequest], model_name: str, params_b: float,
                   gen_tokens: int = 32) -> list[QueryQuality]:
    """Quality of `model` on every request (see the module docstring for the rules)."""
    rows = []
    for req in requests:
        if req.task == CLASSIFICATION:
            lps = choice_logprobs(model, tokenizer, req.prompt, req.choices)
            pick = max(range(len(lps)), key=lps.__getitem__)
            rows.append(QueryQuality(req.request_id, req.dataset, model_name, params_b, "accuracy",
                                     1.0 if pick == req.gold_index else 0.0, str(pick)))
        else:
            answer = greedy_answer(model, tokenizer, req.prompt, gen_tokens)
            rows.append(QueryQuality(req.request_id, req.dataset, model_name, params_b, "rouge_l_f1",
                                     best_rouge_l_f1(answer, req.references), answer))
    return rows


def write_quality_csv(rows: Iterable[QueryQuality], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=QUALITY_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))


def load_scoring_model(name_or_path: str, overrides: Iterable[tuple[str, object]] = (), tokenizer: str = "gpt2",
                       dtype: str = "fp32", device: str = "cpu", seed: int = 0):
    """(model, tokenizer, params_b, weights) for scoring: a catalog name (random weights; its vocab is
    resized to the tokenizer's) or a local folder of real weights (its own tokenizer)."""
    import torch

    from wattlens.models.build import build_model
    from wattlens.models.catalog import resolve_model
    from wattlens.workloads.tokenizers import load_tokenizer

    source = resolve_model(name_or_path)
    if source.weights == "pretrained":
        tok = load_tokenizer(source.path, chat_template=None)
        source = resolve_model(name_or_path, overrides)
    else:
        tok = load_tokenizer(tokenizer, chat_template=None)
        source = resolve_model(name_or_path, [("vocab_size", len(tok)), *overrides])
    torch.manual_seed(seed)
    model = build_model(source, dtype, device)
    params_b = sum(p.numel() for p in model.parameters()) / 1e9
    return model, tok, params_b, source.weights
