"""Chat completions against any OpenAI-compatible endpoint, and what ragline asks of a chat model:
pointwise relevance grades for reranking, and questions a passage answers."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from ragline.config import LLMSettings
from ragline.endpoints import Endpoint

log = logging.getLogger(__name__)


class LLMError(RuntimeError):
    """The chat endpoint refused the request, or kept failing after the last retry."""


class ChatClient:
    """A chat model behind /v1/chat/completions (OpenAI, vLLM, Ollama, llama.cpp, ...).

    Transient failures (429, 5xx, connection errors, timeouts) are retried with exponential
    backoff and jitter, and logged; errors name the endpoint and never carry the key. Token use is
    counted from the responses' `usage`.
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
    ) -> None:
        self.model = model
        # api_key None means "no key" (local servers): never OPENAI_API_KEY by default, which would
        # send that key to whatever base_url is configured. chat_client() resolves the settings' key.
        self.endpoint = Endpoint(
            base_url,
            api_key,
            error=LLMError,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            sleep=sleep,
        )
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @property
    def requests(self) -> int:
        return self.endpoint.requests

    def complete(self, messages: list[dict], *, max_tokens: int = 64, temperature: float = 0.0) -> str:
        """The first choice's text (may be empty if the model said nothing)."""
        response = self.endpoint.call(
            "chat request",
            self.endpoint.client.chat.completions.create,
            model=self.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        usage = response.usage
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens or 0
            self.completion_tokens += usage.completion_tokens or 0
        if not response.choices:
            raise LLMError(f"chat endpoint {self.endpoint.address} returned no choices")
        return response.choices[0].message.content or ""


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
    """

    name = "llm"

    def __init__(self, client: ChatClient, *, max_chars: int = 1500) -> None:
        self.client = client
        self.max_chars = max_chars

    def grade(self, query: str, text: str) -> int:
        passage = text[: self.max_chars]
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


def chat_client(settings: LLMSettings) -> ChatClient | None:
    """The chat client ragline.yaml's llm block describes, or None when no model is configured."""
    if not settings.configured:
        return None
    return ChatClient(
        base_url=settings.base_url,
        model=settings.model,
        api_key=settings.api_key(),
        timeout_seconds=settings.timeout_seconds,
        max_retries=settings.max_retries,
    )
