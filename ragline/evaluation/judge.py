"""An LLM judge of answer quality that states its own uncertainty: k separately seeded samples per
judgement, the mean with a bootstrap interval and the spread between samples, unmeasured samples
counted with their reasons (never 0, never dropped), a cache per sample, and pairwise preferences
judged in both orders."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from ragline.answer.prompts import Prompt, load_prompt
from ragline.answer.routing import connect_chat_client
from ragline.config import ConfigError, JudgeSettings, Settings, chat_models
from ragline.evaluation.metrics import bootstrap_ci
from ragline.llm import LLMError, LLMUnavailable, chat_client
from ragline.safe_text import printable
from ragline.storage.db import Database, query
from ragline.types import ChatModel

if TYPE_CHECKING:
    from ragline.guardrails import Guard

log = logging.getLogger(__name__)

JUDGE_PROMPT_DIR = Path(__file__).resolve().parent / "judge_prompts"
PAIRWISE_METRIC = "preference"
# The prompt roles (JUDGE_PROMPT_ROLES in config) each metric's samples call, and their placeholders.
_ROLES = {
    "faithfulness": ("claims", "faithfulness"),
    "relevance": ("relevance",),
    "context_precision": ("context_precision",),
    "context_recall": ("context_recall",),
    "correctness": ("correctness",),
    PAIRWISE_METRIC: ("pairwise",),
}
_PLACEHOLDERS = {
    "claims": ("question", "answer"),
    "faithfulness": ("passages", "claims"),
    "relevance": ("question", "answer"),
    "context_precision": ("question", "reference", "passages"),
    "context_recall": ("passages", "statements"),
    "correctness": ("question", "answer", "reference"),
    "pairwise": ("question", "passages", "answer_1", "answer_2"),
}
MAX_CLAIMS = 20  # of one answer; a longer list is cut (schema maxItems, and here)
_RUBRIC_TOP = 4  # relevance and correctness are graded 0..4, scored grade / 4
_REASON_CHARS = 200
_RAW_CHARS = 500  # of an unparseable reply, kept in the cache row's details
# An untrusted text may not close its own block and pose as prompt text after it.
_BLOCK_END = re.compile(
    r"</\s*(passages?|question|answer(?:_[12])?|reference|claims?|statements?)\s*>", re.IGNORECASE
)
# Statements of a reference: sentences ending in . ! or ? followed by a space and a capital, a quote
# or a parenthesis ("3.5 days", "e.g. Monday" stay whole); semicolons split too.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)\s+(?=[A-Z\"'(])|;\s+")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


class _Sampled:
    """Counts of a judgement's measured and unmeasured samples."""

    samples: tuple[float | None, ...]

    @property
    def measured(self) -> int:
        return sum(s is not None for s in self.samples)

    @property
    def unmeasured(self) -> int:
        return sum(s is None for s in self.samples)


@dataclass(frozen=True)
class Judgement(_Sampled):
    """One metric's k judge samples: their mean, bootstrap interval and spread over the measured
    ones; unmeasured samples are None with their reason."""

    metric: str
    samples: tuple[float | None, ...]  # one per sample, None = unmeasured
    reasons: tuple[str, ...]  # per sample: "" when measured, else why not (short, printable)
    mean: float | None  # over measured samples; None when none was measured
    low: float | None  # bootstrap_ci over the measured samples
    high: float | None
    spread: float | None  # std (ddof=1) between measured samples; 0.0 for one
    cached: int  # samples served from the judgement cache
    details: dict = field(default_factory=dict)  # the first measured sample's, and every sample's


@dataclass(frozen=True)
class PairwiseJudgement(_Sampled):
    """The judge's preference of answer B (candidate) over A (baseline) in [-1, 1], both orders
    averaged per sample, with how often the two orders agreed and how often the position won."""

    samples: tuple[float | None, ...]  # per sample: the preference of B, both orders averaged (-1..1)
    reasons: tuple[str, ...]
    mean: float | None
    low: float | None
    high: float | None
    spread: float | None
    consistent: int  # samples whose two orders agreed
    position_bias: float | None  # share of measured order-pairs where the verdict followed the position
    cached: int
    details: dict = field(default_factory=dict)


class Unmeasurable(ValueError):
    """A judge reply that cannot be scored: not JSON, or not the shape its prompt asked for."""

    def __init__(self, reason: str, raw: str = "") -> None:
        super().__init__(reason)
        self.raw = raw


@dataclass(frozen=True)
class _Sample:
    score: float | None
    reason: str
    details: dict
    cached: bool = False


def judge_model(settings: Settings) -> ChatModel:
    """The judge's chat model: judge.model names a model of the models: block, else the llm: block's."""
    name = settings.judge.model
    if name is not None:
        for model in chat_models(settings):
            if model.name == name:
                return connect_chat_client(model)
        raise ConfigError(f"judge.model {printable(name, 60)!r} is not a configured chat model")
    client = chat_client(settings.llm)
    if client is None:
        raise ConfigError(
            "no judge model: set judge.model to a model of the models: block, or configure an llm: block"
        )
    return client


def build_judge(settings: Settings, db: Database | None = None) -> Judge:
    """The judge ragline.yaml describes: its model, its judge: block, and the guardrails' redaction
    when guardrails are enabled (the judge model is an external call like the answer model)."""
    guard = None
    if settings.guardrails.enabled:
        from ragline.guardrails import Guard

        guard = Guard(settings.guardrails)
    return Judge(judge_model(settings), settings.judge, db, guard=guard)


class Judge:
    """Judges answers with a chat model: pointwise metrics and pairwise preferences, k samples each;
    with a guard, every text is redacted before it is sent (one Redaction per judgement)."""

    def __init__(
        self,
        model: ChatModel,
        settings: JudgeSettings,
        db: Database | None = None,
        *,
        guard: Guard | None = None,
    ) -> None:
        self.model = model
        self.guard = guard
        self.settings = settings
        self.db = db if settings.cache else None
        self.prompts: dict[str, Prompt] = {
            role: load_prompt(
                settings.prompt_ref(role),
                settings.prompt_dir,
                builtin=JUDGE_PROMPT_DIR,
                placeholders=placeholders,
            )
            for role, placeholders in _PLACEHOLDERS.items()
        }
        self.prompt_versions: dict[str, str] = {
            metric: "+".join(self.prompts[role].ref for role in roles) for metric, roles in _ROLES.items()
        }

    # --- the metrics -------------------------------------------------------------------------------

    def faithfulness(self, question: str, answer: str, passages: Sequence[str]) -> Judgement:
        """The share of the answer's claims that the passages support (claims extracted, then judged)."""
        question, answer, passages = self._redacted(question, answer, passages)
        if not answer.strip():
            return self._fixed("faithfulness", 1.0, {"abstained": True})

        def sample(seed: int) -> tuple[float, dict]:
            claims = self._ask("claims", {"question": question, "answer": answer}, seed, _claims_schema())
            found = _claims(claims)
            values = {"passages": _numbered(passages, "passage"), "claims": _numbered(found, "claim")}
            verdicts = _verdicts(self._ask("faithfulness", values, seed, _verdicts_schema(len(found))), found)
            supported = [{"claim": c, "supported": v} for c, v in zip(found, verdicts, strict=True)]
            return sum(verdicts) / len(found), {"claims": supported}

        inputs = {"question": question, "answer": answer, "passages": list(passages)}
        return self._judgement("faithfulness", inputs, sample)

    def relevance(self, question: str, answer: str) -> Judgement:
        """Does the answer address the question: the rubric's grade 0-4, scored grade / 4."""
        question, answer = self._redacted(question, answer)
        if not answer.strip():
            return self._fixed("relevance", 0.0, {"abstained": True})
        values = {"question": question, "answer": answer}
        return self._judgement("relevance", values, lambda seed: self._graded("relevance", values, seed))

    def context_precision(self, question: str, passages: Sequence[str], reference: str) -> Judgement:
        """Average precision over the passages' ranks of those useful for the reference (ragas)."""
        question, passages, reference = self._redacted(question, passages, reference)
        _require_reference(reference, "context_precision")
        if not passages:
            return self._fixed("context_precision", 0.0, {"no_passages": True})
        values = {"question": question, "reference": reference, "passages": _numbered(passages, "passage")}

        def sample(seed: int) -> tuple[float, dict]:
            reply = self._ask("context_precision", values, seed, _verdicts_schema(len(passages)))
            useful = _verdicts(reply, passages)
            return average_precision(useful), {"useful": useful}

        inputs = {"question": question, "reference": reference, "passages": list(passages)}
        return self._judgement("context_precision", inputs, sample)

    def context_recall(self, passages: Sequence[str], reference: str) -> Judgement:
        """The share of the reference's statements (its sentences) that the passages support."""
        passages, reference = self._redacted(passages, reference)
        _require_reference(reference, "context_recall")
        statements = reference_statements(reference)
        if not passages:
            return self._fixed("context_recall", 0.0, {"no_passages": True})
        values = {
            "passages": _numbered(passages, "passage"),
            "statements": _numbered(statements, "statement"),
        }

        def sample(seed: int) -> tuple[float, dict]:
            reply = self._ask("context_recall", values, seed, _verdicts_schema(len(statements)))
            attributed = _verdicts(reply, statements)
            pairs = [{"statement": s, "attributed": a} for s, a in zip(statements, attributed, strict=True)]
            return sum(attributed) / len(statements), {"statements": pairs}

        inputs = {"passages": list(passages), "reference": reference}
        return self._judgement("context_recall", inputs, sample)

    def correctness(self, question: str, answer: str, reference: str) -> Judgement:
        """The answer against the reference answer: the rubric's grade 0-4, scored grade / 4."""
        question, answer, reference = self._redacted(question, answer, reference)
        _require_reference(reference, "correctness")
        if not answer.strip():
            return self._fixed("correctness", 0.0, {"abstained": True})
        values = {"question": question, "answer": answer, "reference": reference}
        return self._judgement("correctness", values, lambda seed: self._graded("correctness", values, seed))

    def pairwise(
        self, question: str, answer_a: str, answer_b: str, passages: Sequence[str]
    ) -> PairwiseJudgement:
        """The preference of B (candidate) over A (baseline): each sample judges both orders."""
        question, answer_a, answer_b, passages = self._redacted(question, answer_a, answer_b, passages)
        shown = {"question": question, "passages": _numbered(passages, "passage")}

        def sample(seed: int) -> tuple[float, dict]:
            first = _better(self._ask("pairwise", {**shown, **_pair(answer_a, answer_b)}, seed, _BETTER))
            second = _better(self._ask("pairwise", {**shown, **_pair(answer_b, answer_a)}, seed, _BETTER))
            # Preference of B: shown second in the first order, first in the second.
            of_b = (_PREFERENCE[first], -_PREFERENCE[second])
            return sum(of_b) / 2, {"verdicts": [first, second], "preference_of_b": list(of_b)}

        inputs = {
            "question": question,
            "answer_a": answer_a,
            "answer_b": answer_b,
            "passages": list(passages),
        }
        samples = self._samples(PAIRWISE_METRIC, inputs, sample)
        pairs = [s.details["verdicts"] for s in samples if s.score is not None]
        consistent = sum(
            1 for s in samples if s.score is not None and len(set(s.details["preference_of_b"])) == 1
        )
        following = sum(1 for first, second in pairs if first == second and first != "tie")
        summary = _summary(samples, self.settings)
        return PairwiseJudgement(
            **summary,
            consistent=consistent,
            position_bias=following / len(pairs) if pairs else None,
            cached=sum(s.cached for s in samples),
            details=_details(samples, self.prompt_versions[PAIRWISE_METRIC]),
        )

    # --- redaction, sampling, caching ------------------------------------------------------------------

    def _redacted(self, *inputs: str | Sequence[str]) -> tuple[Any, ...]:
        """The inputs (texts, or lists of texts) with personal data and secrets replaced by
        placeholders stable across all of them; as given without a guard. Never restored: the
        model's replies (claims, details) keep the placeholders, so nothing stored holds a value."""
        if self.guard is None:
            return inputs
        lists = [[item] if isinstance(item, str) else list(item) for item in inputs]
        redacted = iter(self.guard.redact([text for texts in lists for text in texts]).texts)
        out = [[next(redacted) for _ in texts] for texts in lists]
        return tuple(o[0] if isinstance(i, str) else o for i, o in zip(inputs, out, strict=True))

    def _graded(self, role: str, values: dict[str, str], seed: int) -> tuple[float, dict]:
        reply = self._ask(role, values, seed, _GRADE)
        grade = _grade(reply)
        return grade / _RUBRIC_TOP, {"grade": grade}

    def _ask(self, role: str, values: dict[str, str], seed: int, schema: dict[str, Any]) -> dict[str, Any]:
        """One judge call: the reply parsed as a JSON object, or Unmeasurable."""
        prompt = self.prompts[role]
        response_format = (
            {"type": "json_schema", "json_schema": {"name": role, "schema": schema}}
            if self.settings.json_schema
            else None
        )
        completion = self.model.chat(
            prompt.messages(**{k: _escaped(v) for k, v in values.items()}),
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
            response_format=response_format,
            seed=seed,
        )
        cut = " (cut at judge.max_tokens)" if completion.finish_reason == "length" else ""
        return parse_reply(completion.text, f"{role} reply{cut}")

    def _judgement(
        self, metric: str, inputs: dict[str, Any], sample: Callable[[int], tuple[float, dict]]
    ) -> Judgement:
        samples = self._samples(metric, inputs, sample)
        return Judgement(
            metric=metric,
            **_summary(samples, self.settings),
            cached=sum(s.cached for s in samples),
            details=_details(samples, self.prompt_versions[metric]),
        )

    def _fixed(self, metric: str, value: float, details: dict) -> Judgement:
        """A judgement decided without the model (an abstention, no passages): k equal samples."""
        k = self.settings.samples
        return Judgement(metric, (value,) * k, ("",) * k, value, value, value, 0.0, 0, dict(details))

    def _samples(
        self, metric: str, inputs: dict[str, Any], sample: Callable[[int], tuple[float, dict]]
    ) -> list[_Sample]:
        """k samples, each from the cache or one seeded run of `sample`; a failure is unmeasured."""
        key = self._key(metric, inputs)
        stored = self._cached(key)
        out: list[_Sample] = []
        for seed in range(self.settings.samples):
            if seed in stored:
                out.append(stored[seed])
                continue
            keep = True
            try:
                score, details = sample(seed)
                result = _Sample(float(score), "", details)
            # The model's reply, unusable: the same seed would most likely give it again, so cached.
            except Unmeasurable as exc:
                raw = {"raw": printable(exc.raw, _RAW_CHARS)} if exc.raw else {}
                result = _Sample(None, printable(str(exc), _REASON_CHARS), raw)
            # No reply (unreachable, refused, every model failed): not cached, asked again next time.
            except LLMError as exc:
                kind = "unavailable" if isinstance(exc, LLMUnavailable) else "failed"
                result = _Sample(None, printable(f"judge call {kind}: {exc}", _REASON_CHARS), {})
                keep = False
            if result.score is None:
                log.info("judge %s sample %d unmeasured: %s", metric, seed, result.reason)
            if keep:
                self._store(key, seed, metric, result)
            out.append(result)
        return out

    def _key(self, metric: str, inputs: dict[str, Any]) -> dict[str, Any]:
        roles = _ROLES[metric]
        params = {
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "json_schema": self.settings.json_schema,
        }
        text = json.dumps({"metric": metric, "inputs": inputs, "params": params}, sort_keys=True)
        return {
            "judge_model": self.model.model,
            "prompt": self.prompt_versions[metric],
            "prompt_sha256": _sha256("".join(self.prompts[r].sha256 for r in roles)),
            "inputs_hash": _sha256(text),
        }

    def _cached(self, key: dict[str, Any]) -> dict[int, _Sample]:
        if self.db is None:
            return {}
        with self.db.connection() as conn:
            rows = conn.execute(
                query("judgement_samples"), {**key, "samples": self.settings.samples}
            ).fetchall()
        return {
            sample: _Sample(score, reason, details or {}, cached=True)
            for sample, score, reason, details in rows
        }

    def _store(self, key: dict[str, Any], seed: int, metric: str, s: _Sample) -> None:
        if self.db is None:
            return
        with self.db.connection() as conn:
            conn.execute(
                query("insert_judgement"),
                {
                    **key,
                    "sample": seed,
                    "metric": metric,
                    "score": s.score,
                    "reason": s.reason,
                    "details": Jsonb(s.details),
                },
            )


# --- replies -------------------------------------------------------------------------------------------

_YES_NO = {"type": "string", "enum": ["yes", "no"]}
_GRADE = {
    "type": "object",
    "properties": {"score": {"type": "integer", "enum": list(range(_RUBRIC_TOP + 1))}},
    "required": ["score"],
}
_BETTER = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["1", "2", "tie"]}},
    "required": ["better"],
}
_PREFERENCE = {"1": -1.0, "2": 1.0, "tie": 0.0}  # of the answer shown second


def _claims_schema() -> dict[str, Any]:
    claims = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_CLAIMS}
    return {"type": "object", "properties": {"claims": claims}, "required": ["claims"]}


def _verdicts_schema(n: int) -> dict[str, Any]:
    verdicts = {"type": "array", "items": _YES_NO, "minItems": n, "maxItems": n}
    return {"type": "object", "properties": {"verdicts": verdicts}, "required": ["verdicts"]}


def parse_reply(text: str, what: str = "reply") -> dict[str, Any]:
    """A judge reply as a JSON object: the whole text, else inside a code fence, else from its first
    '{' to its last '}'; Unmeasurable otherwise."""
    stripped = _FENCE.sub("", text.strip())
    candidates = [stripped]
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        candidates.append(stripped[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise Unmeasurable(f"unparseable {what}: not a JSON object", text)


def _grade(reply: dict[str, Any]) -> int:
    value = reply.get("score")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _RUBRIC_TOP:
        raise Unmeasurable(f"schema: score must be a whole number from 0 to {_RUBRIC_TOP}", json.dumps(reply))
    return value


def _claims(reply: dict[str, Any]) -> list[str]:
    claims = reply.get("claims")
    if not isinstance(claims, list) or not all(isinstance(c, str) for c in claims):
        raise Unmeasurable("schema: claims must be a list of strings", json.dumps(reply))
    found = [c.strip() for c in claims if c.strip()][:MAX_CLAIMS]
    if not found:
        # A non-empty answer states something: no claim found is the extractor failing, not a score.
        raise Unmeasurable("no claims extracted from a non-empty answer", json.dumps(reply))
    return found


def _verdicts(reply: dict[str, Any], items: Sequence[str]) -> list[bool]:
    verdicts = reply.get("verdicts")
    if not isinstance(verdicts, list):
        raise Unmeasurable("schema: verdicts must be a list", json.dumps(reply))
    out = []
    for v in verdicts:
        word = str(v).strip().lower() if not isinstance(v, bool) else ("yes" if v else "no")
        if word not in ("yes", "no", "true", "false"):
            raise Unmeasurable(f"schema: verdict {printable(v, 20)!r} is not yes or no", json.dumps(reply))
        out.append(word in ("yes", "true"))
    if len(out) != len(items):
        raise Unmeasurable(f"schema: {len(out)} verdicts for {len(items)} items", json.dumps(reply))
    return out


def _better(reply: dict[str, Any]) -> str:
    value = str(reply.get("better", "")).strip().lower()
    if value not in _PREFERENCE:
        raise Unmeasurable("schema: better must be 1, 2 or tie", json.dumps(reply))
    return value


# --- inputs and results ----------------------------------------------------------------------------------


def average_precision(useful: Sequence[bool]) -> float:
    """Mean of precision@k over the ranks k of useful items (ragas context precision); 0.0 if none."""
    hits = 0
    total = 0.0
    for rank, is_useful in enumerate(useful, start=1):
        if is_useful:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def reference_statements(reference: str) -> list[str]:
    """The reference answer's statements: its sentences (and semicolon-separated parts)."""
    return [s.strip() for s in _SENTENCE_END.split(reference.strip()) if s.strip()]


def _require_reference(reference: str, metric: str) -> None:
    if not reference.strip():
        raise ValueError(f"{metric} needs a reference answer")


class _Blocks(str):
    """Prompt text built of blocks whose contents are already escaped."""


def _numbered(texts: Sequence[str], tag: str) -> _Blocks:
    """Untrusted texts as numbered blocks: <passage n="1">...</passage>."""
    blocks = (f'<{tag} n="{i}">\n{_escaped(t)}\n</{tag}>' for i, t in enumerate(texts, start=1))
    return _Blocks("\n".join(blocks))


def _escaped(text: str) -> str:
    """Untrusted text that cannot close its block: </passage> becomes <\\/passage>."""
    if isinstance(text, _Blocks):
        return text
    return _BLOCK_END.sub(lambda m: f"<\\/{m.group(1)}>", text)


def _pair(first: str, second: str) -> dict[str, str]:
    return {"answer_1": first.strip() or "(no answer)", "answer_2": second.strip() or "(no answer)"}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _summary(samples: list[_Sample], settings: JudgeSettings) -> dict[str, Any]:
    """samples, reasons, mean, low, high, spread: the interval over the measured samples only."""
    measured = [s.score for s in samples if s.score is not None]
    out: dict[str, Any] = {
        "samples": tuple(s.score for s in samples),
        "reasons": tuple(s.reason for s in samples),
        "mean": None,
        "low": None,
        "high": None,
        "spread": None,
    }
    if measured:
        ci = bootstrap_ci(
            measured, samples=settings.bootstrap_samples, confidence=settings.confidence, seed=0
        )
        out.update(mean=ci.mean, low=ci.low, high=ci.high, spread=ci.spread)
    return out


def _details(samples: list[_Sample], prompt: str) -> dict[str, Any]:
    """The first measured sample's details at the top, every sample's under "samples"."""
    first = next((s.details for s in samples if s.score is not None), {})
    return {**first, "prompt": prompt, "samples": [s.details for s in samples]}
