"""Issue 11, part 7: a key planted in the environment for a chat endpoint, whose servers echo
request headers (Authorization included) in their error bodies (500 from one, 401 from the other),
never shows up anywhere else: not in the API's JSON or SSE responses, log lines, the process's
stdout/stderr, nor any column of any table, after the API, the answer cache and the router have all
handled those errors."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
from typing import Any

import httpx
import openai
import psycopg
import pytest

from ragline.answer.pipeline import build_answerer
from ragline.cli import build_api
from ragline.config import LLMSettings, RoutingSettings
from ragline.retrieval.search import build_retriever
from ragline.serving.app import create_app
from ragline.storage.db import Database
from tests.conftest import EXAMPLES, drop_database, fresh_database, local_embedder, run, write_project
from tests.openai_server import EmbeddingsServer
from tests.test_serving import serving

PLANTED_ENV = "RAGLINE_TEST_PLANTED_CHAT_KEY"
QUESTIONS = [
    "How many vacation days do I get per year?",
    "Can I carry unused vacation days over to next year?",
    "How do I request time off?",
    "Who approves my vacation?",  # asked only where every answer fails (never cached)
]


def every_text_in_the_database(url: str) -> str:
    """Every row of every table of the database, each as its text form (all columns)."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) "
            "FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        dump = []
        for (table,) in tables:
            dump.extend(row[0] for row in conn.execute(f"SELECT t::text FROM {table} t"))  # noqa: S608
    assert any("Incorrect API key" in d for d in dump)  # the echoed errors were stored (scrubbed)
    return "\n".join(dump)


def test_a_planted_key_is_nowhere_but_in_requests_to_its_own_endpoint(
    server_url, tmp_path, monkeypatch, caplog, capfd
) -> None:
    planted = "sk-planted-" + secrets.token_hex(20)
    monkeypatch.setenv(PLANTED_ENV, planted)
    name, url = fresh_database(server_url)
    monkeypatch.setenv("DATABASE_URL", url)
    (tmp_path / "corpus" / "handbook").mkdir(parents=True)
    shutil.copy(EXAMPLES / "handbook" / "paid-time-off.md", tmp_path / "corpus" / "handbook")
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []  # every response body and event the clients received
    with (
        EmbeddingsServer(echo_status=500) as echo,  # a failing server: the router's circuit opens
        EmbeddingsServer(echo_status=401) as refusing,  # a refusal: the answer fails
        EmbeddingsServer(chat_replies=["You get 25 vacation days per year [1]."]) as good,
    ):
        settings = write_project(
            tmp_path,
            [{"name": "handbook", "root": "corpus/handbook", "chunking": {"strategy": "markdown"}}],
            models={
                "small": {
                    "model": "small-model",
                    "base_url": echo.base_url,
                    "api_key_env": PLANTED_ENV,
                    "max_retries": 0,
                },
                "big": {"model": "big-model", "base_url": good.base_url},
            },
            routing={"default": "small", "fallback": ["big"], "circuit": {"failures": 2}},
            prices={"big-model": {"input_per_1m": 1.0, "output_per_1m": 1.0}},
        )
        run(settings, quality=False)
        # The router: the echoing endpoint fails, then its circuit opens. Every request looks in the
        # cache; a fallback model's answer is not stored under the chosen model's key, so a repeat is
        # answered again (by the fallback), not from the cache.
        with serving(build_api(settings, auth=False)) as api:
            for question in QUESTIONS[:2]:
                r = httpx.post(f"{api}/v1/answer", json={"question": question}, timeout=60)
                assert r.status_code == 200 and "fallback to big" in r.json()["route"], r.text
                seen.append(r.text)
            with httpx.stream(
                "POST", f"{api}/v1/answer", json={"question": QUESTIONS[2], "stream": True}, timeout=60
            ) as r:
                seen.append(r.read().decode())
            assert "circuit open" in seen[-1]
            chat = openai.OpenAI(base_url=f"{api}/v1", api_key="unused", max_retries=0)
            ask = [{"role": "user", "content": QUESTIONS[0]}]
            for chunk in chat.chat.completions.create(model="ragline", messages=ask, stream=True):
                seen.append(chunk.model_dump_json())
            assert '"cached":false' in seen[-1] and "fallback to big" in seen[-1]
            seen.append(httpx.get(f"{api}/metrics").text)
        # The llm: block alone on the echoing endpoint: every answer fails, before and as it streams.
        only_echo = dataclasses.replace(
            settings,
            models=(),
            routing=RoutingSettings(),
            llm=LLMSettings(
                model="small-model", base_url=refusing.base_url, api_key_env=PLANTED_ENV, max_retries=0
            ),
        )
        with Database(url, max_size=4) as db:
            retriever = build_retriever(only_echo, db, local_embedder())
            answerer = build_answerer(only_echo, db, retriever=retriever)
            app = create_app(only_echo, db, retriever=retriever, answerer=answerer, auth=False)
            with serving(app) as api:
                failed = httpx.post(f"{api}/v1/answer", json={"question": QUESTIONS[3]}, timeout=60)
                assert failed.status_code == 502 and "Incorrect API key" in failed.json()["detail"]
                seen.append(failed.text)
                with httpx.stream(
                    "POST", f"{api}/v1/answer", json={"question": QUESTIONS[3], "stream": True}, timeout=60
                ) as r:
                    seen.append(r.read().decode())
                chat = openai.OpenAI(base_url=f"{api}/v1", api_key="unused", max_retries=0)
                ask = [{"role": "user", "content": QUESTIONS[3]}]
                with pytest.raises(openai.APIStatusError) as error:
                    chat.chat.completions.create(model="ragline", messages=ask, stream=True)
                assert error.value.status_code == 502
                seen.append(error.value.response.text)

    # The key went to its own endpoint, and only there: the test exercised the echo for real.
    assert {r["auth"] for r in echo.requests + refusing.requests} == {f"Bearer {planted}"}
    assert {r["auth"] for r in good.requests} == {None}
    out, err = capfd.readouterr()
    places: dict[str, Any] = {
        "responses": "\n".join(seen),
        "log records": caplog.text + "\n".join(str(r.args) for r in caplog.records),
        "stdout": out,
        "stderr": err,
        "database": every_text_in_the_database(url),
    }
    # API clients are not shown the model servers' addresses (routes and errors say <endpoint>).
    assert "<endpoint> answered HTTP 401" in places["responses"]
    for server in (echo, refusing):
        assert server.base_url.split("//")[1].split("/")[0] not in places["responses"]
    for where, text in places.items():
        assert planted not in text, where
        assert planted[len("sk-planted-") :][:16] not in text, where  # not even cut short
    drop_database(server_url, name)
