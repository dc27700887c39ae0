"""Answers over HTTP: /v1/answer (JSON and server-sent events) and /v1/chat/completions driven by
the real `openai` client, against `ragline serve`'s app on a real uvicorn server and llama.cpp
serving SmolLM2-135M: streaming, cache hits at 0 tokens, the request log and the cost ledger per
API key, token budgets, and bad bodies."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from ragline.answer.pipeline import build_answerer
from ragline.cli import build_api
from ragline.config import CacheSettings, EscalationRule, LLMSettings, ModelSettings, RoutingSettings
from ragline.retrieval.search import build_retriever
from ragline.serving.answers import failure
from ragline.serving.app import create_app
from ragline.storage.db import Database
from ragline.types import DatabaseError
from tests.conftest import EXAMPLES, drop_database, fresh_database, local_embedder, run, write_project
from tests.llm_server import MODEL_NAME, local_llm_server
from tests.openai_server import EmbeddingsServer
from tests.test_serving import bearer, new_key, rows, serving

VACATION = "How many vacation days do I get per year?"
EXPENSES = "How do I get my travel expenses reimbursed?"
PRICES = {MODEL_NAME: {"input_per_1m": 2.0, "output_per_1m": 8.0}}


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    """This module's own llama.cpp server (not the session's): SmolLM2's exact replies, which these
    tests depend on, change with what a server already holds in its prompt cache."""
    with local_llm_server(n_threads=1) as url:
        yield url


@pytest.fixture(scope="module")
def project(
    server_url: str, tmp_path_factory: pytest.TempPathFactory, llm_url: str
) -> Iterator[dict[str, Any]]:
    """Two handbook pages materialized in a fresh database; the llm: block is llama.cpp on loopback."""
    root = tmp_path_factory.mktemp("answer-api")
    folder = root / "corpus" / "handbook"
    folder.mkdir(parents=True)
    for name in ("paid-time-off.md", "expenses-and-travel.md"):
        shutil.copy(EXAMPLES / "handbook" / name, folder / name)
    name, url = fresh_database(server_url)
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", url)
    settings = write_project(
        root,
        [{"name": "handbook", "root": "corpus/handbook", "chunking": {"strategy": "markdown"}}],
        llm={"model": MODEL_NAME, "base_url": llm_url, "context_window": 2048},
        # A short answer from a small context: SmolLM2 on one thread answers in a few seconds.
        answer={"max_tokens": 24, "context_tokens": 300},
        prices=PRICES,
    )
    run(settings, quality=False)
    app = build_api(settings)
    with serving(app) as base:
        yield {"settings": settings, "url": url, "api": base}
    mp.undo()
    drop_database(server_url, name)


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream."""
    events, event, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif not line and event is not None:
            events.append((event, json.loads("\n".join(data))))
            event, data = None, []
    return events


@contextlib.contextmanager
def scripted_api(project: dict[str, Any], server: EmbeddingsServer, **blocks: Any) -> Iterator[str]:
    """The API (no auth) over the project's database with a scripted chat server as its llm:
    block, some other blocks replaced; yields its base URL."""
    llm = LLMSettings(model="scripted", base_url=server.base_url, max_retries=0)
    settings = dataclasses.replace(project["settings"], llm=llm, **blocks)
    with Database(project["url"], max_size=4) as db:
        retriever = build_retriever(settings, db, local_embedder())
        answerer = build_answerer(settings, db, retriever=retriever)
        with serving(create_app(settings, db, retriever=retriever, answerer=answerer, auth=False)) as api:
            yield api


def client(project: dict[str, Any], key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{project['api']}/v1", api_key=key, max_retries=0, timeout=120)


def test_openai_client_streams_a_cited_answer_and_the_repeat_is_a_cache_hit(project) -> None:
    key = new_key(project, "chat")
    ask = {"model": "ragline", "messages": [{"role": "user", "content": VACATION}]}
    first = list(
        client(project, key).chat.completions.create(
            **ask, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [c.choices[0].delta.content for c in first if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1  # token by token, not one block
    final = next(c for c in first if c.choices and c.choices[0].finish_reason)
    assert final.choices[0].finish_reason == "stop"
    extra = final.model_extra
    assert extra["ragline"]["cached"] is False and extra["ragline"]["model"] == MODEL_NAME
    assert extra["ragline"]["text"] == "".join(deltas).strip() or extra["ragline"]["replaced"]
    assert all(c["document"].startswith("handbook:") for c in extra["citations"])
    usage = first[-1].usage
    assert first[-1].choices == [] and usage.prompt_tokens > 50 and usage.completion_tokens > 0

    again = client(project, key).chat.completions.create(**ask)  # the same request, not streamed
    assert again.usage.total_tokens == 0 and again.model_extra["ragline"]["cached"] is True
    assert again.choices[0].message.content == extra["ragline"]["text"]
    assert again.model == "ragline" and again.object == "chat.completion"

    # The request log and the ledger: the key's rows, its tokens, cost and cache flag.
    [(key_id,)] = rows(project["url"], "SELECT key_id FROM ragline.api_keys WHERE name = 'chat'")
    logged = rows(
        project["url"],
        "SELECT status, models, prompt_tokens, completion_tokens, cost, cached FROM ragline.api_requests "
        f"WHERE key_id = {key_id} ORDER BY request_id",
    )
    cost = (usage.prompt_tokens * 2.0 + usage.completion_tokens * 8.0) / 1e6
    assert logged[0][:4] == (200, [MODEL_NAME], usage.prompt_tokens, usage.completion_tokens)
    assert logged[0][4] == pytest.approx(cost) and logged[0][5] is False
    assert logged[1] == (200, [MODEL_NAME], 0, 0, 0.0, True)
    calls = rows(
        project["url"],
        "SELECT caller_kind, api_key_id, endpoint, prompt_tokens, cost_usd, cached FROM ragline.llm_calls "
        "WHERE kind = 'chat' ORDER BY id",
    )
    assert [c[:2] for c in calls] == [("api", key_id), ("api", key_id)]  # not booked as the CLI's
    assert calls[0][3] == usage.prompt_tokens and float(calls[0][4]) == pytest.approx(cost)
    assert calls[1][2:4] == ("cache", 0) and calls[1][4] == 0 and calls[1][5] is True
    embeddings = rows(
        project["url"],
        "SELECT DISTINCT caller_kind FROM ragline.llm_calls WHERE kind = 'embedding' AND asset_key IS NULL",
    )
    assert embeddings == [("api",)]
    metrics = httpx.get(f"{project['api']}/metrics").text
    assert "ragline_api_cache_hits_total 1.0" in metrics
    assert f'ragline_api_tokens_total{{kind="prompt"}} {float(usage.prompt_tokens)}' in metrics


def test_answer_streams_tokens_then_citations_then_the_checked_answer(project) -> None:
    key = new_key(project, "sse")
    body = {"question": EXPENSES, "stream": True}
    url = f"{project['api']}/v1/answer"
    with httpx.stream("POST", url, json=body, headers=bearer(key), timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    kinds = [e for e, _ in events]
    assert kinds[0] == "token" and kinds[-3:] == ["citations", "answer", "done"]
    assert set(kinds[:-3]) == {"token"}
    done = events[-2][1]
    assert done["cached"] is False and done["prompt"] == "answer@1" and done["completion_tokens"] > 0
    assert done["text"] == "".join(d["text"] for e, d in events if e == "token").strip() or done["replaced"]
    assert events[-3][1]["citations"] == done["citations"]

    cached = httpx.post(
        f"{project['api']}/v1/answer", json={"question": EXPENSES}, headers=bearer(key), timeout=120
    )
    assert cached.status_code == 200, cached.text
    if done["finish_reason"] == "length":  # cut at max_tokens: not cached, asked again
        assert cached.json()["cached"] is False
        return
    assert cached.json()["cached"] is True and cached.json()["prompt_tokens"] == 0
    assert cached.json()["text"] == done["text"]
    # The cache hit streamed: no tokens, the answer at once.
    with httpx.stream("POST", url, json=body, headers=bearer(key), timeout=60) as r:
        assert [e for e, _ in sse_events(r)] == ["citations", "answer", "done"]


def test_spent_budget_answers_429_on_both_routes(project) -> None:
    key = new_key(project, "budget", "--token-budget", "20")
    first = httpx.post(
        f"{project['api']}/v1/answer",
        json={"question": "Can I carry unused vacation days over?", "max_tokens": 4},
        headers=bearer(key),
        timeout=120,
    )
    assert first.status_code == 200 and first.json()["prompt_tokens"] > 20
    again = httpx.post(f"{project['api']}/v1/answer", json={"question": VACATION}, headers=bearer(key))
    assert again.status_code == 429 and "token budget" in again.json()["detail"]
    # OpenAI's shape for a spent quota, which its client does not retry (it would retry a rate limit).
    patient = openai.OpenAI(base_url=f"{project['api']}/v1", api_key=key, max_retries=2, timeout=120)
    with pytest.raises(openai.RateLimitError, match="token budget") as raised:
        patient.chat.completions.create(model="ragline", messages=[{"role": "user", "content": VACATION}])
    assert raised.value.code == "insufficient_quota" and raised.value.type == "insufficient_quota"
    refused = rows(
        project["url"],
        "SELECT r.status FROM ragline.api_requests r JOIN ragline.api_keys k USING (key_id) "
        "WHERE k.name = 'budget' AND r.route = '/v1/chat/completions'",
    )
    assert refused == [(429,)]


def test_bad_bodies_answer_4xx_never_500(project) -> None:
    key = new_key(project, "bad")
    chat = client(project, key)
    ok = [{"role": "user", "content": VACATION}]
    with pytest.raises(openai.NotFoundError, match="does not exist") as missing:
        chat.chat.completions.create(model="gpt-4o", messages=ok)
    assert missing.value.code == "model_not_found" and missing.value.type == "invalid_request_error"
    for messages, match in [
        ([], "messages"),
        ([{"role": "system", "content": "hi"}], "no message with role 'user'"),
        ([{"role": "user", "content": "  "}], "question is empty"),
        ([{"role": "wizard", "content": "x"}], "role"),
        ([{"role": "user", "content": "x" * 3000}], "at most 2,000 characters"),
    ]:
        with pytest.raises(openai.BadRequestError, match=match):
            chat.chat.completions.create(model="ragline", messages=messages)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        chat.chat.completions.create(model="ragline", messages=ok, temperature=7)
    with pytest.raises(openai.AuthenticationError):
        client(project, "rl_" + "x" * 43).chat.completions.create(model="ragline", messages=ok)
    raw = httpx.post(
        f"{project['api']}/v1/chat/completions",
        content=b'{"model": "ragline", "messages": [',
        headers={**bearer(key), "Content-Type": "application/json"},
    )
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in raw.json()["error"]["message"]

    for body, status in [
        ({}, 422),
        ({"question": ""}, 422),
        ({"question": "   "}, 422),
        ({"question": VACATION, "k": 10_000}, 422),
        ({"question": VACATION, "rerank": True}, 422),
        ({"question": VACATION, "top_k": 3}, 422),
        ({"question": VACATION, "stream": "maybe"}, 422),
        ({"question": VACATION, "max_tokens": 0}, 422),
        ({"question": VACATION, "sources": ["nope"]}, 422),
        ({"question": "vacation\x00days"}, 422),
    ]:
        r = httpx.post(f"{project['api']}/v1/answer", json=body, headers=bearer(key))
        assert r.status_code == status, (body, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    statuses = rows(project["url"], "SELECT DISTINCT status FROM ragline.api_requests WHERE status >= 500")
    assert statuses == []


def test_models_list_names_the_one_model(project) -> None:
    key = new_key(project, "lister")
    assert [m.id for m in client(project, key).models.list()] == ["ragline"]


def test_a_model_failing_mid_stream_ends_the_stream_with_an_error_event(project) -> None:
    """Tokens went out, then the model's server failed: both routes end with an error event (not a
    dropped connection), and the request log row says so."""
    reply = "You get twenty five vacation days per year [1] and more."
    with EmbeddingsServer(chat_replies=[reply], stream_error_after=3) as crashing:
        settings = dataclasses.replace(
            project["settings"],
            llm=LLMSettings(model="crashing", base_url=crashing.base_url, max_retries=0),
            cache=CacheSettings(enabled=False),
        )
        with Database(project["url"], max_size=4) as db:
            retriever = build_retriever(settings, db, local_embedder())
            answerer = build_answerer(settings, db, retriever=retriever)
            app = create_app(settings, db, retriever=retriever, answerer=answerer, auth=False)
            with serving(app) as api:
                body = {"question": VACATION, "stream": True}
                with httpx.stream("POST", f"{api}/v1/answer", json=body, timeout=60) as r:
                    events = sse_events(r)
                chat = openai.OpenAI(base_url=f"{api}/v1", api_key="unused", max_retries=0)
                ask = [{"role": "user", "content": VACATION}]
                received = []
                with pytest.raises(openai.APIError, match="broke off"):
                    for chunk in chat.chat.completions.create(model="ragline", messages=ask, stream=True):
                        received.append(chunk.choices[0].delta.content)
                metrics = httpx.get(f"{api}/metrics").text
    assert [e for e, _ in events] == ["token"] * 3 + ["error"]
    assert events[-1][1]["status"] == 503 and "broke off" in events[-1][1]["detail"]
    assert "".join(received) == "You get twenty "
    logged = rows(
        project["url"],
        "SELECT status, error FROM ragline.api_requests WHERE error LIKE '%mid-stream%' ORDER BY request_id",
    )
    # Logged and counted with the stream's in-band status, not the 200 its headers went out with.
    assert [s for s, _ in logged] == [503, 503]
    assert "503 mid-stream: the chat model is unavailable" in logged[0][1]
    for route in ("/v1/answer", "/v1/chat/completions"):
        assert f'ragline_api_errors_total{{route="{route}"}} 1.0' in metrics
    # A database failure mid-stream is a 503 error event too, not a 500 with a traceback.
    mid = failure(DatabaseError("connection refused"), lambda: False)
    assert mid.status_code == 503 and "database is unavailable" in mid.detail


def test_a_client_that_leaves_mid_stream_is_logged_and_the_model_call_closed(project) -> None:
    key = new_key(project, "leaver")
    body = {"question": "What is the nightly hotel cap for a business trip to London?", "stream": True}
    url = f"{project['api']}/v1/answer"
    with httpx.stream("POST", url, json=body, headers=bearer(key), timeout=60) as r:
        first = next(r.iter_lines())
    assert first == "event: token"  # then the connection is closed, mid-answer
    logged: list[tuple] = []
    for _ in range(300):  # the server notices at its next write; wait for the row, at most 30 s
        logged = rows(
            project["url"],
            "SELECT r.status, r.error FROM ragline.api_requests r JOIN ragline.api_keys k USING (key_id) "
            "WHERE k.name = 'leaver'",
        )
        if logged:
            break
        time.sleep(0.1)
    assert logged == [(200, "the client closed the connection before the response ended")]
    # The model's call was closed and recorded as the key's (ChatClient reports a closed stream).
    calls = rows(
        project["url"],
        "SELECT c.api_key_id FROM ragline.llm_calls c JOIN ragline.api_keys k ON k.key_id = c.api_key_id "
        "WHERE k.name = 'leaver' AND c.kind = 'chat'",
    )
    assert len(calls) == 1


def test_the_keys_budget_left_reaches_the_router(project) -> None:
    """A key with less budget left than routing.min_budget_tokens is not escalated, and the route
    the client sees says why."""
    with EmbeddingsServer(chat_replies=["Twenty five days [1]."]) as small, EmbeddingsServer() as large:
        settings = dataclasses.replace(
            project["settings"],
            models=(
                ModelSettings(name="small", model="s", base_url=small.base_url),
                ModelSettings(name="large", model="l", base_url=large.base_url),
            ),
            routing=RoutingSettings(
                escalate=(EscalationRule(model="large", question_tokens_above=0),), min_budget_tokens=5000
            ),
            cache=CacheSettings(enabled=False),
        )
        with Database(project["url"], max_size=4) as db:
            key = new_key(project, "frugal", "--token-budget", "1000")
            retriever = build_retriever(settings, db, local_embedder())
            app = create_app(
                settings, db, retriever=retriever, answerer=build_answerer(settings, db, retriever=retriever)
            )
            with serving(app) as api:
                r = httpx.post(
                    f"{api}/v1/answer", json={"question": VACATION}, headers=bearer(key), timeout=60
                )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "s" and large.requests == []
    assert (
        "not escalated to large" in r.json()["route"]
        and "budget_left_tokens 1000 < 5000" in r.json()["route"]
    )


def test_a_repaired_stream_reaches_the_openai_client_whole(project) -> None:
    """blocklist: repair: the stream stops at the term; the chat client then gets the rest of the
    repaired text as one more delta (finish "stop"), and /v1/answer's answer event carries it."""
    reply = "Ask Project Falcon about your twenty five vacation days [1]."
    repaired = "Ask [removed] about your twenty five vacation days [1]."
    guardrails = dataclasses.replace(
        project["settings"].guardrails,
        blocklist=("Project Falcon",),
        actions=dataclasses.replace(project["settings"].guardrails.actions, blocklist="repair"),
    )
    with (
        EmbeddingsServer(chat_replies=[reply]) as scripted,
        scripted_api(project, scripted, cache=CacheSettings(enabled=False), guardrails=guardrails) as api,
    ):
        chat = openai.OpenAI(base_url=f"{api}/v1", api_key="unused", max_retries=0)
        ask = [{"role": "user", "content": VACATION}]
        chunks = list(chat.chat.completions.create(model="ragline", messages=ask, stream=True))
        with httpx.stream(
            "POST", f"{api}/v1/answer", json={"question": VACATION, "stream": True}, timeout=60
        ) as r:
            events = sse_events(r)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == repaired and "Falcon" not in "".join(deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    tokens = "".join(e["text"] for kind, e in events if kind == "token")
    answer = next(e for kind, e in events if kind == "answer")
    assert tokens == "Ask " and answer["text"] == repaired and answer["replaced"] is True


def test_an_answer_cut_at_max_tokens_says_length_and_is_not_cached(project) -> None:
    """The model stopped at max_tokens: finish_reason "length" on the JSON and the streamed chat
    response and on /v1/answer; the stub is not cached, so asking again calls the model again."""
    question = "How many vacation days do I get per year, in short?"
    ask = [{"role": "user", "content": question}]
    with (
        EmbeddingsServer(chat_replies=["You get twenty five"], finish_reason="length") as scripted,
        scripted_api(project, scripted) as api,
    ):
        chat = openai.OpenAI(base_url=f"{api}/v1", api_key="unused", max_retries=0)
        whole = chat.chat.completions.create(model="ragline", messages=ask)
        chunks = list(chat.chat.completions.create(model="ragline", messages=ask, stream=True))
        answered = httpx.post(f"{api}/v1/answer", json={"question": question}, timeout=60).json()
        calls = len(scripted.requests)
    assert whole.choices[0].finish_reason == "length"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert answered["finish_reason"] == "length" and answered["cached"] is False
    assert not whole.model_extra["ragline"]["cached"] and calls == 3


def test_answers_have_their_own_slots_and_one_too_many_gets_503(project) -> None:
    """serve.max_concurrent_answers: 1 and one answer held at the model: a second answer gets 503
    with Retry-After on both routes, while /healthz and /v1/search still answer; once the first is
    done the slot is free again."""
    gate = threading.Event()
    serve = dataclasses.replace(project["settings"].serve, max_concurrent_answers=1)
    with (
        EmbeddingsServer(chat_replies=["Twenty five days [1]."], chat_gate=gate) as scripted,
        scripted_api(project, scripted, serve=serve, cache=CacheSettings(enabled=False)) as api,
    ):
        held: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: held.append(
                httpx.post(f"{api}/v1/answer", json={"question": VACATION}, timeout=60)
            )
        )
        first.start()
        while not scripted.requests:  # the first answer is at the model (not a timing: a wait)
            time.sleep(0.02)
        busy = httpx.post(f"{api}/v1/answer", json={"question": EXPENSES}, timeout=30)
        chat = httpx.post(
            f"{api}/v1/chat/completions",
            json={"model": "ragline", "messages": [{"role": "user", "content": EXPENSES}]},
            timeout=30,
        )
        health = httpx.get(f"{api}/healthz", timeout=30)
        search = httpx.post(f"{api}/v1/search", json={"query": EXPENSES, "k": 2}, timeout=30)
        gate.set()
        first.join()
        again = httpx.post(f"{api}/v1/answer", json={"question": EXPENSES}, timeout=60)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert "max_concurrent_answers" in busy.json()["detail"]
    assert chat.status_code == 503 and chat.json()["error"]["type"] == "server_error"
    assert health.status_code == 200 and search.status_code == 200, search.text
    assert held[0].status_code == 200 and again.status_code == 200
