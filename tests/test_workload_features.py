"""Features on hand-checked sentences; dataset loaders on the bundled samples and a hand-made qaps.csv."""

import math

import pytest

from wattlens.core.errors import BadInput
from wattlens.workloads.datasets import CLASSIFICATION, GENERATION, load_dataset
from wattlens.workloads.features import (
    capitalization_ner,
    causal_question_score,
    complexity_score,
    entity_density,
    ner_agreement,
    reasoning_complexity,
    request_features,
    token_entropy_bits,
    unique_token_ratio,
)
from wattlens.workloads.scoring import best_rouge_l_f1, lcs_length, rouge_l_f1


def test_token_entropy_by_hand():
    assert token_entropy_bits("a b c d") == pytest.approx(2.0)  # 4 equally likely tokens
    assert token_entropy_bits("the the the the") == 0.0
    # a a b: p = 2/3, 1/3 -> H = 0.9183 bits
    assert token_entropy_bits("A a b") == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    assert token_entropy_bits("") == 0.0


def test_reasoning_complexity_counts_markers_per_word():
    # 12 words; markers: because, however, than -> 3/12
    s = "It rained because clouds came; however, it was warmer than before today"
    assert len(s.split()) == 12 and reasoning_complexity(s) == pytest.approx(3 / 12)
    assert reasoning_complexity("The cat sat on the mat.") == 0.0


def test_causal_question_score():
    assert causal_question_score("Why is the sky blue?") == 1.0
    assert causal_question_score("Is the sky blue?") == 0.0
    assert causal_question_score("Where is Paris? How big is it? Explain its history?") == pytest.approx(2 / 3)
    assert causal_question_score("how do magnets work") == 1.0  # no '?': the whole text is one question
    assert causal_question_score("Whoever knows?") == 0.0  # 'who' is not 'how'


def test_fallback_ner_and_entity_density():
    text = "Marie Curie moved to Paris. She worked at the University of Paris with Pierre Curie."
    assert capitalization_ner(text) == ["Marie Curie", "Paris", "University of Paris", "Pierre Curie"]
    assert entity_density(text) == pytest.approx(4 / 15)
    # a sentence-initial common word is not an entity; a sentence-initial name seen elsewhere is
    assert capitalization_ner("Property tax is local. The tax is paid.") == []
    assert capitalization_ner("Paris is big. I like Paris.") == ["Paris", "Paris"]
    assert entity_density("") == 0.0


def test_entity_density_uses_given_ner():
    assert entity_density("one two three four", ner=lambda t: ["x"]) == 0.25


def test_ner_agreement_against_fake_reference():
    texts = ["Marie Curie lived in Paris.", "Nothing here at all."]
    reference = {"Marie Curie lived in Paris.": ["Marie Curie", "Paris", "Poland"], "Nothing here at all.": []}
    agreement = ner_agreement(texts, capitalization_ner, lambda t: reference[t])
    assert agreement["precision"] == 1.0 and agreement["recall"] == pytest.approx(2 / 3)
    assert agreement["f1"] == pytest.approx(0.8)
    assert agreement["density_pearson_r"] == pytest.approx(1.0)


def test_complexity_score_by_hand():
    # "a b c d": 4 words, 1 sentence: entropy_norm 1, unique 1, no entities, 4/40 words per sentence
    assert complexity_score("a b c d") == pytest.approx(0.3 + 0.3 + 0.0 + 0.2 * 0.1)
    assert 0.0 <= complexity_score("Why? Because. Paris.") <= 1.0


def test_unique_ratio():
    assert unique_token_ratio("a a b b") == 0.5


def test_rouge_l_by_hand():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    # cand 4 words, ref 5 words, LCS 3 -> P 3/4, R 3/5 -> F = 2/3
    assert rouge_l_f1("the cat sat down", "the cat then sat up") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert best_rouge_l_f1("Underground", ["In tunnels", "underground."]) == 1.0
    assert rouge_l_f1("", "x") == 0.0


def test_loaders_on_bundled_samples():
    b = load_dataset("boolq", limit=3)
    assert len(b) == 3 and b[0].task == CLASSIFICATION and b[0].choices == (" no", " yes")
    assert b[0].question.endswith("?") and b[0].gold_index in (0, 1)
    h = load_dataset("hellaswag", limit=2)
    assert len(h[0].choices) == 4 and h[0].gold_index == 3
    t = load_dataset("truthfulqa", limit=1)
    assert t[0].task == GENERATION and t[0].references[0] == "The watermelon seeds pass through your digestive system"
    assert len(load_dataset("boolq")) == 200 and len(load_dataset("truthfulqa")) == 200
    with pytest.raises(BadInput):
        load_dataset("squad")


def test_narrativeqa_qaps_format(tmp_path):
    qaps = tmp_path / "qaps.csv"
    qaps.write_text(
        "document_id,set,question,answer1,answer2,question_tokenized,answer1_tokenized,answer2_tokenized\n"
        "d1,test,Why did Tom leave?,He was bored.,Boredom.,why did tom leave ?,he was bored .,boredom .\n"
        "d2,train,Who is Ann?,A baker.,The baker.,who is ann ?,a baker .,the baker .\n")
    reqs = load_dataset("narrativeqa", qaps)
    assert [r.references for r in reqs] == [("He was bored.", "Boredom."), ("A baker.", "The baker.")]
    assert reqs[0].prompt == "Question: Why did Tom leave?\nAnswer:"
    (tmp_path / "summaries.csv").write_text("document_id,set,summary,summary_tokenized\nd1,test,Tom left home.,tom left home .\n")
    reqs = load_dataset("narrativeqa", qaps)
    assert reqs[0].prompt.startswith("Tom left home.\nQuestion:") and reqs[1].prompt.startswith("Question:")
    f = request_features(reqs[0])
    assert f.causal_question_score == 1.0 and f.entity_density > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("document_id,question\nd1,x\n")
    with pytest.raises(BadInput):
        load_dataset("narrativeqa", bad)
