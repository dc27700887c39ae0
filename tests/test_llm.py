"""ragline.llm against a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M-Instruct."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ragline.llm import ChatClient, LLMError, LLMReranker, generate_questions, parse_grade, parse_questions
from tests.llm_server import local_llm_server


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    text: str
    score: float


PASSAGES = [
    "Paris is the capital and most populous city of France.",
    "The mitochondria is the powerhouse of the cell.",
    "France borders Spain, Italy, Germany, Belgium and Switzerland.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Bananas are rich in potassium.",
    "PostgreSQL is an open-source relational database.",
]


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with local_llm_server() as url:
        yield url


@pytest.fixture
def client(llm_url: str) -> ChatClient:
    return ChatClient(base_url=llm_url, model="SmolLM2-135M-Instruct", api_key=None, timeout_seconds=30)


def test_complete_returns_text_and_counts_tokens(client: ChatClient) -> None:
    text = client.complete([{"role": "user", "content": "Say hello."}], max_tokens=16)
    assert text.strip()
    assert client.requests == 1
    assert client.prompt_tokens > 0
    assert 0 < client.completion_tokens <= 16
    client.complete([{"role": "user", "content": "Say goodbye."}], max_tokens=8)
    assert client.requests == 2


def test_rerank_returns_a_permutation_with_grades(client: ChatClient) -> None:
    hits = [Hit(i, text, 1.0 - i / 10) for i, text in enumerate(PASSAGES)]
    reranker = LLMReranker(client)
    assert reranker.name == "llm"
    out = reranker.rerank("What is the capital of France?", hits)
    assert client.requests == len(hits)  # one grading request per hit
    assert sorted(h.chunk_id for h in out) == [h.chunk_id for h in hits]
    assert all(h.score == int(h.score) and -1 <= h.score <= 10 for h in out)
    by_id = {h.chunk_id: h for h in hits}
    assert all(h.text == by_id[h.chunk_id].text for h in out)
    # sorted by grade desc, ties in the original order
    keys = [(-h.score, h.chunk_id) for h in out]
    assert keys == sorted(keys)

    top = reranker.rerank("What is the capital of France?", hits, top_n=3)
    assert [h.chunk_id for h in top] == [h.chunk_id for h in out[:3]]  # temperature 0: same grades


def test_rerank_ties_and_unparseable_replies(caplog: pytest.LogCaptureFixture) -> None:
    """Grades parsed from canned replies (no server): ties keep the original order, no number -> -1."""
    client = ChatClient(base_url="http://127.0.0.1:9/v1", model="m", api_key=None)
    replies = iter(["Rating: 3", "no idea", "Rating: 7/10", "3.5", "Rating: 12"])
    client.complete = lambda messages, **kw: next(replies)  # type: ignore[method-assign]
    hits = [Hit(i, f"passage {i}", 0.0) for i in range(5)]
    out = LLMReranker(client).rerank("q", hits, top_n=4)
    assert [(h.chunk_id, h.score) for h in out] == [(4, 10.0), (2, 7.0), (0, 3.0), (3, 3.0)]
    assert "no grade in reply 'no idea'" in caplog.text
    assert parse_grade("Rating:") is None


def test_generate_questions(client: ChatClient) -> None:
    for n in (1, 3):
        questions = generate_questions(client, PASSAGES[3], n=n)
        assert 1 <= len(questions) <= n
        assert all(isinstance(q, str) and q.strip() for q in questions)
    assert generate_questions(client, "   ", n=2) == []


def test_parse_questions() -> None:
    reply = "Here you go:\n1. What is X?\n2) Why is Y?\n\n- How does Z work?\nQ4: Who?\n"
    assert parse_questions(reply, 3) == ["What is X?", "Why is Y?", "How does Z work?"]
    assert parse_questions("1. The tower's height\n\n", 2) == ["The tower's height"]
    assert parse_questions("\n\n", 2) == []


def test_retries_with_growing_backoff_then_llm_error() -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []
    client = ChatClient(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        api_key=None,
        timeout_seconds=5,
        max_retries=2,
        sleep=delays.append,
    )
    started = time.perf_counter()
    with pytest.raises(LLMError, match="after 3 attempts"):
        client.complete([{"role": "user", "content": "hi"}])
    assert client.requests == 3
    assert len(delays) == 2 and 0 < delays[0] < delays[1]
    assert time.perf_counter() - started < 5  # the fake sleep really replaced the waits
