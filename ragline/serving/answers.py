"""The answer routes of the HTTP API: /v1/answer (JSON or server-sent events) and an
OpenAI-compatible /v1/chat/completions, both built on the answer pipeline (Answerer), each request's
model calls booked to its API key, its tokens, cost and cache flag on its request log row."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import psycopg
import psycopg_pool
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ragline.answer.answering import Answer, AnswerError
from ragline.config import ConfigError, Settings
from ragline.costs import Caller, price
from ragline.llm import LLMError, LLMUnavailable
from ragline.safe_text import printable, scrub
from ragline.serving.keys import RequestRecord
from ragline.serving.schemas import (
    AnswerRequest,
    AnswerResponse,
    ChatCompletionRequest,
    ChatMessage,
    ErrorResponse,
    OpenAIErrorResponse,
)
from ragline.types import DatabaseError, EmbeddingError, Filters, RetrievalError

if TYPE_CHECKING:
    from ragline.answer.pipeline import Answerer

log = logging.getLogger(__name__)

NOTHING_PUBLISHED = "nothing is published yet: materialize the pipeline (ragline materialize)"
CHAT_MODEL = "ragline"  # the one model name /v1/chat/completions answers to
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/models")  # errors in OpenAI's shape
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>)]+", re.IGNORECASE)
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def public_text(text: str, limit: int = 500) -> str:
    """Outside text fit for an API client: credentials scrubbed, endpoint URLs (the server's
    internal addresses) replaced by '<endpoint>', control characters escaped."""
    return printable(_URL.sub("<endpoint>", scrub(text)), limit)


class CodedHTTPException(HTTPException):
    """An HTTP error that OpenAI's API gives a type and code of its own (model_not_found,
    insufficient_quota): the OpenAI-compatible routes answer with them."""

    def __init__(
        self, status: int, detail: str, *, kind: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, detail, headers=headers)
        self.kind = kind
        self.code = code


def openai_error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    kind: str | None = None,
    code: str | int | None = None,
) -> JSONResponse:
    """An error body as OpenAI's API sends it (its clients read error.message)."""
    kind = kind or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": code or status}}
    return JSONResponse(body, status, headers=headers)


def failure(exc: Exception, nothing_published: Callable[[], bool]) -> HTTPException:
    """The HTTP error of an answer that could not be made (before or while streaming)."""
    detail = public_text(str(exc).strip())
    if isinstance(exc, LLMUnavailable):
        return HTTPException(503, f"the chat model is unavailable: {detail}")
    if isinstance(exc, LLMError):
        return HTTPException(502, f"the chat model failed: {detail}")
    if isinstance(exc, AnswerError):
        return HTTPException(502, detail)
    if isinstance(exc, EmbeddingError):
        return HTTPException(503, f"the embedding model failed: {detail}")
    if isinstance(exc, RetrievalError):
        if nothing_published():
            return HTTPException(503, NOTHING_PUBLISHED)
        return HTTPException(422, detail)
    if isinstance(exc, ConfigError):  # the server's configuration (a prompt file, a model), not the request
        return HTTPException(503, f"the answer pipeline is misconfigured: {detail}")
    if isinstance(exc, DatabaseError | psycopg.OperationalError):
        return HTTPException(503, f"the database is unavailable: {detail}")
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return HTTPException(503, f"the database is busy: {detail}")
    raise exc


def answer_json(a: Answer) -> dict[str, Any]:
    """What a client gets of an Answer: everything but the route's endpoint addresses."""
    out = a.as_dict()
    out["route"] = public_text(a.route, 300) if a.route else None
    return out


def book(record: RequestRecord, a: Answer, settings: Settings) -> None:
    """The answer's model, tokens, cost and cache flag on its request log row (which the key's
    token budget sums)."""
    record.cached = a.cached
    record.prompt_tokens = a.prompt_tokens
    record.completion_tokens = a.completion_tokens
    record.models = [a.model] if a.model else []  # None: abstained before any model call
    if a.cached:
        record.cost = 0.0
    elif a.model and (a.prompt_tokens or a.completion_tokens):
        record.cost = price(a.model, a.prompt_tokens, a.completion_tokens, prices=settings.prices)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def question_of(messages: list[ChatMessage]) -> str:
    """The last user message's text (a list of content parts: its text parts joined)."""
    for m in reversed(messages):
        if m.role != "user":
            continue
        if isinstance(m.content, str):
            return m.content
        parts = [p.get("text", "") for p in m.content or [] if p.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    raise HTTPException(400, "messages: no message with role 'user'; the last user message is the question")


def add_answer_routes(
    app: FastAPI,
    *,
    settings: Settings,
    answerer: Answerer | None,
    keyed: list[Any],
    errors: dict[int | str, dict[str, Any]],
    nothing_published: Callable[[], bool],
) -> None:
    """/v1/answer, /v1/chat/completions and /v1/models on the app (501 without an answerer)."""
    limits = settings.serve
    configured_max = settings.answer.max_tokens
    # Made at the first answer (in the event loop): slots admit answers, threads run them.
    pools: dict[str, anyio.CapacityLimiter] = {}

    def limiter(name: str) -> anyio.CapacityLimiter:
        if name not in pools:
            pools[name] = anyio.CapacityLimiter(limits.max_concurrent_answers)
        return pools[name]

    async def admitted(work: Callable[[], Response]) -> Response:
        """The answer route's response, made on the answers' own threads; 503 with Retry-After
        when max_concurrent_answers are in progress (streams until their last byte)."""
        slots, borrower = limiter("slots"), object()
        try:
            slots.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            raise HTTPException(
                503,
                f"{limits.max_concurrent_answers} answers are in progress (serve.max_concurrent_answers); "
                "retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        try:
            response = await anyio.to_thread.run_sync(work, limiter=limiter("threads"))
        except BaseException:
            slots.release_on_behalf_of(borrower)
            raise
        return _Releasing(response, partial(slots.release_on_behalf_of, borrower))

    def ready() -> Answerer:
        if answerer is None:
            raise HTTPException(
                501, "answers are not served: no chat model is configured (llm: or models: in ragline.yaml)"
            )
        return answerer

    def caller(request: Request) -> Caller:
        key = getattr(request.state, "key", None)
        return Caller("api", api_key_id=None if key is None else key.key_id)

    def budget_left(request: Request) -> int | None:
        key = getattr(request.state, "key", None)
        return None if key is None else key.budget_left

    def check_question(question: str, where: str) -> None:
        if not question.strip():
            raise HTTPException(422, f"{where}: the question is empty")
        if len(question) > limits.max_query_chars:
            raise HTTPException(
                422, f"{where}: at most {limits.max_query_chars:,} characters, got {len(question):,}"
            )
        if "\x00" in question:
            raise HTTPException(422, f"{where}: the question holds a NUL character")

    def run(
        request: Request, question: str, options: dict[str, Any], stream: bool
    ) -> Answer | tuple[tuple[str, Any], Iterator[tuple[str, Any]]]:
        """The answer, or the stream's first event and the rest; errors before the first event are
        HTTP errors with their status."""
        pipeline = ready()
        options = {**options, "budget_left_tokens": budget_left(request)}
        try:
            if not stream:
                return pipeline.answer(question, caller=caller(request), **options)
            events = pipeline.stream(question, caller=caller(request), **options)
            return next(events), events
        except (LLMError, AnswerError, RetrievalError, EmbeddingError, ConfigError) as exc:
            raise failure(exc, nothing_published) from None

    def events_of(
        record: RequestRecord, first: tuple[str, Any], rest: Iterator[tuple[str, Any]]
    ) -> Iterator[tuple[str, Any]]:
        """The answer's events; a failure mid-stream ends it with ("error", HTTPException). Before
        the last event: ("log", None), the moment to log the request (all it spent is known)."""
        try:
            item: tuple[str, Any] | None = first
            while item is not None:
                kind, value = item
                if kind == "answer":
                    book(record, value, settings)
                    yield "log", None
                yield kind, value
                item = next(rest, None)
        except Exception as exc:
            try:
                http = failure(exc, nothing_published)
            except Exception:
                log.exception("an answer stream failed")
                http = HTTPException(500, "internal error; see the server's log")
            record.error = f"{http.status_code} mid-stream: {http.detail}"
            record.status = http.status_code  # the log and the error counter: not the headers' 200
            yield "log", None
            yield "error", http
        finally:
            rest.close()  # a client that went away stops the model's stream

    def streaming(request: Request, events: Iterator[str | None]) -> StreamingResponse:
        """Server-sent events from a synchronous generator (run in the thread pool); None in it
        logs the request there and then, so a client that has the last event finds it logged."""

        threads = limiter("threads")
        end = object()

        async def body() -> AsyncIterator[str]:
            try:
                while True:
                    piece = await anyio.to_thread.run_sync(next, events, end, limiter=threads)
                    if piece is end:
                        break
                    if piece is None:
                        await request.scope["state"]["log_now"]()
                    else:
                        yield piece  # type: ignore[misc]
            finally:
                # A client that went away cancels this task: close the answer's stream now (which
                # closes the model's, so its server stops generating), not whenever it is collected.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(events.close, limiter=threads)

        return StreamingResponse(body(), media_type="text/event-stream", headers=_NO_BUFFERING)

    # -- /v1/answer -------------------------------------------------------------------------------

    @app.post(
        "/v1/answer",
        dependencies=keyed,
        response_model=AnswerResponse,
        responses={
            **errors,
            501: {"model": ErrorResponse},
            502: {"model": ErrorResponse},
            200: {"content": {"text/event-stream": {}}, "description": "the answer, or its events"},
        },
        tags=["answers"],
    )
    async def post_answer(body: AnswerRequest, request: Request) -> Response:
        """An answer with citations, or an abstention. stream=true: server-sent events `token`*,
        `citations`, `answer` (the checked text; replaced=true if it differs from the tokens), `done`;
        a failure after the first event is an `error` event."""
        return await admitted(partial(answer_response, body, request))

    def answer_response(body: AnswerRequest, request: Request) -> Response:
        check_question(body.question, "question")
        if body.k > limits.max_k:
            raise HTTPException(422, f"k: at most {limits.max_k}, got {body.k}")
        if body.rerank:
            raise HTTPException(422, "rerank: answers order passages by support; rerank is for /v1/search")
        known = {s.name for s in settings.sources}
        unknown = sorted(set(body.sources) - known)
        if unknown:
            shown = printable(unknown, 200)
            raise HTTPException(422, f"sources: unknown {shown}; configured: {sorted(known)}")
        options: dict[str, Any] = {
            "k": body.k,
            "strategy": body.strategy,
            "filters": Filters.of(sources=body.sources, metadata=body.where),
            "mmr_lambda": body.mmr,
            "log": body.log,
            "max_tokens": min(body.max_tokens or configured_max, configured_max),
        }
        if body.temperature is not None:
            options["temperature"] = body.temperature
        record: RequestRecord = request.state.record
        result = run(request, body.question, options, body.stream)
        if isinstance(result, Answer):
            book(record, result, settings)
            return JSONResponse(answer_json(result))

        def stream() -> Iterator[str | None]:
            for kind, value in events_of(record, *result):
                if kind == "log":
                    yield None
                elif kind == "token":
                    yield sse("token", {"text": value})
                elif kind == "answer":
                    yield sse("citations", {"citations": [c for c in answer_json(value)["citations"]]})
                    yield sse("answer", answer_json(value))
                    yield sse("done", {})
                else:
                    yield sse("error", {"status": value.status_code, "detail": value.detail})

        return streaming(request, stream())

    # -- /v1/chat/completions ---------------------------------------------------------------------

    @app.post(
        "/v1/chat/completions",
        dependencies=keyed,
        responses={
            400: {"model": OpenAIErrorResponse},
            401: {"model": OpenAIErrorResponse},
            404: {"model": OpenAIErrorResponse},
            429: {"model": OpenAIErrorResponse},
            502: {"model": OpenAIErrorResponse},
            503: {"model": OpenAIErrorResponse},
        },
        tags=["answers"],
    )
    async def post_chat(body: ChatCompletionRequest, request: Request) -> Response:
        """OpenAI-compatible chat over the corpus, streaming too: model "ragline"; the last user
        message is the question (earlier messages are not read); the reply cites passages as [n],
        listed in the extension field `citations`."""
        return await admitted(partial(chat_response, body, request))

    def chat_response(body: ChatCompletionRequest, request: Request) -> Response:
        if body.model != CHAT_MODEL:
            name = printable(body.model, 80)
            raise CodedHTTPException(
                404,
                f"the model '{name}' does not exist; this server has '{CHAT_MODEL}'",
                kind="invalid_request_error",
                code="model_not_found",
            )
        question = question_of(body.messages)
        check_question(question, "messages")
        requested = body.max_completion_tokens or body.max_tokens or configured_max
        options: dict[str, Any] = {"max_tokens": min(requested, configured_max)}
        if body.temperature is not None:
            options["temperature"] = body.temperature
        record: RequestRecord = request.state.record
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        result = run(request, question, options, body.stream)
        if isinstance(result, Answer):
            book(record, result, settings)
            message = {"role": "assistant", "content": result.text}
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": CHAT_MODEL,
                    "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(result)}],
                    "usage": _usage(result),
                    **_extension(result),
                }
            )
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": CHAT_MODEL,
                "choices": [choice],
                **extra,
            }
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        def stream() -> Iterator[str | None]:
            yield chunk({"role": "assistant", "content": ""})
            sent: list[str] = []
            for kind, value in events_of(record, *result):
                if kind == "log":
                    yield None
                elif kind == "token":
                    sent.append(value)
                    yield chunk({"content": value})
                elif kind == "answer":
                    finish = _finish_reason(value)
                    if not sent:  # an abstention or a cache hit: the whole text at once
                        yield chunk({"content": value.text})
                    elif value.replaced:
                        # The stream stopped where the checks would change it (a blocklisted term):
                        # a repair that keeps what went out sends the rest; anything else (a
                        # refusal, a cut to length) cannot be spelled as more deltas.
                        spelled = "".join(sent).lstrip()
                        if not value.text.startswith(spelled):
                            finish = "content_filter"
                        elif rest := value.text[len(spelled) :]:
                            yield chunk({"content": rest})
                    yield chunk({}, finish, **_extension(value))
                    if include_usage:
                        usage = {
                            "id": completion_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": CHAT_MODEL,
                            "choices": [],
                            "usage": _usage(value),
                        }
                        yield f"data: {json.dumps(usage)}\n\n"
                else:
                    error = {"message": value.detail, "type": "server_error", "code": value.status_code}
                    yield f"data: {json.dumps({'error': error})}\n\n"
            yield "data: [DONE]\n\n"

        return streaming(request, stream())

    @app.get("/v1/models", dependencies=keyed, tags=["answers"])
    def list_models() -> dict[str, Any]:
        """The one model of /v1/chat/completions, as OpenAI's model list."""
        return {
            "object": "list",
            "data": [{"id": CHAT_MODEL, "object": "model", "created": 0, "owned_by": "ragline"}],
        }


_NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _Releasing(Response):
    """A response that frees its answer slot once sent (a stream: after its last byte), or when
    sending it fails or is cancelled."""

    def __init__(self, inner: Response, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release
        self.status_code = inner.status_code
        self.background = inner.background
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()


def _finish_reason(a: Answer) -> str:
    refused = a.guardrails.get("output", {}).get("action") == "refused"
    if refused:
        return "content_filter"
    return "length" if a.finish_reason == "length" else "stop"


def _usage(a: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
    }


def _extension(a: Answer) -> dict[str, Any]:
    """ragline's fields beside OpenAI's (the openai client keeps them in model_extra)."""
    full = answer_json(a)
    return {
        "citations": full["citations"],
        "ragline": {
            k: full[k]
            for k in (
                "abstained",
                "reason",
                "cached",
                "replaced",
                "text",
                "prompt",
                "model",
                "route",
                "guardrails",
                "answer_id",
            )
        },
    }
