"""Chat completions against any OpenAI-compatible endpoint, and what ragline asks of a chat model:
pointwise relevance grades for reranking, and questions a passage answers."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from ragline.config import LLMSettings
from ragline.endpoints import Endpoint, endpoint_host, report_call
from ragline.types import CallRecord, ChatModel, Completion, ModelTokenizer, RouteFeatures

log = logging.getLogger(__name__)


class LLMError(RuntimeError):
    """The chat endpoint refused the request, or kept failing after the last retry."""


class LLMUnavailable(LLMError):
    """The chat endpoint could not be reached, timed out, or answered 429/5xx after the last retry
    (or a stream broke off): another model may still answer."""


class LLMMalformedReply(LLMUnavailable):
    """The chat endpoint answered 200 with what is not a chat completion (no choices, a choice
    without a message): a failure of the endpoint, counted by the circuit breaker."""


# Without a tokenizer and without usage from the server, tokens are estimated at 4 characters each
# (OpenAI's rule of thumb for English text).
_CHARS_PER_TOKEN = 4


class ChatClient:
    """A chat model behind /v1/chat/completions (OpenAI, vLLM, Ollama, llama.cpp, ...).

    Transient failures (429, 5xx, connection errors, timeouts) are retried with exponential
    backoff and jitter, and logged; errors name the endpoint and never carry the key. Token use is
    counted from the responses' `usage`. Every call, streamed or not, successful or not, is reported
    once to the call sink of the current context (ragline.endpoints.report_call).
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        model: str,
        api_key: str | None,
        timeout_seconds: float = 60,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        context_window: int | None = None,
        tokenizer: ModelTokenizer | None = None,
    ) -> None:
        self.model = model
        # api_key None means "no key" (local servers): never OPENAI_API_KEY by default, which would
        # send that key to whatever base_url is configured. chat_client() resolves the settings' key.
        self.endpoint = Endpoint(
            base_url,
            api_key,
            error=LLMError,
            unavailable=LLMUnavailable,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            sleep=sleep,
        )
        self.host = endpoint_host(self.endpoint.url)
        self.context_window = context_window  # tokens the model reads and writes; None: unknown
        self.tokenizer = tokenizer  # counts tokens when a server sends no usage
        self.prompt_tokens = 0
        self.completion_tokens = 0
        # One client serves concurrent requests (an API's thread pool): the totals add under a lock.
        self._tokens_lock = threading.Lock()

    @property
    def requests(self) -> int:
        return self.endpoint.requests

    def complete(self, messages: list[dict], *, max_tokens: int = 64, temperature: float = 0.0) -> str:
        """The first choice's text (may be empty if the model said nothing)."""
        return self.chat(messages, max_tokens=max_tokens, temperature=temperature).text

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One completion: the first choice's text with its usage; reported once, success or not.
        `seed` asks the server for reproducible sampling (servers that support it: OpenAI, llama.cpp)."""
        started = time.perf_counter()
        extra: dict[str, Any] = {"response_format": response_format} if response_format is not None else {}
        if seed is not None:
            extra["seed"] = seed
        try:
            response = self._create("chat request", messages, max_tokens, temperature, **extra)
            try:
                choice = response.choices[0]
                text = choice.message.content or ""
                finish = choice.finish_reason
                usage = response.usage
                if usage is not None:
                    prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
            except (AttributeError, IndexError, KeyError, TypeError) as exc:
                what = "no choices" if not getattr(response, "choices", None) else type(exc).__name__
                malformed = f"chat endpoint {self.endpoint.address} sent a malformed reply ({what})"
            else:
                malformed = None
            if malformed is not None:  # raised outside the except clause: no server text rides along
                raise LLMMalformedReply(malformed)
            if usage is None:
                prompt, completion = self._count(messages), self._count_text(text)
        except LLMError as exc:
            self._report(started, 0, 0, error=exc)
            raise
        result = self._completion(text, prompt, completion, started, finish)
        self._report(started, prompt, completion)
        return result

    def stream(
        self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str | Completion]:
        """Text deltas as they arrive, then one final Completion; reported once when the stream ends,
        fails or is closed by the consumer."""
        started = time.perf_counter()
        parts: list[str] = []
        usage: Any = None
        finish: str | None = None
        failure: BaseException | None = None
        try:
            chunks = self._create(
                "chat stream",
                messages,
                max_tokens,
                temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in self._chunks(chunks):
                try:
                    usage = chunk.usage or usage
                    deltas = []
                    for choice in chunk.choices or ():  # the last chunk (usage) has none
                        finish = choice.finish_reason or finish
                        deltas.append(choice.delta.content)
                except (AttributeError, TypeError) as exc:
                    what = type(exc).__name__
                    deltas = None
                if deltas is None:
                    raise LLMMalformedReply(
                        f"chat stream from {self.endpoint.address} sent a malformed chunk ({what})"
                    )
                for delta in deltas:
                    if delta:
                        parts.append(delta)
                        yield delta
        except BaseException as exc:  # GeneratorExit too: the record says the stream was cut short
            failure = exc
            raise
        finally:
            text = "".join(parts)
            if usage is not None:
                prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
            else:
                # Some servers send no usage on a stream even when asked: counted here instead.
                prompt = self._count(messages) if failure is None or parts else 0
                completion = self._count_text(text)
            self._report(started, prompt, completion, error=failure)
        yield self._completion(text, prompt, completion, started, finish)

    def _create(
        self, what: str, messages: list[dict[str, Any]], max_tokens: int, temperature: float, **extra: Any
    ) -> Any:
        return self.endpoint.call(
            what,
            self.endpoint.client.chat.completions.create,
            model=self.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            **extra,
        )

    def _chunks(self, stream: Any) -> Iterator[Any]:
        """The stream's chunks; a stream that breaks off is LLMUnavailable naming the endpoint."""
        import httpx
        import openai

        iterator = iter(stream)
        try:
            while True:
                message = None
                try:
                    chunk = next(iterator)
                except StopIteration:
                    return
                except (openai.APIError, httpx.HTTPError) as exc:
                    message = (
                        f"chat stream from {self.endpoint.address} broke off: {self.endpoint.describe(exc)}"
                    )
                if message is not None:
                    # Raised outside the except clause: the server's text must not ride along as context.
                    raise LLMUnavailable(message)
                yield chunk
        finally:
            # A consumer that stops early closes the connection, so the server stops generating.
            stream.close()

    def _completion(
        self, text: str, prompt: int, completion: int, started: float, finish: str | None
    ) -> Completion:
        with self._tokens_lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
        return Completion(
            text=text,
            model=self.model,
            endpoint=self.host,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=1000 * (time.perf_counter() - started),
            finish_reason=finish,
        )

    def _report(
        self, started: float, prompt: int, completion: int, error: BaseException | None = None
    ) -> None:
        if isinstance(error, GeneratorExit):
            reason: str | None = "stream closed by the caller before it ended"
        else:
            reason = None if error is None else self.endpoint.excerpt(str(error))
        report_call(
            CallRecord(
                kind="chat",
                model=self.model,
                endpoint=self.host,
                prompt_tokens=prompt,
                completion_tokens=completion,
                latency_ms=1000 * (time.perf_counter() - started),
                ok=error is None,
                error=reason,
            )
        )

    def _count_text(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text))
        return -(-len(text) // _CHARS_PER_TOKEN)

    def _count(self, messages: list[dict[str, Any]]) -> int:
        return sum(self._count_text(str(m.get("content") or "")) for m in messages)


class SingleModel:
    """A model selector that always picks the same chat model."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model

    def select(self, features: RouteFeatures) -> ChatModel:
        return self.model


class _Hit(Protocol):
    """A search hit: a (frozen) dataclass instance with at least these fields."""

    @property
    def text(self) -> str: ...

    @property
    def score(self) -> float: ...


H = TypeVar("H", bound=_Hit)

_GRADE_PROMPT = (
    "Question: {query}\nPassage: {passage}\n"
    "Rate from 0 to 10 how well the passage answers the question. Reply with only the number."
)
# A trailing assistant turn primes the answer's form: small models otherwise start a sentence
# ("The passage provides a ...") and never reach the number. Servers that continue it (llama.cpp)
# return "Rating: 7"; those that start a new turn return "7" or "Rating: 7". Both parse.
_GRADE_PRIMER = "Rating:"
_FIRST_INT = re.compile(r"\d+")


def parse_grade(reply: str) -> int | None:
    """The first integer in a reply, clamped to 0..10; None when there is none."""
    match = _FIRST_INT.search(reply)
    return None if match is None else max(0, min(10, int(match.group())))


class LLMReranker:
    """Pointwise reranking: the model grades each hit 0-10 for the query, one request per hit.

    The new score is the grade (-1 when the reply held no number); ties keep the original order.
    With `redact` set (the answer pipeline sets its guardrails' redaction), the query and the
    passage are redacted before they are sent.
    """

    name = "llm"

    def __init__(
        self, client: ChatClient, *, max_chars: int = 1500, redact: Callable[[str], str] | None = None
    ) -> None:
        self.client = client
        self.max_chars = max_chars
        self.redact = redact

    def grade(self, query: str, text: str) -> int:
        passage = text[: self.max_chars]
        if self.redact is not None:
            query, passage = self.redact(query), self.redact(passage)
        reply = self.client.complete(
            [
                {"role": "user", "content": _GRADE_PROMPT.format(query=query, passage=passage)},
                {"role": "assistant", "content": _GRADE_PRIMER},
            ],
            max_tokens=4,
            temperature=0.0,
        )
        grade = parse_grade(reply)
        if grade is None:
            log.warning("LLM reranker: no grade in reply %r; scoring the hit -1", reply[:80])
            return -1
        return grade

    def rerank(self, query: str, hits: Sequence[H], top_n: int | None = None) -> list[H]:
        graded = [(self.grade(query, hit.text), rank, hit) for rank, hit in enumerate(hits)]
        graded.sort(key=lambda g: (-g[0], g[1]))
        out = [dataclasses.replace(hit, score=float(grade)) for grade, _, hit in graded]
        return out if top_n is None else out[:top_n]


_QUESTION_PASSAGE_CHARS = 2000
_QUESTIONS_PROMPT = (
    "Passage: {passage}\n\n"
    "Write {n} different question(s) a user might ask that this passage answers. "
    "Write one question per line, nothing else."
)
_LIST_MARKER = re.compile(
    r"^\s*(?:[-*•]+\s|\(?\d+[.):](?=\s)|q(?:uestion)?\s*\d+\s*[:.)-]|q(?:uestion)?\s*:)\s*", re.IGNORECASE
)


def parse_questions(reply: str, n: int) -> list[str]:
    """One question per line, numbering/bullets stripped; lines ending in '?' if any, at most n."""
    lines = [_LIST_MARKER.sub("", line).strip().strip('"').strip() for line in reply.splitlines()]
    lines = [line for line in lines if line]
    questions = [line for line in lines if line.endswith("?")] or lines
    out: list[str] = []
    for q in questions:
        if q.lower() not in {o.lower() for o in out}:
            out.append(q)
    return out[:n]


def generate_questions(client: ChatClient, passage: str, n: int = 1) -> list[str]:
    """Up to n questions that the passage answers (fewer, possibly none, if the model gives fewer)."""
    if n < 1 or not passage.strip():
        return []
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": _QUESTIONS_PROMPT.format(passage=passage[:_QUESTION_PASSAGE_CHARS], n=n)}
    ]
    reply = client.complete(messages, max_tokens=40 * n, temperature=0.0)
    return parse_questions(reply, n)


def chat_client(settings: LLMSettings, tokenizer: ModelTokenizer | None = None) -> ChatClient | None:
    """The chat client ragline.yaml's llm block describes, or None when no model is configured."""
    if not settings.configured:
        return None
    return ChatClient(
        base_url=settings.base_url,
        model=settings.model,
        api_key=settings.api_key(),
        timeout_seconds=settings.timeout_seconds,
        max_retries=settings.max_retries,
        context_window=settings.context_window,
        tokenizer=tokenizer,
    )
