"""Similarity metrics against values worked out by hand (the arithmetic is in the comments), the
empty-text rule, and the model-based metrics on the real local model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ragline.evaluation.similarity import (
    SIMILARITY_METRICS,
    BertScore,
    bertscore,
    embedding_cosine,
    exact_match,
    normalize_answer,
    rouge_l,
    similarity_scores,
    token_f1,
)
from ragline.types import EmbeddingError
from tests.conftest import local_embedder


@pytest.fixture(scope="module")
def model():
    """The process-wide local MiniLM: both the Embedder and the TokenVectors model."""
    return local_embedder()


class KnownVectors:
    """Embedder and TokenVectors with vectors written out in the test, so cosines, maxima and means
    can be worked out by hand (the real model's vectors cannot)."""

    model_id = "known-vectors"
    max_tokens = 256
    tokenizer = None
    dim = 2

    def __init__(self, vectors: dict[str, list[list[float]]]) -> None:
        self.vectors = {text: np.array(rows, dtype=np.float64) for text, rows in vectors.items()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.vstack([self.vectors[t][0] for t in texts])

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.vectors[t] for t in texts]


def test_normalize_answer_lowercases_and_drops_punctuation_articles_and_extra_spaces():
    assert normalize_answer("  The Cat, sat on  a MAT!  ") == "cat sat on mat"
    assert normalize_answer("An apple — “the” best…") == "apple best"  # Unicode dash, quotes, ellipsis
    assert normalize_answer("well-known") == "wellknown"  # dropped, not replaced by a space (SQuAD)
    assert normalize_answer("theory of a thenar") == "theory of thenar"  # whole words only
    assert normalize_answer("The.") == ""


def test_exact_match_after_normalisation():
    assert exact_match("The Eiffel Tower!", "eiffel   tower") == 1.0
    assert exact_match("Paris", "Paris, France") == 0.0
    assert exact_match("", "") == 1.0
    assert exact_match("", "Paris") == 0.0


def test_token_f1_by_hand():
    # Articles and punctuation only: both normalise to [eiffel, tower] -> P = R = 1, F1 = 1.
    assert token_f1("The Eiffel Tower!", "eiffel tower") == 1.0
    # pred [quick, brown, fox] (3), ref [quick, red, fox, jumps] (4): 2 shared tokens.
    # P = 2/3, R = 2/4 -> F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7.
    assert token_f1("the quick brown fox", "a quick red fox jumps") == pytest.approx(4 / 7)
    # Multiplicity: pred {cat: 3, dog: 1} (4 tokens), ref {cat: 1, dog: 2} (3 tokens); the bag
    # intersection is {cat: 1, dog: 1} = 2. P = 2/4, R = 2/3 -> F1 = 2 * (1/2)(2/3) / (7/6) = 4/7.
    # (Comparing the sets of distinct tokens instead would give P = R = 1.)
    assert token_f1("cat cat cat dog", "cat dog dog") == pytest.approx(4 / 7)
    # pred [cat, cat] vs ref [cat, cat, dog]: intersection {cat: 2} = 2, P = 2/2, R = 2/3 ->
    # F1 = 2 * (2/3) / (5/3) = 0.8. (Counting each shared distinct token once: 1 shared, 0.4.)
    assert token_f1("the cat cat", "cat cat dog") == pytest.approx(0.8)
    # pred [cat, cat] vs ref [cat]: intersection 1, P = 1/2, R = 1 -> F1 = 1 / (3/2) = 2/3.
    assert token_f1("cat cat", "cat") == pytest.approx(2 / 3)
    assert token_f1("Paris", "London") == 0.0


def test_rouge_l_by_hand():
    # pred [one, two, three, four, five], ref [one, three, five, seven]: LCS = [one, three, five] = 3.
    # P = 3/5, R = 3/4 -> F = 2 * 0.6 * 0.75 / 1.35 = 0.9 / 1.35 = 2/3.
    assert rouge_l("one two three four five", "one three five seven") == pytest.approx(2 / 3)
    # pred [cat, sat, on, mat], ref [mat, sat, on, cat] (articles dropped): LCS = [sat, on] = 2.
    # P = R = 2/4 -> F = 0.5, while the bag of tokens matches fully (token F1 = 1).
    assert rouge_l("the cat sat on the mat", "the mat sat on a cat") == pytest.approx(0.5)
    assert token_f1("the cat sat on the mat", "the mat sat on a cat") == 1.0
    # Reversed order: LCS = 1 of 5 tokens on both sides -> F = 1/5.
    assert rouge_l("five four three two one", "one two three four five") == pytest.approx(0.2)
    assert rouge_l("The Eiffel Tower!", "eiffel tower") == 1.0


@pytest.mark.parametrize("metric", [exact_match, token_f1, rouge_l])
def test_empty_text_rule_of_the_lexical_metrics(metric):
    assert metric("", "") == 1.0
    assert metric("The...", " a ") == 1.0  # both empty once articles and punctuation go
    assert metric("", "Paris") == 0.0
    assert metric("Paris", "") == 0.0
    assert metric("!?", "Paris") == 0.0


def test_embedding_cosine_by_hand_with_known_vectors():
    known = KnownVectors({"u": [[1, 0]], "v": [[0.6, 0.8]], "w": [[-1, 0]], "x": [[3, 4]], "y": [[4, 3]]})
    # u.v = 0.6; u.w = -1 -> clipped to 0; x, y are not unit: (12 + 12) / (5 * 5) = 24/25.
    scores = embedding_cosine(known, ["u", "u", "x", "", "u", "The"], ["v", "w", "y", "", "", "u"])
    assert scores == pytest.approx([0.6, 0.0, 0.96, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        embedding_cosine(known, ["u", "v"], ["u"])
    broken = KnownVectors({"u": [[1, 0]], "v": [[np.nan, 0]]})
    with pytest.raises(EmbeddingError, match="non-finite"):
        embedding_cosine(broken, ["u"], ["v"])  # an error, never a silent 0 or NaN score
    with pytest.raises(EmbeddingError, match="non-finite"):
        bertscore(broken, "u", "v")


def test_bertscore_by_hand_with_known_token_vectors():
    # pred tokens p1 = (1, 0), p2 = (0, 1); ref tokens r1 = (1, 0), r2 = (0.6, 0.8), r3 = (-0.6, -0.8).
    # Cosines p x r: p1 -> [1, 0.6, -0.6], p2 -> [0, 0.8, -0.8]; negatives are clipped to 0.
    # Precision = mean of row maxima = (1 + 0.8) / 2 = 0.9.
    # Recall = mean of column maxima = (1 + 0.8 + 0) / 3 = 0.6 (r3's best, -0.6, counts as 0).
    # F1 = 2 * 0.9 * 0.6 / 1.5 = 0.72.
    known = KnownVectors({"pred": [[1, 0], [0, 1]], "ref": [[1, 0], [0.6, 0.8], [-0.6, -0.8]]})
    score = bertscore(known, "pred", "ref")
    assert (score.precision, score.recall, score.f1) == pytest.approx((0.9, 0.6, 0.72))
    assert bertscore(known, "", "") == BertScore(1.0, 1.0, 1.0)
    assert bertscore(known, "The.", "ref") == BertScore(0.0, 0.0, 0.0)
    assert bertscore(known, "pred", "") == BertScore(0.0, 0.0, 0.0)


def test_embedding_cosine_on_the_local_model(model):
    question = "How many vacation days do employees get per year?"
    paraphrase = "What is the number of annual leave days an employee receives?"
    unrelated = "The agent reports error HBR-1042 when the TLS certificate expires."
    same, near, far, empty = embedding_cosine(
        model, [question, question, question, ""], [question, paraphrase, unrelated, "the"]
    )
    assert same == pytest.approx(1.0, abs=1e-5)
    assert far < near < same
    assert empty == 1.0  # both empty after normalisation: not sent to the model


def test_bertscore_on_the_local_model(model):
    text = "Employees receive 25 days of annual leave each calendar year."
    identical = bertscore(model, text, text)
    assert identical.precision == pytest.approx(1.0, abs=1e-5)
    assert identical.recall == pytest.approx(1.0, abs=1e-5)
    assert identical.f1 == pytest.approx(1.0, abs=1e-5)
    # The prediction is a strict subset of the reference: each of its tokens finds a close match
    # (high precision), while the reference's extra tokens find none (lower recall).
    subset = bertscore(model, "Employees receive 25 days of leave.", text)
    assert subset.recall < subset.precision < 1.0
    p, r = subset.precision, subset.recall
    assert subset.f1 == pytest.approx(2 * p * r / (p + r))
    assert bertscore(model, "", text) == BertScore(0.0, 0.0, 0.0)


def test_similarity_scores_gives_all_five_by_name(model):
    scores = similarity_scores(model, model, "The Eiffel Tower.", "eiffel tower")
    assert tuple(scores) == SIMILARITY_METRICS
    assert scores["exact_match"] == scores["token_f1"] == scores["rouge_l"] == 1.0
    assert 0.0 <= scores["embedding_cosine"] <= 1.0 and 0.0 <= scores["bertscore_f1"] <= 1.0
    assert similarity_scores(model, model, "", "") == dict.fromkeys(SIMILARITY_METRICS, 1.0)
    assert similarity_scores(model, model, "", "Paris") == dict.fromkeys(SIMILARITY_METRICS, 0.0)
