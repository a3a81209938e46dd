"""Lightweight text features of a request, computed before inference (pure functions).

The five features follow the definitions of the third study (seeds/003, section V-C); where it
leaves a choice open (weights, marker lists, the tokenisation) the choice made here is written
next to the code and in docs/workload.md.

- token_entropy_bits: Shannon entropy H = -sum p_i log2 p_i of the word-token frequencies.
- entity_density: named-entity mentions (PERSON, ORG, GPE, LOC) per word token, 0-1. Uses spaCy's
  en_core_web_sm when it is installed, otherwise `capitalization_ner` (a documented heuristic);
  `ner_agreement` measures how far the two agree where both exist.
- reasoning_complexity: causal and comparison markers per word token, 0-1.
- causal_question_score: fraction (0-1) of the questions that ask why / how / explain / justify / prove.
- complexity_score: 0.3 * normalised entropy + 0.3 * unique-token ratio + 0.2 * entity density
  + 0.2 * min(1, words per sentence / 40), 0-1.
- input_tokens: length of the prompt in the tokens of a given tokenizer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

NerFn = Callable[[str], list[str]]
"""A named-entity recogniser: text -> the entity mentions (PERSON, ORG, GPE, LOC) it finds."""

_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)*")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_SCAFFOLD_RE = re.compile(r"^\s*(?:Passage|Question|Answer|Q|A)\s*:\s*", re.MULTILINE)

ENTITY_LABELS = ("PERSON", "ORG", "GPE", "LOC")

# Marker lists (ours; the study names "because", "therefore", "however" as examples).
CAUSAL_MARKERS = frozenset(
    "because therefore thus hence consequently since so why cause causes caused causing reason reasons "
    "result results resulting lead leads led due implies accordingly".split()
)
COMPARISON_MARKERS = frozenset(
    "however but although though whereas while than unlike compared compare versus vs rather instead "
    "despite nevertheless nonetheless similarly likewise whether either neither more less better worse".split()
)
REASONING_MARKERS = CAUSAL_MARKERS | COMPARISON_MARKERS
CAUSAL_QUESTION_RE = re.compile(r"\b(?:why|how|explain\w*|justif\w*|prove[sn]?|proving)\b", re.IGNORECASE)

# Capitalised words that start sentences or questions without naming anything.
_NOT_ENTITIES = frozenset(
    """a an the this that these those there here it its it's i i'm you your we our they their he she him her his
    my me us them who whom whose what which when where why how is are was were be been being do does did done
    have has had can could will would shall should may might must not no yes if then else and or but so
    because although though while as at by for from in into of on onto to with without about above after
    before below between during over under up down out off again once all any both each few many more most
    other some such only own same than too very just also even still yet however therefore thus hence
    one two three four five six seven eight nine ten first second third last next new old
    mr mrs ms dr st monday tuesday wednesday thursday friday saturday sunday
    january february march april june july august september october november december
    passage question answer q true false many much every never always often sometimes""".split()
)
_CONNECTORS = frozenset({"of", "de", "da", "del", "van", "von", "the", "and", "for", "la", "le", "du"})


def words(text: str) -> list[str]:
    """Word tokens (letters, digits, inner apostrophes) in their original case."""
    return _WORD_RE.findall(text)


def sentences(text: str) -> list[str]:
    """Sentences: split after . ! ? followed by whitespace, and at line breaks; empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_SPLIT_RE.split(text) if s and s.strip()]


def strip_scaffolding(text: str) -> str:
    """Remove prompt labels ('Passage:', 'Question:', 'Answer:', 'Q:', 'A:') at line starts."""
    return _SCAFFOLD_RE.sub("", text)


def token_entropy_bits(text: str) -> float:
    """Shannon entropy (bits) of the lower-cased word-token distribution; 0 for fewer than 2 tokens."""
    toks = [w.lower() for w in words(text)]
    n = len(toks)
    if n < 2:
        return 0.0
    return -sum((c / n) * math.log2(c / n) for c in Counter(toks).values())


def unique_token_ratio(text: str) -> float:
    """Distinct lower-cased word tokens / word tokens (0 for empty text)."""
    toks = [w.lower() for w in words(text)]
    return len(set(toks)) / len(toks) if toks else 0.0


def reasoning_complexity(text: str) -> float:
    """Causal and comparison markers per word token, capped at 1."""
    toks = [w.lower() for w in words(text)]
    if not toks:
        return 0.0
    hits = sum(1 for t in toks if t in REASONING_MARKERS)
    return min(1.0, hits / len(toks))


def causal_question_score(question_text: str) -> float:
    """Fraction of the questions in `question_text` that are causal (why / how / explain / justify / prove).

    Questions are the sentences ending in '?'; text with none counts as one question.
    """
    qs = [s for s in sentences(question_text) if s.endswith("?")]
    if not qs:
        qs = [question_text] if question_text.strip() else []
    if not qs:
        return 0.0
    return sum(1 for q in qs if CAUSAL_QUESTION_RE.search(q)) / len(qs)


def capitalization_ner(text: str) -> list[str]:
    """Fallback named-entity recogniser (no model): runs of capitalised words.

    A mention is a maximal run of words that start with a capital letter, joined across the
    connectors in `_CONNECTORS` ("Bank of England", "Ludwig van Beethoven"). A one-word run is
    dropped when the word is a common function word, question word, pronoun, month or weekday
    (`_NOT_ENTITIES`); a run that opens a sentence loses such a leading word ("The Eloi" -> "Eloi").
    A one-word run at the start of a sentence counts only when the same word is also capitalised
    somewhere inside a sentence of the text (so "Property tax is ..." yields nothing, while
    "Paris is big. I like Paris." yields Paris twice). Numbers are not entities (spaCy's
    PERSON/ORG/GPE/LOC types have none).
    """
    split = [words(s) for s in sentences(text)]
    capitalised_inside = {t for toks in split for t in toks[1:] if t[0].isupper()}
    mentions: list[str] = []
    for toks in split:
        i = 0
        while i < len(toks):
            if not toks[i][0].isupper():
                i += 1
                continue
            run = [toks[i]]
            j = i + 1
            while j < len(toks):
                if toks[j][0].isupper():
                    run.append(toks[j])
                    j += 1
                elif toks[j].lower() in _CONNECTORS and j + 1 < len(toks) and toks[j + 1][0].isupper():
                    run.extend(toks[j:j + 2])
                    j += 2
                else:
                    break
            while run and run[0].lower() in _NOT_ENTITIES:
                run.pop(0)
            while run and run[-1].lower() in _CONNECTORS:
                run.pop()
            if i == 0 and len(run) == 1 and j == 1 and run[0] not in capitalised_inside:
                run = []
            if run and not (len(run) == 1 and len(run[0]) == 1):
                mentions.append(" ".join(run))
            i = j
    return mentions


def spacy_ner(model: str = "en_core_web_sm") -> NerFn | None:
    """spaCy's NER restricted to PERSON/ORG/GPE/LOC, or None when spaCy or the model is not installed."""
    try:
        import spacy  # noqa: PLC0415

        nlp = spacy.load(model, disable=["parser", "lemmatizer"])
    except Exception:  # ImportError, OSError (model missing): fall back
        return None

    def ner(text: str) -> list[str]:
        return [e.text for e in nlp(text).ents if e.label_ in ENTITY_LABELS]

    ner.__name__ = f"spacy:{model}"
    return ner


def default_ner() -> tuple[NerFn, str]:
    """(recogniser, name): spaCy en_core_web_sm when installed, else the capitalisation fallback."""
    ner = spacy_ner()
    if ner is not None:
        return ner, "spacy:en_core_web_sm"
    return capitalization_ner, "fallback:capitalization"


def entity_density(text: str, ner: NerFn = capitalization_ner) -> float:
    """Named-entity mentions per word token, capped at 1 (0 for empty text)."""
    n = len(words(text))
    if n == 0:
        return 0.0
    return min(1.0, len(ner(text)) / n)


def complexity_score(text: str, ner: NerFn = capitalization_ner) -> float:
    """0.3 * H/log2(n) + 0.3 * unique ratio + 0.2 * entity density + 0.2 * min(1, words per sentence / 40)."""
    toks = words(text)
    n = len(toks)
    if n == 0:
        return 0.0
    entropy_norm = token_entropy_bits(text) / math.log2(n) if n > 1 else 0.0
    n_sent = max(1, len(sentences(text)))
    sentence_len_norm = min(1.0, (n / n_sent) / 40.0)
    return (0.3 * entropy_norm + 0.3 * unique_token_ratio(text) + 0.2 * entity_density(text, ner)
            + 0.2 * sentence_len_norm)


@dataclass(frozen=True)
class RequestFeatures:
    request_id: str
    dataset: str
    input_tokens: int
    n_words: int
    complexity_score: float
    reasoning_complexity: float
    entity_density: float
    token_entropy_bits: float
    causal_question_score: float
    unique_token_ratio: float

    def as_dict(self) -> dict:
        return asdict(self)


FEATURE_NAMES = ("complexity_score", "reasoning_complexity", "entity_density", "token_entropy_bits",
                 "causal_question_score")


def whitespace_token_count(text: str) -> int:
    """Word-token count: a tokenizer-free stand-in for `count_tokens`."""
    return len(words(text))


def request_features(request, ner: NerFn = capitalization_ner,
                     count_tokens: Callable[[str], int] = whitespace_token_count) -> RequestFeatures:
    """All features of one `EvalRequest` (text features on its prompt without the scaffolding labels,
    the causal score on its question, the length on the full prompt)."""
    text = strip_scaffolding(request.prompt)
    return RequestFeatures(
        request_id=request.request_id,
        dataset=request.dataset,
        input_tokens=int(count_tokens(request.prompt)),
        n_words=len(words(text)),
        complexity_score=complexity_score(text, ner),
        reasoning_complexity=reasoning_complexity(text),
        entity_density=entity_density(text, ner),
        token_entropy_bits=token_entropy_bits(text),
        causal_question_score=causal_question_score(request.question),
        unique_token_ratio=unique_token_ratio(text),
    )


def ner_agreement(texts: Iterable[str], ner_a: NerFn, ner_b: NerFn) -> dict[str, float]:
    """How far recogniser `a` agrees with reference `b` over `texts`.

    Mentions are compared per text as multisets of lower-cased strings: precision = matched / found
    by a, recall = matched / found by b, F1 their harmonic mean. Also the Pearson r of the two
    per-text entity densities and their means.
    """
    matched = found_a = found_b = 0
    dens_a: list[float] = []
    dens_b: list[float] = []
    for text in texts:
        a = Counter(m.lower() for m in ner_a(text))
        b = Counter(m.lower() for m in ner_b(text))
        matched += sum((a & b).values())
        found_a += sum(a.values())
        found_b += sum(b.values())
        dens_a.append(entity_density(text, ner_a))
        dens_b.append(entity_density(text, ner_b))
    precision = matched / found_a if found_a else float("nan")
    recall = matched / found_b if found_b else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if found_a and found_b and (precision + recall) else float("nan")
    return {"n_texts": float(len(dens_a)), "precision": precision, "recall": recall, "f1": f1,
            "density_pearson_r": _pearson(dens_a, dens_b), "mean_density_a": _mean(dens_a),
            "mean_density_b": _mean(dens_b)}


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = _mean(xs), _mean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return float("nan")
    return sxy / math.sqrt(sxx * syy)
