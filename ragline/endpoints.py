"""OpenAI-compatible endpoints as ragline calls them: the key goes to the configured URL only,
transient failures are retried with backoff, and every failure is described without credentials."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ragline.config import OPENAI_API_URL, is_loopback_url, is_openai_api
from ragline.safe_text import printable, scrub
from ragline.types import CallRecord

log = logging.getLogger(__name__)

T = TypeVar("T")
EXCERPT_CHARS = 300  # of an error body, in an exception message or a log line
MAX_RETRY_AFTER_SECONDS = 300.0  # a longer Retry-After is waited this long, then retried


class RequestTooLarge(Exception):
    """The server refused the request as too large (HTTP 413); a smaller one may pass."""


class Endpoint:
    """One server behind the openai client, with the client's own retries off.

    The openai client also reads OPENAI_BASE_URL, OPENAI_ADMIN_KEY, OPENAI_ORG_ID,
    OPENAI_PROJECT_ID and OPENAI_CUSTOM_HEADERS (whose Authorization beats an explicit key): none
    of them may redirect a request or add a credential, so the URL is always explicit and the
    Authorization header is set, or omitted, on every request.
    """

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        error: type[Exception],
        unavailable: type[Exception] | None = None,
        timeout_seconds: float,
        max_retries: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from openai import Omit, OpenAI

        self.url = (base_url or OPENAI_API_URL).rstrip("/")
        self.error = error
        # Raised instead of `error` when the server stayed unreachable or overloaded to the last retry.
        self.unavailable = unavailable or error
        self._api_key = api_key
        if api_key and urlsplit(self.url).scheme != "https" and not is_loopback_url(self.url):
            raise error(
                f"refusing to send an API key over plain http to {self.address}: "
                "use https, or a server on localhost"
            )
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self._sleep = sleep
        self.client = OpenAI(
            api_key=api_key or "unused",
            admin_api_key="",
            base_url=self.url,
            timeout=timeout_seconds,
            max_retries=0,  # retried in call(), with backoff we can see in the logs
            default_headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        )
        headers: dict[str, Any] = {} if api_key else {"Authorization": Omit()}
        if not is_openai_api(base_url):  # account identifiers are OpenAI's business only
            headers |= {"OpenAI-Organization": Omit(), "OpenAI-Project": Omit()}
        self._headers = headers
        self.requests = 0  # sent, retries included
        self._count = threading.Lock()  # calls may come from several threads at once

    def call(self, what: str, request: Callable[..., T], **kwargs: Any) -> T:
        """`request(**kwargs)` (a method of `self.client`), retried on 429, 5xx, connection errors
        and timeouts, after the server's Retry-After (seconds or an HTTP date) when it sends one,
        else with exponential backoff and jitter. Raises RequestTooLarge on HTTP 413, `self.error`
        naming the endpoint when the server refuses the request, and `self.unavailable` when the
        last retry fails."""
        import openai

        retryable = (
            openai.RateLimitError,
            openai.APIConnectionError,  # APITimeoutError is one
            openai.InternalServerError,
        )
        message = f"{what}: no attempt was made (max_retries < 0)"
        error: type[Exception] = self.error
        for attempt in range(self.max_retries + 1):
            try:
                with self._count:
                    self.requests += 1
                return request(**kwargs, extra_headers=self._headers)
            except retryable as exc:
                failure = self.describe(exc)
                if attempt == self.max_retries:
                    message = f"{what} failed after {attempt + 1} attempts: {failure}"
                    error = self.unavailable
                    break
                delay = retry_after(exc)
                if delay is None:
                    delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
                log.warning(
                    "%s failed (%s); retry %d/%d in %.1fs",
                    what,
                    failure,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
            except openai.APIError as exc:
                message = f"{what} refused: {self.describe(exc)}"
                if getattr(exc, "status_code", None) == 413:
                    # Still this endpoint's own error (an LLM call's caller catches LLMError); the
                    # embedder catches RequestTooLarge to split the batch.
                    error = type("RequestTooLarge", (RequestTooLarge, self.error), {})
                break
        # Raised outside the except clauses: the openai exception, whose text may hold what the
        # server echoed, must not ride along as __context__ or __cause__ (Dagster stores both).
        raise error(message)

    def describe(self, exc: Exception) -> str:
        """The failure in one line: the URL (without credentials), the status and a scrubbed,
        escaped excerpt of the body, or why the server could not be reached."""
        import openai

        request = getattr(exc, "request", None)
        url = self.shown_url(str(request.url) if request is not None else self.url)
        if isinstance(exc, openai.APITimeoutError):
            return f"{url} did not answer within {self.timeout_seconds:g}s"
        if isinstance(exc, openai.APIConnectionError):
            reason = exc.__cause__ or exc.__context__
            return f"cannot reach {url}: {self.excerpt(str(reason) if reason else type(exc).__name__)}"
        if isinstance(exc, openai.APIStatusError):
            return f"{url} answered HTTP {exc.status_code}: {self.excerpt(_error_text(exc.response.text))}"
        return f"{url}: {type(exc).__name__}"

    def excerpt(self, text: str) -> str:
        """Outside text fit for a message: credentials scrubbed before it is cut, then escaped."""
        return printable(scrub(text, [self._api_key]), limit=EXCERPT_CHARS)

    def shown_url(self, url: str) -> str:
        """A URL fit for a message: without credentials, control characters escaped."""
        return printable(scrub(url, [self._api_key]))

    @property
    def address(self) -> str:
        """The endpoint's base URL as messages show it."""
        return self.shown_url(self.url)


def retry_after(exc: Exception) -> float | None:
    """The wait a 429 or 503 asks for in its Retry-After header (delay-seconds or an HTTP date),
    at most MAX_RETRY_AFTER_SECONDS; None when it sends none that can be read."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT by definition
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _error_text(body: str) -> str:
    """OpenAI-style bodies carry {"error": {"message": ...}}: the message, else the whole body."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body
    message = error.get("message") if isinstance(error, dict) else error
    return message if isinstance(message, str) and message else body


# Every model call (chat or embedding, remote or local) is reported here; the cost ledger installs the
# sink that stores it (with the caller: an asset run, a CLI command or an API key). No sink: not stored.
_call_sink: ContextVar[Callable[[CallRecord], None] | None] = ContextVar("ragline_call_sink", default=None)


def report_call(record: CallRecord) -> None:
    """Hand one call's record to the sink installed for this context, if any (never raises for it)."""
    sink = _call_sink.get()
    if sink is None:
        return
    try:
        sink(record)
    except Exception as exc:  # the ledger must never fail the call it records
        log.warning("could not record a %s call to %s: %s", record.kind, record.endpoint, printable(exc, 300))


@contextmanager
def calls_recorded_by(sink: Callable[[CallRecord], None] | None) -> Iterator[None]:
    """Report the calls made inside this block (this thread or task, and threads copying its context)
    to sink."""
    token = _call_sink.set(sink)
    try:
        yield
    finally:
        _call_sink.reset(token)


def endpoint_host(url: str) -> str:
    """host[:port] of a base URL: what a call record names, without scheme, path or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host
