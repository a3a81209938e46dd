"""Evaluation requests from BoolQ, HellaSwag, TruthfulQA (generation) and NarrativeQA files.

Each loader reads the dataset's usual file format and yields `EvalRequest`s: the text a model
sees (`prompt`), the part of it that is the question (`question`, used by the causal-question
feature), and what a correct answer looks like (`choices` + `gold_index` for the classification
sets, `references` for the generation sets). Small samples ship in `data/<name>/` (see each
PROVENANCE.md); pass a path to read a full file. Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from wattlens.core.errors import BadInput

DATA_DIR = Path(__file__).resolve().parent / "data"

CLASSIFICATION = "classification"
GENERATION = "generation"


@dataclass(frozen=True)
class EvalRequest:
    """One query with its reference answer(s)."""

    dataset: str
    request_id: str
    task: str  # CLASSIFICATION or GENERATION
    prompt: str  # the full input text given to the model
    question: str  # the question part of the prompt (the whole prompt when there is none)
    choices: tuple[str, ...] = ()  # classification: candidate continuations of `prompt`
    gold_index: int | None = None  # classification: index of the right choice
    references: tuple[str, ...] = ()  # generation: acceptable answers
    meta: dict = field(default_factory=dict, compare=False)


def _limited(it: Iterator[EvalRequest], limit: int | None) -> list[EvalRequest]:
    if limit is not None and limit < 0:
        raise BadInput(f"limit must be >= 0, got {limit}")
    return list(islice(it, limit))


def _check_file(path: Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"{what} file {path} does not exist")
    return path


# ---------------------------------------------------------------- BoolQ (llm-foundry converted format)
def _jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line index, record) of every non-blank line of a JSON-lines file."""
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if line.strip():
                yield i, json.loads(line)


def iter_boolq(path: Path) -> Iterator[EvalRequest]:
    """BoolQ in llm-foundry's format: {"query": "Passage: ...\\nQuestion: ...?", "choices": ["no","yes"], "gold": 0|1}.

    The original BoolQ jsonl ({question, passage, answer: bool}) is accepted too.
    """
    path = _check_file(path, "BoolQ")
    for i, row in _jsonl_records(path):
        if "query" in row:
            query = row["query"]
            choices = tuple(row["choices"])
            gold = int(row["gold"])
            question = query.rsplit("Question:", 1)[-1].strip() if "Question:" in query else query
        elif "question" in row and "passage" in row:
            question = row["question"].strip()
            if not question.endswith("?"):
                question += "?"
            query = f"Passage: {row['passage']}\nQuestion: {question}"
            choices = ("no", "yes")
            gold = int(bool(row["answer"]))
        else:
            raise BadInput(f"{path}:{i + 1}: not a BoolQ record (keys {sorted(row)})")
        yield EvalRequest("boolq", f"boolq-{i}", CLASSIFICATION, prompt=f"{query}\nAnswer:", question=question,
                          choices=tuple(f" {c}" for c in choices), gold_index=gold)


# ---------------------------------------------------------------- HellaSwag (rowanz jsonl)
def iter_hellaswag(path: Path) -> Iterator[EvalRequest]:
    """HellaSwag jsonl (fields ctx, endings, label, activity_label, ind): pick the right ending."""
    path = _check_file(path, "HellaSwag")
    for i, row in _jsonl_records(path):
        try:
            ctx, endings, label = row["ctx"], row["endings"], int(row["label"])
        except KeyError as e:
            raise BadInput(f"{path}:{i + 1}: HellaSwag record lacks {e}") from None
        label_text = (row.get("activity_label") or "").strip()
        prompt = f"{label_text}: {ctx}" if label_text else ctx
        yield EvalRequest("hellaswag", f"hellaswag-{row.get('ind', i)}", CLASSIFICATION, prompt=prompt,
                          question=ctx, choices=tuple(f" {e}" for e in endings), gold_index=label,
                          meta={"split_type": row.get("split_type")})


# ---------------------------------------------------------------- TruthfulQA (generation csv)
def _split_answers(cell: str) -> list[str]:
    return [a.strip() for a in (cell or "").split(";") if a.strip()]


def iter_truthfulqa(path: Path) -> Iterator[EvalRequest]:
    """TruthfulQA.csv (Type, Category, Question, Best Answer, Correct Answers, ...): references are the
    best answer followed by the other correct answers (';'-separated in the file)."""
    path = _check_file(path, "TruthfulQA")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"Question", "Best Answer"} - set(reader.fieldnames or ())
        if missing:
            raise BadInput(f"{path}: TruthfulQA csv lacks columns {sorted(missing)}")
        for i, row in enumerate(reader):
            refs = [row["Best Answer"].strip()]
            refs += [a for a in _split_answers(row.get("Correct Answers", "")) if a not in refs]
            q = row["Question"].strip()
            yield EvalRequest("truthfulqa", f"truthfulqa-{i}", GENERATION, prompt=f"Q: {q}\nA:", question=q,
                              references=tuple(r for r in refs if r), meta={"category": row.get("Category")})


# ---------------------------------------------------------------- NarrativeQA (qaps.csv [+ summaries.csv])
def iter_narrativeqa(qaps_path: Path, summaries_path: Path | None = None) -> Iterator[EvalRequest]:
    """NarrativeQA's qaps.csv (document_id,set,question,answer1,answer2,question_tokenized,...).

    With `summaries_path` (summaries.csv: document_id,set,summary,...) the prompt is the document's
    summary followed by the question (the summary-reading setting); without it, only the question.
    When no summaries file is given, one named summaries.csv next to qaps.csv is used if present.
    """
    qaps_path = _check_file(qaps_path, "NarrativeQA qaps")
    if summaries_path is None and (qaps_path.parent / "summaries.csv").is_file():
        summaries_path = qaps_path.parent / "summaries.csv"
    summaries: dict[str, str] = {}
    if summaries_path is not None:
        with _check_file(summaries_path, "NarrativeQA summaries").open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                summaries[row["document_id"]] = row["summary"].strip()
    with qaps_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"document_id", "question", "answer1", "answer2"} - set(reader.fieldnames or ())
        if missing:
            raise BadInput(f"{qaps_path}: qaps.csv lacks columns {sorted(missing)}")
        for i, row in enumerate(reader):
            q = row["question"].strip()
            summary = summaries.get(row["document_id"], "")
            prompt = f"{summary}\nQuestion: {q}\nAnswer:" if summary else f"Question: {q}\nAnswer:"
            refs = tuple(a.strip() for a in (row["answer1"], row["answer2"]) if a and a.strip())
            yield EvalRequest("narrativeqa", f"narrativeqa-{i}", GENERATION, prompt=prompt, question=q,
                              references=refs, meta={"document_id": row["document_id"], "set": row.get("set")})


# ---------------------------------------------------------------- registry
BUNDLED_SAMPLES = {
    "boolq": DATA_DIR / "boolq" / "boolq_dev_sample200.jsonl",
    "hellaswag": DATA_DIR / "hellaswag" / "hellaswag_val_sample200.jsonl",
    "truthfulqa": DATA_DIR / "truthfulqa" / "TruthfulQA_sample200.csv",
    "narrativeqa": DATA_DIR / "narrativeqa" / "qaps.csv",
}
DATASETS = tuple(BUNDLED_SAMPLES)
TASKS = {"boolq": CLASSIFICATION, "hellaswag": CLASSIFICATION, "truthfulqa": GENERATION, "narrativeqa": GENERATION}


def load_dataset(name: str, path: str | Path | None = None, limit: int | None = None) -> list[EvalRequest]:
    """Requests of dataset `name` from `path`, or from the bundled sample when `path` is None."""
    key = name.lower()
    if key not in BUNDLED_SAMPLES:
        raise BadInput(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    file = Path(path) if path is not None else BUNDLED_SAMPLES[key]
    it = {"boolq": iter_boolq, "hellaswag": iter_hellaswag, "truthfulqa": iter_truthfulqa,
          "narrativeqa": iter_narrativeqa}[key](file)
    return _limited(it, limit)
