"""Answer-to-reference similarity without an LLM: exact match, token F1, ROUGE-L, embedding cosine
and a BERTScore-style token-matching score over the local model's contextual token vectors.

Every metric is in [0, 1], higher is better, and follows one rule for empty text: when both texts
are empty after `normalize_answer` the score is 1.0 (nothing was expected and nothing was said);
when exactly one is empty it is 0.0. The model-based metrics apply the same rule, so an answer of
only punctuation or articles ("The.") counts as empty for them too.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ragline.types import SIMILARITY_METRICS, Embedder, EmbeddingError

EXACT_MATCH, TOKEN_F1, ROUGE_L, EMBEDDING_COSINE, BERTSCORE_F1 = SIMILARITY_METRICS

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)


class TokenVectors(Protocol):
    """A model that gives one L2-normalised contextual vector per word piece of each text, special
    tokens ([CLS], [SEP]) and padding left out (LocalMiniLM.token_vectors)."""

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class BertScore:
    """BERTScore-style precision (prediction tokens covered by the reference), recall (reference
    tokens covered by the prediction) and their harmonic mean, each in [0, 1]."""

    precision: float
    recall: float
    f1: float


def _is_punctuation(ch: str) -> bool:
    return ch in _ASCII_PUNCTUATION or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation, drop the articles a/an/the, squeeze
    whitespace. Beyond SQuAD's ASCII punctuation, Unicode punctuation (curly quotes, dashes, «») is
    dropped too; on ASCII text the result is the same as the official SQuAD script's."""
    text = "".join(ch for ch in text.lower() if not _is_punctuation(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _empty_rule(prediction_empty: bool, reference_empty: bool) -> float | None:
    """1.0 when both are empty, 0.0 when exactly one is, None when both have content."""
    if prediction_empty and reference_empty:
        return 1.0
    if prediction_empty or reference_empty:
        return 0.0
    return None


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the two texts are equal after normalize_answer, else 0.0."""
    return 1.0 if normalize_answer(prediction) == normalize_answer(reference) else 0.0


def _f_measure(matched: float, predicted: int, expected: int) -> float:
    if matched == 0:
        return 0.0
    precision, recall = matched / predicted, matched / expected
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1: the harmonic mean of precision and recall of the bag of normalised tokens (a
    token repeated in both texts matches as many times as it appears in the one with fewer)."""
    pred, ref = _tokens(prediction), _tokens(reference)
    fixed = _empty_rule(not pred, not ref)
    if fixed is not None:
        return fixed
    common = sum((Counter(pred) & Counter(ref)).values())
    return _f_measure(common, len(pred), len(ref))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one row of the dynamic programme kept)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1): LCS / len(prediction) and LCS / len(reference) over the
    normalised tokens, combined by their harmonic mean. No stemming; time is len(pred) x len(ref)."""
    pred, ref = _tokens(prediction), _tokens(reference)
    fixed = _empty_rule(not pred, not ref)
    if fixed is not None:
        return fixed
    return _f_measure(_lcs_length(pred, ref), len(pred), len(ref))


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def embedding_cosine(
    embedder: Embedder, predictions: Sequence[str], references: Sequence[str]
) -> list[float]:
    """Cosine of each prediction's and reference's embedding (the raw texts, one batch), clipped to
    [0, 1]. The local model reads the first 256 word pieces ([CLS] and [SEP] included) of a text:
    what lies beyond does not count."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    fixed = [
        _empty_rule(not normalize_answer(p), not normalize_answer(r))
        for p, r in zip(predictions, references, strict=True)
    ]
    todo = [i for i, f in enumerate(fixed) if f is None]
    scores = [f if f is not None else 0.0 for f in fixed]
    if not todo:
        return scores
    vectors = np.asarray(
        embedder.embed([predictions[i] for i in todo] + [references[i] for i in todo]), dtype=np.float64
    )
    if not np.isfinite(vectors).all():
        raise EmbeddingError("the embedder returned non-finite vectors: no cosine can be computed")
    vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    cosines = (vectors[: len(todo)] * vectors[len(todo) :]).sum(axis=1)
    for i, cosine in zip(todo, cosines, strict=True):
        scores[i] = _clip(cosine)
    return scores


def bertscore(model: TokenVectors, prediction: str, reference: str) -> BertScore:
    """BERTScore-style matching: each token of one text is matched greedily to its most similar
    token of the other (cosine of L2-normalised contextual vectors, [CLS]/[SEP] excluded);
    precision is the mean best match over prediction tokens, recall over reference tokens, each
    best match clipped at 0. Unlike the bert-score package: no idf weighting and no baseline
    rescaling, and the model is the local MiniLM, so values are not comparable with published
    BERTScore figures. The model reads the first 256 word pieces of each text ([CLS] and [SEP]
    included): tokens beyond the first 254 are not matched and do not count."""
    fixed = _empty_rule(not normalize_answer(prediction), not normalize_answer(reference))
    if fixed is not None:
        return BertScore(fixed, fixed, fixed)
    pred, ref = model.token_vectors([prediction, reference])
    # A text of characters the tokenizer drops has no word pieces: empty to the model.
    fixed = _empty_rule(len(pred) == 0, len(ref) == 0)
    if fixed is not None:
        return BertScore(fixed, fixed, fixed)
    cosines = np.asarray(pred, dtype=np.float64) @ np.asarray(ref, dtype=np.float64).T
    if not np.isfinite(cosines).all():
        raise EmbeddingError("the model returned non-finite token vectors: no match can be computed")
    best = np.clip(cosines, 0.0, 1.0)
    precision = float(best.max(axis=1).mean())
    recall = float(best.max(axis=0).mean())
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return BertScore(precision, recall, f1)


def similarity_scores(
    embedder: Embedder, token_model: TokenVectors, prediction: str, reference: str
) -> dict[str, float]:
    """All five similarity metrics of one answer against its reference, by metric name."""
    return {
        EXACT_MATCH: exact_match(prediction, reference),
        TOKEN_F1: token_f1(prediction, reference),
        ROUGE_L: rouge_l(prediction, reference),
        EMBEDDING_COSINE: embedding_cosine(embedder, [prediction], [reference])[0],
        BERTSCORE_F1: bertscore(token_model, prediction, reference).f1,
    }
