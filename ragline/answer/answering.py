"""Answering a question from the published documents: retrieve, abstain when support is weak,
assemble a cited context within the model's budget, generate, map citations, record the answer."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from psycopg.types.json import Jsonb

from ragline.answer.citations import Citation, passages_block, resolve_citations
from ragline.answer.prompts import Prompt, load_prompt
from ragline.config import AnswerSettings, Settings
from ragline.endpoints import report_call
from ragline.retrieval.context import Context, assemble_context, tokenizer_for
from ragline.retrieval.search import Retriever
from ragline.safe_text import printable
from ragline.storage.db import Database, query
from ragline.types import (
    CallRecord,
    ChatModel,
    Completion,
    Filters,
    Hit,
    ModelSelector,
    RetrievalError,
    RouteFeatures,
)

if TYPE_CHECKING:
    import pydantic

    from ragline.answer.cache import AnswerCache, SemanticKey
    from ragline.guardrails import Guard, Redaction

__all__ = ["ABSTAIN_TEXT", "Answer", "AnswerError", "Citation", "answer", "answer_stream"]

ABSTAIN_TEXT = "not in the documents"
# What answer() takes besides its named arguments: retrieval's, and the answer block's own.
# search_text: retrieve for this text instead of the question (answer evaluation's negative control
# feeds in another question's context).
_RETRIEVAL_OVERRIDES = {"k", "strategy", "filters", "mmr_lambda", "log", "budget_left_tokens", "search_text"}
_SETTINGS_OVERRIDES = {"prompt", "max_tokens", "temperature", "min_support", "context_tokens", "max_retries"}
# Chat formats add a few tokens per message (role markers); counted so that the budget holds.
_MESSAGE_OVERHEAD_TOKENS = 8
# The endpoint of a call record for an answer served from the answer cache (no server was called).
CACHE_ENDPOINT = "cache"
# The start of a guardrail placeholder ("<EMAIL_1>") at the end of streamed text, not yet closed.
_PLACEHOLDER_START = re.compile(r"<[A-Z0-9_]*\Z")
_PLACEHOLDER_MAX_CHARS = 40


class AnswerError(RuntimeError):
    """No valid answer could be made: the reply failed the output schema after the last retry."""


@dataclass
class Answer:
    """An answer with the passages it cites, or why there is none, and what it took to make."""

    question: str
    text: str
    citations: list[Citation]  # only the [n] the text actually cites, in order of citation
    abstained: bool
    reason: str | None  # why it abstained or was refused
    prompt: str  # "<name>@<version>"
    model: str | None
    route: str | None
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    timings_ms: dict[str, float]
    guardrails: dict[str, Any]
    answer_id: int | None
    data: dict | None = None  # the validated structured output, when an output_schema was given
    support: float | None = None  # the best passage's cosine similarity to the question
    # answer_stream(): the output checks changed the text after its tokens were streamed; `text`
    # (repaired, or the refusal) replaces what the tokens spelled out.
    replaced: bool = False
    # Why the model stopped ("stop", "length": cut at max_tokens), as it said; None without a call.
    finish_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what `ragline answer --json` prints and the API returns."""
        return dataclasses.asdict(self)


@dataclass
class _Request:
    """Everything known before the model is called."""

    question: str
    settings: AnswerSettings
    prompt: Prompt
    context: Context
    messages: list[dict[str, Any]]
    model: ChatModel
    support: float
    query_id: int | None
    timings: dict[str, float]
    started: float
    served: dict[str, Any] | None  # what search served when retrieval began (ragline.served_data)
    searched: str  # the question as searched and stored: redacted when guardrails are on
    guardrails: dict[str, Any] = field(default_factory=dict)
    redaction: Redaction | None = None
    cache_keys: tuple[str, SemanticKey | None] | None = None


def answer(
    question: str,
    *,
    settings: Settings,
    db: Database,
    retriever: Retriever,
    models: ModelSelector,
    guard: Guard | None = None,
    cache: AnswerCache | None = None,
    output_schema: type[pydantic.BaseModel] | None = None,
    **overrides: Any,
) -> Answer:
    """Answer a question from the published documents, with citations, or abstain."""
    prepared = _prepare(question, settings, db, retriever, models, guard, cache, output_schema, overrides)
    if isinstance(prepared, Answer):
        return prepared
    return _generated(prepared, db, guard, cache, output_schema)


def answer_stream(
    question: str,
    *,
    settings: Settings,
    db: Database,
    retriever: Retriever,
    models: ModelSelector,
    guard: Guard | None = None,
    cache: AnswerCache | None = None,
    output_schema: type[pydantic.BaseModel] | None = None,
    **overrides: Any,
) -> Iterator[tuple[str, Any]]:
    """("token", text) as the model writes, then ("answer", Answer). An abstention, a cache hit or a
    structured answer (validated whole) yields no tokens, only the answer."""
    prepared = _prepare(question, settings, db, retriever, models, guard, cache, output_schema, overrides)
    if isinstance(prepared, Answer):
        yield "answer", prepared
        return
    if output_schema is not None:
        yield "answer", _generated(prepared, db, guard, cache, output_schema)
        return
    r = prepared
    t = time.perf_counter()
    completion: Completion | None = None
    # The tokens carry placeholders, not the redacted values: restored as the policy allows.
    restorer = _StreamRestorer(r.redaction) if guard is not None and r.redaction is not None else None
    gate = _StreamGate(guard) if guard is not None else None
    streamed: list[str] = []
    for item in r.model.stream(
        r.messages, max_tokens=r.settings.max_tokens, temperature=r.settings.temperature
    ):
        if isinstance(item, Completion):
            completion = item
            continue
        text = item if restorer is None else restorer.feed(item)
        text = text if gate is None else gate.feed(text)
        if text:
            r.timings.setdefault("first_token", 1000 * (time.perf_counter() - r.started))
            streamed.append(text)
            yield "token", text
    rest = "" if restorer is None else restorer.flush()
    rest = rest if gate is None else gate.feed(rest, final=True)
    if rest:
        streamed.append(rest)
        yield "token", rest
    if completion is None:
        raise AnswerError(f"the chat model {printable(r.model.model, 80)} ended its stream without a result")
    r.timings["generate"] = 1000 * (time.perf_counter() - t)
    out = _finish(r, completion, None, db, guard, cache)
    # The output checks repaired or refused what was streamed: the final text replaces it.
    out.replaced = "".join(streamed).strip() != out.text
    yield "answer", out


def _prepare(
    question: str,
    settings: Settings,
    db: Database,
    retriever: Retriever,
    models: ModelSelector,
    guard: Guard | None,
    cache: AnswerCache | None,
    output_schema: type[pydantic.BaseModel] | None,
    overrides: dict[str, Any],
) -> _Request | Answer:
    """Retrieve, measure support, pick the model, assemble the context and the messages; an Answer
    when no model call is needed (abstention, cache hit)."""
    started = time.perf_counter()
    unknown = sorted(set(overrides) - _RETRIEVAL_OVERRIDES - _SETTINGS_OVERRIDES)
    if unknown:
        raise TypeError(f"answer() got unknown options {unknown}")
    if not question.strip() or "\x00" in question:
        raise RetrievalError("the question is empty or holds a NUL character")
    a = dataclasses.replace(
        settings.answer, **{k: v for k, v in overrides.items() if k in _SETTINGS_OVERRIDES}
    )
    if a.max_tokens < 1 or a.context_tokens < 1:
        raise RetrievalError("max_tokens and context_tokens must be at least 1")
    prompt = load_prompt(a.prompt, a.prompt_dir)
    if retriever.embedder is None:
        raise RetrievalError("answering measures support with the embedding model: the retriever needs one")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    # Read before retrieval: a publish during this answer can only make its cache entry stale (it
    # never hits), never stamp an answer built on the old data as built on the new.
    with db.connection() as conn:
        served = conn.execute(query("served_data_state")).fetchone()[0]
    filters = overrides.get("filters") or Filters()
    # Search for the redacted question: an embedding endpoint is an external call too, and two
    # requests that differ only in a redacted value retrieve the same context (one cache entry).
    wanted = overrides.get("search_text") or question
    searched = wanted if guard is None else guard.redact([wanted]).texts[0]
    result = retriever.search(
        searched,
        k=overrides.get("k"),
        strategy=overrides.get("strategy"),
        filters=filters,
        mmr_lambda=overrides.get("mmr_lambda"),
        log=overrides.get("log"),
    )
    timings["retrieve"] = 1000 * (time.perf_counter() - t)

    t = time.perf_counter()
    qvec = result.vector if result.vector is not None else retriever.embedder.embed([searched])[0]
    sims = similarities(db, retriever, result.hits, qvec)
    best = np.sort(sims)[::-1]
    support = float(best[0]) if len(best) else -1.0
    margin = float(best[0] - best[1]) if len(best) > 1 else None
    timings["support"] = 1000 * (time.perf_counter() - t)

    def abstain(reason: str) -> Answer:
        timings["total"] = 1000 * (time.perf_counter() - started)
        out = Answer(
            question,
            ABSTAIN_TEXT,
            [],
            True,
            reason,
            prompt.ref,
            None,
            None,
            False,
            0,
            0,
            timings,
            {},
            None,
            support=support if result.hits else None,
        )
        out.answer_id = _record(db, out, searched, prompt, [], result.query_id, served)
        return out

    if not result.hits:
        return abstain("not in the documents: nothing was retrieved for the question")
    if support < a.min_support:
        return abstain(
            f"not in the documents: the best passage's similarity to the question, {support:.3f}, "
            f"is below answer.min_support {a.min_support:g}"
        )

    tokenizer = tokenizer_for(a.tokenizer)
    features = RouteFeatures(
        question_tokens=len(tokenizer.encode(question)),
        retrieval_margin=margin,
        top_score=support,
        output="json" if output_schema is not None else "text",
        budget_left_tokens=overrides.get("budget_left_tokens"),
    )
    model = models.select(features)

    t = time.perf_counter()
    # The hits ordered by support (the same order for every strategy), then fitted to what the
    # model's window leaves after the prompt itself and the answer.
    window = getattr(model, "context_window", None) or settings.llm.context_window
    bare = _messages(prompt, "", question, output_schema)
    fixed = sum(len(tokenizer.encode(m["content"])) + _MESSAGE_OVERHEAD_TOKENS for m in bare)
    budget = min(a.context_tokens, window - fixed - a.max_tokens)
    if budget < 1:
        return abstain(
            f"the model's context window ({window} tokens) leaves no room for passages after the "
            f"prompt ({fixed}) and answer.max_tokens ({a.max_tokens})"
        )
    order = np.argsort(-sims, kind="stable")
    ranked = [result.hits[i] for i in order]
    context = assemble_context(ranked, budget=budget, tokenizer=tokenizer, order="long_context")
    if not context.passages:
        return abstain(f"no retrieved passage fits the context budget of {budget} tokens")
    messages = _messages(prompt, passages_block(context), question, output_schema)
    timings["assemble"] = 1000 * (time.perf_counter() - t)
    request = _Request(
        question,
        a,
        prompt,
        context,
        messages,
        model,
        support,
        result.query_id,
        timings,
        started,
        served,
        searched,
    )

    if guard is not None:
        flags = {str(p.number): f for p in context.passages if (f := guard.injection_flags(p.hit.text))}
        if flags:
            request.guardrails["injection"] = flags
        request.redaction = guard.redact([m["content"] for m in messages])
        request.messages = [
            {**m, "content": text} for m, text in zip(messages, request.redaction.texts, strict=True)
        ]
        if request.redaction.found:
            request.guardrails["redacted"] = dict(request.redaction.found)

    if cache is not None:
        hit = _cache_lookup(request, db, cache, guard, output_schema, qvec)
        if hit is not None:
            return hit
    return request


def similarities(db: Database, retriever: Retriever, hits: Sequence[Hit], qvec: np.ndarray) -> np.ndarray:
    """Each hit's cosine similarity to the query vector: a support signal that means the same for
    dense, lexical and hybrid retrieval (their own scores are not comparable)."""
    if not hits:
        return np.zeros(0)
    with db.connection() as conn:
        vectors = np.asarray(retriever.vectors(conn, hits), dtype=np.float64)
    q = np.asarray(qvec, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(q)
    sims = vectors @ q / np.where(norms == 0, 1.0, norms)
    return sims


def _messages(
    prompt: Prompt, passages: str, question: str, output_schema: type[pydantic.BaseModel] | None
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = prompt.messages(passages=passages, question=question)
    if output_schema is not None:
        schema = json.dumps(output_schema.model_json_schema(), sort_keys=True)
        messages[0] = {
            **messages[0],
            "content": messages[0]["content"]
            + f"\n\nReply with one JSON object only, valid against this JSON schema:\n{schema}",
        }
    return messages


def _generated(
    r: _Request,
    db: Database,
    guard: Guard | None,
    cache: AnswerCache | None,
    output_schema: type[pydantic.BaseModel] | None,
) -> Answer:
    t = time.perf_counter()
    if output_schema is None:
        completion = r.model.chat(
            r.messages, max_tokens=r.settings.max_tokens, temperature=r.settings.temperature
        )
        data = None
    else:
        completion, data = _structured(r, output_schema)
    r.timings["generate"] = 1000 * (time.perf_counter() - t)
    return _finish(r, completion, data, db, guard, cache)


def _response_format(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
    }


def _structured(r: _Request, schema: type[pydantic.BaseModel]) -> tuple[Completion, dict]:
    """A reply valid against the schema: on a validation error the model is told what failed and
    asked again, up to answer.max_retries times."""
    import pydantic

    response_format = _response_format(schema) if r.settings.json_schema else None
    messages = list(r.messages)
    prompt_tokens = completion_tokens = 0
    error = ""
    for _attempt in range(r.settings.max_retries + 1):
        completion = r.model.chat(
            messages,
            max_tokens=r.settings.max_tokens,
            temperature=r.settings.temperature,
            response_format=response_format,
        )
        prompt_tokens += completion.prompt_tokens
        completion_tokens += completion.completion_tokens
        try:
            data = schema.model_validate_json(completion.text)
        except pydantic.ValidationError as exc:
            error = printable(_validation_summary(exc), 600)
            messages = [
                *messages,
                {"role": "assistant", "content": completion.text},
                {
                    "role": "user",
                    "content": f"That reply is not valid against the JSON schema: {error}\n"
                    "Reply again with one JSON object only, valid against the schema.",
                },
            ]
            continue
        total = dataclasses.replace(
            completion, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        return total, data.model_dump(mode="json")
    raise AnswerError(
        f"the model's reply did not match {schema.__name__} after {r.settings.max_retries + 1} attempts "
        f"({prompt_tokens + completion_tokens} tokens spent): {error}"
    )


def _validation_summary(exc: pydantic.ValidationError) -> str:
    """The validation errors in one line: where and what, without echoing the whole reply."""
    parts = []
    for e in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(x) for x in e.get("loc", ())) or "(root)"
        parts.append(f"{where}: {e.get('msg', '')}")
    return "; ".join(parts)


def _finish(
    r: _Request,
    completion: Completion,
    data: dict | None,
    db: Database,
    guard: Guard | None,
    cache: AnswerCache | None,
) -> Answer:
    """Check the output, map its citations, store it in the cache and the answers table."""
    raw = completion.text.strip()
    out = _checked_answer(
        r,
        raw,
        data,
        guard,
        model=completion.model,
        route=completion.route,
        tokens=(completion.prompt_tokens, completion.completion_tokens),
    )
    # Keyed by the chosen model: an answer another model gave (a fallback) is not stored, or a
    # lookup for the chosen model would be served the weaker model's answer.
    out.finish_reason = completion.finish_reason
    fallback = completion.model != r.model.model
    # An answer cut at max_tokens is not kept: the same request would be served the stub for the TTL.
    cut = completion.finish_reason == "length"
    if cache is not None and r.cache_keys is not None and not _refused(out) and not fallback and not cut:
        exact, semantic = r.cache_keys
        # The model's own text, placeholders and all: the key is of the redacted messages, so a
        # request with other values behind the same placeholders hits it and restores its own.
        payload = {"text": raw, "data": data, "model": completion.model, "route": completion.route}
        with db.connection() as conn:
            cache.store(conn, exact=exact, semantic=semantic, payload=payload, served=r.served)
    out.answer_id = _record(
        db, out, r.searched, r.prompt, [p.hit.chunk_id for p in r.context.passages], r.query_id, r.served
    )
    return out


def _refused(a: Answer) -> bool:
    return a.guardrails.get("output", {}).get("action") == "refused"


def _checked_answer(
    r: _Request,
    raw: str,
    data: dict | None,
    guard: Guard | None,
    *,
    model: str | None,
    route: str | None,
    tokens: tuple[int, int],
    cached: bool = False,
) -> Answer:
    """The Answer of the model's raw text (fresh or from the cache) for this request: this request's
    redacted values restored as the policy allows, the output checked, the citations mapped."""
    text = raw
    reason: str | None = None
    refused = False
    guardrails = dict(r.guardrails)
    if guard is not None and r.redaction is not None:
        # check_output restores the redacted values the policy allows, then checks the result.
        check = guard.check_output(
            text, available={p.number for p in r.context.passages}, redaction=r.redaction
        )
        text = check.text
        guardrails["output"] = {"action": check.action, "violations": list(check.violations)}
        data = None if data is None else _restored(data, r.redaction)
        if check.action == "refused":
            refused = True
            data = None
            reason = "refused by the output guardrails: " + "; ".join(check.violations)
    abstained = refused or text.strip().strip(".").lower() == ABSTAIN_TEXT
    citations: list[Citation] = []
    if not abstained:
        citations, unknown = resolve_citations(text, r.context)
        if unknown:
            guardrails["invalid_citations"] = unknown
    elif not refused:
        reason = "the model found no answer in the retrieved passages"
    r.timings["total"] = 1000 * (time.perf_counter() - r.started)
    return Answer(
        r.question,
        text,
        citations,
        abstained,
        reason,
        r.prompt.ref,
        model,
        route,
        cached,
        tokens[0],
        tokens[1],
        r.timings,
        guardrails,
        None,
        data=data,
        support=r.support,
    )


def _restored(value: Any, redaction: Redaction) -> Any:
    """A structured answer with the redacted values the policy allows put back in its strings."""
    if isinstance(value, str):
        return redaction.restore(value)
    if isinstance(value, list):
        return [_restored(v, redaction) for v in value]
    if isinstance(value, dict):
        return {k: _restored(v, redaction) for k, v in value.items()}
    return value


class _StreamRestorer:
    """Restores placeholders in streamed text as the policy allows, holding back a tail that may be
    the start of a placeholder split across deltas ("<EMA" + "IL_1>")."""

    def __init__(self, redaction: Redaction) -> None:
        self.redaction = redaction
        self.pending = ""

    def feed(self, delta: str) -> str:
        text = self.pending + delta
        tail = _PLACEHOLDER_START.search(text)
        cut = tail.start() if tail is not None and len(tail.group()) <= _PLACEHOLDER_MAX_CHARS else len(text)
        self.pending = text[cut:]
        return self.redaction.restore(text[:cut])

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return self.redaction.restore(text)


class _StreamGate:
    """Holds streamed text back where the output checks would repair or refuse it: a blocklisted
    term (and a tail that may be its start, split across deltas) and what lies past
    max_answer_chars never reach the client; the final answer then replaces what was streamed."""

    def __init__(self, guard: Guard) -> None:
        s = guard.settings
        self.guard = guard
        self.blocklist = s.enabled and bool(s.blocklist) and s.actions.blocklist != "flag"
        self.hold = max(map(len, s.blocklist)) if self.blocklist else 0
        self.limit = s.max_answer_chars if s.enabled and s.actions.length != "flag" else None
        self.text = ""
        self.sent = 0

    def feed(self, delta: str, *, final: bool = False) -> str:
        """The text that may go out now (final: the stream ended, nothing more may complete a term)."""
        self.text += delta
        end = len(self.text) if final else len(self.text) - self.hold
        if self.blocklist and (start := self.guard.blocked_at(self.text)) is not None:
            end = min(end, start)
        if self.limit is not None:
            end = min(end, self.limit)
        if end <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : end], end
        return out


def _cache_lookup(
    r: _Request,
    db: Database,
    cache: AnswerCache,
    guard: Guard | None,
    output_schema: type[pydantic.BaseModel] | None,
    qvec: np.ndarray,
) -> Answer | None:
    """The cached answer to the same request (exact, or semantic when the cache allows it), checked
    and restored for this request; or None after noting the keys to store the new answer under."""
    from ragline.answer.cache import SemanticKey, context_key, exact_key, params_hash

    t = time.perf_counter()
    params = {
        "max_tokens": r.settings.max_tokens,
        "temperature": r.settings.temperature,
        "response_format": _response_format(output_schema) if output_schema is not None else None,
        # An edit of the prompt file without a new version changes the answer: no semantic hit.
        "prompt_sha256": r.prompt.sha256,
    }
    exact = exact_key(model=r.model.model, prompt_version=r.prompt.ref, messages=r.messages, params=params)
    context = context_key((p.hit.chunk_id, p.hit.text_hash) for p in r.context.passages)
    semantic = SemanticKey(r.model.model, r.prompt.ref, params_hash(params), context, np.asarray(qvec))
    r.cache_keys = (exact, semantic)
    with db.connection() as conn:
        hit = cache.lookup(conn, exact=exact, semantic=semantic)
    r.timings["cache"] = 1000 * (time.perf_counter() - t)
    if hit is None:
        return None
    stored = hit.payload
    r.guardrails["cache"] = {"kind": hit.kind, "similarity": hit.similarity}
    out = _checked_answer(
        r,
        stored["text"],
        stored.get("data"),
        guard,
        model=stored.get("model"),
        route=stored.get("route"),
        tokens=(0, 0),
        cached=True,
    )
    # A hit is a call that cost nothing: the ledger shows it, with 0 tokens.
    report_call(
        CallRecord(
            kind="chat",
            model=stored.get("model") or r.model.model,
            endpoint=CACHE_ENDPOINT,
            prompt_tokens=0,
            completion_tokens=0,
            latency_ms=r.timings["cache"],
            cached=True,
            route=f"answer cache hit ({hit.kind})",
        )
    )
    out.answer_id = _record(
        db, out, r.searched, r.prompt, [p.hit.chunk_id for p in r.context.passages], r.query_id, r.served
    )
    return out


def _record(
    db: Database,
    a: Answer,
    question: str,
    prompt: Prompt,
    chunk_ids: list[str],
    query_id: int | None,
    served: dict[str, Any],
) -> int:
    """Store the answer in ragline.answers with the published generations it was answered from;
    question: as searched (redacted when guardrails are on: the table keeps no secret of it)."""
    with db.connection() as conn:
        row = conn.execute(
            query("insert_answer"),
            {
                "question": question,
                "answer": a.text,
                "abstained": a.abstained,
                "reason": a.reason,
                "citations": Jsonb([dataclasses.asdict(c) for c in a.citations]),
                "prompt_name": prompt.name,
                "prompt_version": prompt.version,
                "prompt_sha256": prompt.sha256,
                "model": a.model,
                "route": a.route,
                "cached": a.cached,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "support": a.support,
                "timings_ms": Jsonb({k: round(v, 2) for k, v in a.timings_ms.items()}),
                "guardrails": Jsonb(a.guardrails),
                "generations": Jsonb(served.get("generations") or {}),
                "context_chunk_ids": chunk_ids,
                "query_id": query_id,
            },
        ).fetchone()
    return int(row[0])
