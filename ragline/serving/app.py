"""The HTTP API (`ragline serve`): search and context over what is published, behind API keys with
rate limits and token budgets; health, Prometheus metrics and the on-call board; every request
logged to ragline.api_requests."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import psycopg
import psycopg_pool
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragline.config import ConfigError, ModelPrice, Settings
from ragline.costs import Caller, postgres_sink
from ragline.endpoints import calls_recorded_by
from ragline.retrieval.context import assemble_context, tokenizer_for
from ragline.retrieval.search import Retriever, result_json
from ragline.safe_text import printable, scrub
from ragline.serving.annotate import add_annotation_routes
from ragline.serving.answers import (
    NOTHING_PUBLISHED,
    OPENAI_ROUTES,
    CodedHTTPException,
    add_answer_routes,
    openai_error,
)
from ragline.serving.keys import ApiKey, RequestRecord, log_request, lookup_key, take_rate
from ragline.serving.schemas import (
    ContextRequest,
    ContextResponse,
    ErrorResponse,
    Health,
    SearchRequest,
    SearchResponse,
)
from ragline.storage.db import Database, query
from ragline.types import CallRecord, DatabaseError, EmbeddingError, Filters, RetrievalError, SearchResult

if TYPE_CHECKING:
    from ragline.answer.pipeline import Answerer

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 2.0  # a database that does not hand out a connection by then is not ready
ERRORS = {
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


class BodyTooLarge(HTTPException):
    """The request body exceeds serve.max_body_bytes (FastAPI re-raises HTTPExceptions unchanged)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit:,} bytes")


class ApiMetrics:
    """The Prometheus metrics of one app (a registry of its own, so apps in one process stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ragline_api_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ragline_api_request_seconds",
            "Time from request to the end of the response",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.tokens = Counter(
            "ragline_api_tokens", "Model tokens spent by requests", ["kind"], registry=self.registry
        )
        self.cache_hits = Counter(
            "ragline_api_cache_hits", "Answers served from the cache", registry=self.registry
        )
        self.errors = Counter(
            "ragline_api_errors",
            "Requests that failed on the server's side (5xx)",
            ["route"],
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float, record: RequestRecord) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if record.prompt_tokens:
            self.tokens.labels("prompt").inc(record.prompt_tokens)
        if record.completion_tokens:
            self.tokens.labels("completion").inc(record.completion_tokens)
        if record.cached:
            self.cache_hits.inc()
        if status >= 500:
            self.errors.labels(route).inc()


class RequestLog:
    """ASGI middleware: the body size limit, then metrics and a ragline.api_requests row for every
    request, rejected ones included. The row is written before the response's last byte is sent,
    so a client that has its response can find it logged."""

    def __init__(
        self,
        app: Any,
        *,
        db: Database,
        metrics: ApiMetrics,
        max_body_bytes: int,
        prices: Sequence[ModelPrice] = (),
    ) -> None:
        self.app = app
        self.db = db
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.prices = tuple(prices)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = RequestRecord(method=scope["method"], route=scope["path"])
        scope.setdefault("state", {})["record"] = record
        status = 500
        response_started = False
        logged = False

        async def finish() -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            route_obj = scope.get("route")
            template = getattr(route_obj, "path", None)
            if template is not None:
                record.route = template
            seconds = time.perf_counter() - started
            logged_status = record.status or status
            self.metrics.observe(template or "unmatched", record.method, logged_status, seconds, record)
            if template in ("/healthz", "/metrics") and status < 400:
                return  # probes and scrapes every few seconds are not worth a row each
            try:
                await anyio.to_thread.run_sync(self._write, record, logged_status, 1000 * seconds)
            except Exception as exc:  # the answer stands even if its log row cannot be written
                log.warning("could not log an API request: %s", printable(scrub(str(exc)), 300))

        async def send_logged(message: dict) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await finish()
            await send(message)

        # A streamed response's last event reaches the client before the response's end (an empty
        # last message): a route that streams logs its request before its last events with this.
        scope["state"]["log_now"] = finish
        declared = dict(scope.get("headers") or []).get(b"content-length")
        received = 0

        async def receive_limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            # Model calls the request makes (a search's query embedding) are the API key's, not
            # those of the process that started the server (`ragline serve` runs inside the CLI's
            # ledger); the answer routes install their own, with the same caller.
            with calls_recorded_by(ApiCallSink(self.db, self.prices, record)):
                await self.app(scope, receive_limited, send_logged)
        except BodyTooLarge as exc:
            record.error = exc.detail
            if not response_started:
                await error_response(scope["path"], 413, exc.detail)(scope, receive, send_logged)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            log.exception("API request failed: %s %s", record.method, printable(record.route, 200))
            if not response_started:
                await error_response(scope["path"], 500, "internal error; see the server's log")(
                    scope, receive, send_logged
                )
            else:
                await finish()
        finally:
            if not logged:
                # The client went away mid-response (a streaming client that stops reading after
                # its last event): the response was never finished, but the request is logged
                # with what it spent, even while its task is being cancelled.
                if not response_started:
                    status = 499  # as nginx logs a request its client closed
                record.error = record.error or "the client closed the connection before the response ended"
                with anyio.CancelScope(shield=True):
                    await finish()

    def _write(self, record: RequestRecord, status: int, latency_ms: float) -> None:
        with self.db.pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
            log_request(conn, record, status=status, latency_ms=latency_ms)


class ApiCallSink:
    """Books each model call of a request in llm_calls as the API's, under the request's key (known
    once the key is checked, so read at each call)."""

    def __init__(self, db: Database, prices: Sequence[ModelPrice], record: RequestRecord) -> None:
        self.db = db
        self.prices = prices
        self.record = record

    def __call__(self, call: CallRecord) -> None:
        postgres_sink(self.db, Caller("api", api_key_id=self.record.key_id), self.prices)(call)


def _record(request: Request) -> RequestRecord:
    return request.state.record


def error_response(
    path: str,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    coded: CodedHTTPException | None = None,
) -> JSONResponse:
    """An error body: {"detail": ...}, or OpenAI's {"error": {...}} on the OpenAI-compatible routes
    (with OpenAI's own type and code where it has one)."""
    if path in OPENAI_ROUTES:  # OpenAI's API answers an invalid request 400; its clients expect that
        kind, code = (coded.kind, coded.code) if coded is not None else (None, None)
        return openai_error(400 if status == 422 else status, detail, headers, kind=kind, code=code)
    return JSONResponse({"detail": detail}, status, headers=headers)


def create_app(
    settings: Settings,
    db: Database,
    *,
    retriever: Retriever,
    answerer: Answerer | None = None,
    board: Callable[[], str] | None = None,
    auth: bool = True,
) -> FastAPI:
    """The API over one database and one loaded retriever. board: builds the health board's HTML
    (passed in by `ragline serve`, which reaches Dagster; the core never imports it). answerer: the
    answer pipeline of /v1/answer and /v1/chat/completions (None: they answer 501). auth=False
    serves /v1 without keys (`ragline serve --no-auth`, loopback only)."""
    limits = settings.serve
    metrics = ApiMetrics()
    app = FastAPI(
        title="ragline",
        version="1",
        description="Retrieval over the published corpus: search, context, health, metrics.",
    )
    app.state.metrics = metrics
    app.state.retriever = retriever

    def error(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
        return HTTPException(status, detail, headers=headers)

    def authenticated(request: Request) -> ApiKey | None:
        """The caller's key, checked: known, not revoked, within its token budget and rate."""
        if not auth:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        bearer = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not key.strip():
            raise error(401, "an API key is required: Authorization: Bearer <key>", bearer)
        with db.connection() as conn:
            found = lookup_key(conn, key.strip())
            if found is None:
                raise error(401, "unknown API key", bearer)
            _record(request).key_id = found.key_id
            request.state.key = found
            if found.revoked:
                raise error(403, f"the API key {found.name!r} has been revoked")
            if found.budget_left == 0:
                # OpenAI's shape for a spent quota; x-should-retry: the openai client does not retry it.
                raise CodedHTTPException(
                    429,
                    f"the token budget of key {found.name!r} is spent: {found.tokens_used:,} of "
                    f"{found.token_budget:,} tokens used; ask for a new key or a larger budget",
                    kind="insufficient_quota",
                    code="insufficient_quota",
                    headers={"x-should-retry": "false"},
                )
            wait = take_rate(conn, found)
        if wait > 0:
            raise error(
                429,
                f"rate limit of key {found.name!r} exceeded ({found.rate_per_minute} requests per minute); "
                f"retry in {wait:.1f} s",
                {"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        return found

    keyed = [Depends(authenticated)]  # the /v1 routes; the caller's ApiKey is request.state.key

    def check_limits(body: SearchRequest) -> None:
        if len(body.query) > limits.max_query_chars:
            raise error(422, f"query: at most {limits.max_query_chars:,} characters, got {len(body.query):,}")
        if not body.query.strip():
            raise error(422, "query: the query is empty")
        if body.k > limits.max_k:
            raise error(422, f"k: at most {limits.max_k}, got {body.k}")
        if len(body.where) + len(body.sources) > limits.max_filter_keys:
            raise error(422, f"sources and where: at most {limits.max_filter_keys} filters together")
        known = {s.name for s in settings.sources}
        unknown = sorted(set(body.sources) - known)
        if unknown:
            raise error(422, f"sources: unknown {printable(unknown, 200)}; configured: {sorted(known)}")

    def published_sources() -> int:
        with db.pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
            return int(conn.execute(query("published_source_count")).fetchone()[0])

    def search(body: SearchRequest) -> SearchResult:
        check_limits(body)
        try:
            return retriever.search(
                body.query,
                k=body.k,
                strategy=body.strategy,
                filters=Filters.of(sources=body.sources, metadata=body.where),
                mmr_lambda=body.mmr,
                rerank=body.rerank,
                log=body.log,
            )
        except RetrievalError:
            if published_sources() == 0:  # the server's state, not the request, is at fault
                raise error(503, NOTHING_PUBLISHED) from None
            raise

    @app.post(
        "/v1/search", dependencies=keyed, response_model=SearchResponse, responses=ERRORS, tags=["retrieval"]
    )
    def post_search(body: SearchRequest) -> SearchResponse:
        """The top k chunks for a query, with where each came from (as `ragline search --json`)."""
        return SearchResponse(**result_json(search(body)))

    @app.post(
        "/v1/context",
        dependencies=keyed,
        response_model=ContextResponse,
        responses=ERRORS,
        tags=["retrieval"],
    )
    def post_context(body: ContextRequest) -> ContextResponse:
        """A token-budgeted, cited prompt context for a query (as `ragline context --json`)."""
        if body.budget > limits.max_budget:
            raise error(422, f"budget: at most {limits.max_budget:,} tokens, got {body.budget:,}")
        result = search(body)
        with db.connection() as conn:
            context = assemble_context(
                result.hits,
                budget=body.budget,
                tokenizer=tokenizer_for(body.tokenizer),
                conn=conn,
                neighbours=body.neighbours,
                chunk_set=retriever.chunk_set,
                order=body.order,
            )
        return ContextResponse(**context.as_json(result.query))

    add_answer_routes(
        app,
        settings=settings,
        answerer=answerer,
        keyed=keyed,
        errors=ERRORS,
        nothing_published=lambda: published_sources() == 0,
    )

    add_annotation_routes(app, db=db, keyed=keyed, errors=ERRORS)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
    def healthz() -> JSONResponse:
        """Ready (200) only when the database answers and at least one source has a published
        generation; 503 with the reason otherwise."""
        try:
            published = published_sources()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            reason = f"the database does not answer: {printable(scrub(str(exc)), 200)}"
            return JSONResponse(
                Health(ready=False, database=False, published_sources=0, reason=reason).model_dump(), 503
            )
        if published == 0:
            reason = NOTHING_PUBLISHED
            return JSONResponse(
                Health(ready=False, database=True, published_sources=0, reason=reason).model_dump(), 503
            )
        return JSONResponse(Health(ready=True, database=True, published_sources=published).model_dump())

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text: requests by route and status, latency histogram, tokens, cache hits, errors."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/board", tags=["operations"], response_class=HTMLResponse)
    def health_board() -> HTMLResponse:
        """The on-call health board (as `ragline status --html`)."""
        if board is None:
            raise error(404, "no health board is configured for this server")
        try:
            return HTMLResponse(board())
        except Exception as exc:  # Dagster's instance unreachable, storage missing: say so
            log.warning("health board unavailable: %s", printable(scrub(str(exc)), 300))
            return HTMLResponse(unavailable_board(exc), 503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            if e.get("type") == "json_invalid":
                reason = (e.get("ctx") or {}).get("error", "")
                problems.append(f"the body is not valid JSON: {reason} at character {e['loc'][-1]}")
                continue
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        detail = printable("; ".join(problems), 1000)
        _record(request).error = detail
        return error_response(request.url.path, 422, detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code >= 400:
            _record(request).error = str(exc.detail)
        coded = exc if isinstance(exc, CodedHTTPException) else None
        return error_response(request.url.path, exc.status_code, str(exc.detail), exc.headers, coded)

    def handler(status: int, what: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            detail = f"{what}{printable(scrub(str(exc)).strip(), 500)}"
            _record(request).error = detail
            return error_response(request.url.path, status, detail)

        return handle

    app.add_exception_handler(ConfigError, handler(422, ""))
    app.add_exception_handler(RetrievalError, handler(422, ""))
    app.add_exception_handler(EmbeddingError, handler(503, "the embedding model failed: "))
    app.add_exception_handler(DatabaseError, handler(503, "the database is unavailable: "))
    app.add_exception_handler(psycopg.OperationalError, handler(503, "the database is unavailable: "))
    app.add_exception_handler(psycopg_pool.PoolTimeout, handler(503, "the database is busy: "))
    app.add_middleware(
        RequestLog, db=db, metrics=metrics, max_body_bytes=limits.max_body_bytes, prices=settings.prices
    )
    return app


def unavailable_board(exc: BaseException) -> str:
    """A page that says why the health board cannot be built, instead of an error."""
    import html

    reason = html.escape(printable(scrub(str(exc)), 500))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ragline health board</title></head>"
        "<body><h1>Health board unavailable</h1><p>The Dagster instance could not be read: "
        f"{reason}</p><p>Search and context are served regardless; see /healthz.</p></body></html>"
    )
