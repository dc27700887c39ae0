"""The answer pipeline wired from ragline.yaml (build_answerer): guardrails around the real model
server (a capturing proxy shows what left), the answer cache with redacted keys and per-request
restoring, the served-data stamp, the cost ledger per caller (streams included), router fallback,
and `ragline answer` / `ragline gc`; against llama.cpp serving SmolLM2-135M and a scripted server."""

from __future__ import annotations

import contextvars
import dataclasses
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from ragline.answer.answering import Answer
from ragline.answer.cache import AnswerCache
from ragline.answer.pipeline import Answerer, build_answerer
from ragline.cli import main
from ragline.config import Settings, load_settings
from ragline.costs import Caller
from ragline.endpoints import _call_sink
from ragline.retrieval.search import build_retriever
from ragline.storage.db import Database
from tests.capturing_proxy import CapturingProxy
from tests.conftest import EXAMPLES, drop_database, fresh_database, local_embedder, run, write_project
from tests.llm_server import MODEL_NAME
from tests.openai_server import EmbeddingsServer

PAYROLL = """# Payroll contacts

Questions about salary, payslips and the corporate card go to the payroll desk at
payroll.desk@example.com. The team's shared corporate card is 4111 1111 1111 1111.
The nightly payroll export authenticates with the key sk-live-planted0123456789abcdefXYZ.
"""
# What must never reach a model server: the corpus's values and the question's.
PLANTED = [
    "payroll.desk@example.com",
    "4111 1111 1111 1111",
    "4111111111111111",
    "sk-live-planted0123456789abcdefXYZ",
    "alice.j@example.org",
    "5555 5555 5555 4444",
    "5555555555554444",
    "sk-proj-QUESTIONkey0123456789abcdef",
    "people@tidewater.io",  # in paid-time-off.md
]
EMAILS = ("alice.j@example.org", "payroll.desk@example.com", "people@tidewater.io")
PII_QUESTION = (
    "I am alice.j@example.org, my corporate card 5555 5555 5555 4444 was charged twice and my "
    "token sk-proj-QUESTIONkey0123456789abcdef stopped working: whom do I contact at payroll?"
)
VACATION = "How many vacation days do I get per year?"


@pytest.fixture(scope="module")
def llm(llm_url: str) -> Iterator[CapturingProxy]:
    """SmolLM2 on llama.cpp (the session's server), behind a proxy that records every request
    body sent to it."""
    with CapturingProxy(llm_url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def corpus(server_url: str, tmp_path_factory: pytest.TempPathFactory, llm: CapturingProxy) -> Iterator[dict]:
    """Two handbook pages, one with an e-mail, a card number and a key, materialized in a fresh
    database; guardrails restore e-mail addresses only; the cache is on (the default)."""
    name, url = fresh_database(server_url)
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", url)
    root = tmp_path_factory.mktemp("pipeline")
    (root / "corpus" / "handbook").mkdir(parents=True)
    shutil.copy(EXAMPLES / "handbook" / "paid-time-off.md", root / "corpus" / "handbook")
    (root / "corpus" / "handbook" / "payroll-contacts.md").write_text(PAYROLL)
    settings = write_project(
        root,
        [{"name": "handbook", "root": "corpus/handbook", "chunking": {"strategy": "markdown"}}],
        llm={"model": MODEL_NAME, "base_url": llm.base_url, "context_window": 2048},
        answer={"max_tokens": 24, "context_tokens": 400},
        guardrails={"restore": ["email"]},
    )
    run(settings, quality=False)
    db = Database(url, max_size=2)
    retriever = build_retriever(settings, db, local_embedder())
    yield {"url": url, "settings": settings, "db": db, "retriever": retriever, "root": root}
    db.close()
    mp.undo()
    drop_database(server_url, name)


def _answerer(corpus: dict, **settings: Any) -> Answerer:
    """The pipeline from the corpus's ragline.yaml, with some blocks replaced (e.g. llm=...)."""
    changed = dataclasses.replace(corpus["settings"], **settings)
    return build_answerer(changed, corpus["db"], retriever=corpus["retriever"])


def _scripted(corpus: dict, server: EmbeddingsServer) -> Answerer:
    llm = dataclasses.replace(
        corpus["settings"].llm, model="scripted", base_url=server.base_url, max_retries=0
    )
    return _answerer(corpus, llm=llm)


def _chat_calls(url: str, after_id: int = 0) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM ragline.llm_calls WHERE kind = 'chat' AND id > %s ORDER BY id", (after_id,)
        ).fetchall()


def _last_call_id(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM ragline.llm_calls").fetchone()[0]


def test_pii_and_secrets_never_reach_the_model_server(corpus: dict, llm: CapturingProxy) -> None:
    """A question and a retrieved passage holding an e-mail, a card number and a key: answered and
    streamed by the real model, and no captured request body holds any of the values."""
    answerer = _answerer(corpus)
    before = len(llm.captured)
    result = answerer.answer(PII_QUESTION, caller=Caller("cli"))
    events = list(answerer.stream(PII_QUESTION + " Please answer briefly.", caller=Caller("cli")))
    kind, streamed = events[-1]
    assert kind == "answer" and not streamed.cached and not result.cached
    sent = [body for _path, body in llm.captured[before:]]
    assert len(sent) == 2 and all('"messages"' in body for body in sent)
    for body in sent:
        for value in PLANTED:
            assert value not in body
    # The values went as placeholders: the passage with them was in the context.
    text = "\n".join(sent)
    for placeholder in ("<EMAIL_1>", "<EMAIL_2>", "<CARD_1>", "<CARD_2>", "<API_KEY_1>", "<API_KEY_2>"):
        assert placeholder in text
    redacted = result.guardrails["redacted"]
    assert redacted["email"] >= 2 and redacted["card"] == 2 and redacted["api_key"] == 2
    assert not result.abstained and result.model == MODEL_NAME and result.completion_tokens > 0
    # The answer never holds a value the policy keeps out (the model never saw one).
    for out in (result.text, streamed.text, "".join(item for k, item in events if k == "token")):
        assert not any(value in out for value in PLANTED if value not in EMAILS)


def test_placeholders_are_restored_as_the_policy_allows_in_answers_and_streams(corpus: dict) -> None:
    """Only e-mail is restorable: the model's <EMAIL_n> comes back as the address, in the answer
    and in the stream even when the placeholder is split across deltas; card and key stay
    placeholders. A citation the output check repairs replaces the streamed text."""
    reply = "Write to <EMAIL_1> about card <CARD_1> and key <API_KEY_1> [1] [9]."
    with EmbeddingsServer(chat_replies=[reply], stream_chunk_chars=3) as server:
        answerer = _scripted(corpus, server)
        events = list(answerer.stream(PII_QUESTION, caller=Caller("cli")))
        again = answerer.answer(PII_QUESTION, caller=Caller("cli"))
    tokens = "".join(item for kind, item in events if kind == "token")
    (kind, final), deltas = events[-1], [item for k, item in events if k == "token"]
    assert kind == "answer" and len(deltas) > 10 and len(server.requests) == 1
    sent = json.dumps(server.requests[0]["messages"])
    email = tokens.split()[2]  # "Write to <EMAIL_1> ..." restored: the first address of the messages
    assert email in EMAILS and "<EMAIL_1>" in sent and not any(e in sent for e in EMAILS)
    assert "<CARD_1>" in tokens and "<API_KEY_1>" in tokens and "[9]" in tokens
    assert final.replaced and "[9]" not in final.text and final.text.startswith(f"Write to {email} about")
    assert final.guardrails["output"]["action"] == "repaired"
    assert "citation [9] not in context" in final.guardrails["output"]["violations"]
    # The same request again: from the cache, checked and restored the same way.
    assert again.cached and again.text == final.text and again.completion_tokens == 0


def test_a_cache_hit_restores_its_own_requests_values(corpus: dict) -> None:
    """Two requests differing only in an e-mail address share a cache entry (its key is of the
    redacted messages), and each gets its own address back, never the other's. The hit costs 0
    tokens and is in llm_calls as a cached call with 0 tokens."""
    first_id = _last_call_id(corpus["url"])
    # The question's address is the last of the messages (the passages may hold some before it).
    reply = "We will write to <EMAIL_1>, <EMAIL_2>, <EMAIL_3> about it [1]."
    with EmbeddingsServer(chat_replies=[reply]) as server:
        answerer = _scripted(corpus, server)
        alice = answerer.answer(f"Reply to alice.j@example.org: {VACATION}", caller=Caller("cli"))
        bob = answerer.answer(f"Reply to bob.k@example.net: {VACATION}", caller=Caller("api", api_key_id=7))
    assert len(server.requests) == 1
    assert "alice.j@example.org" not in json.dumps(server.requests[0]["messages"])
    assert not alice.cached and "alice.j@example.org" in alice.text
    assert bob.cached and "bob.k@example.net" in bob.text and "alice" not in bob.text
    assert bob.text == alice.text.replace("alice.j@example.org", "bob.k@example.net")
    assert (bob.prompt_tokens, bob.completion_tokens) == (0, 0) and bob.guardrails["cache"]["kind"] == "exact"
    assert [c.chunk_id for c in bob.citations] == [c.chunk_id for c in alice.citations]
    calls = _chat_calls(corpus["url"], first_id)
    assert [(c["cached"], c["prompt_tokens"], c["completion_tokens"], c["caller_kind"]) for c in calls] == [
        (False, 11, 7, "cli"),
        (True, 0, 0, "api"),
    ]
    assert calls[1]["endpoint"] == "cache" and calls[1]["api_key_id"] == 7 and calls[1]["model"] == "scripted"
    with psycopg.connect(corpus["url"]) as conn:
        stored = conn.execute("SELECT payload::text FROM ragline.answer_cache").fetchall()
    assert not any("alice" in row[0] or "bob.k" in row[0] for row in stored)


def test_the_llm_rerankers_requests_carry_no_personal_data(corpus: dict) -> None:
    """retrieval.rerank: llm grades each hit with a model call: in the answer pipeline its query and
    passages are redacted like the answer's own messages."""
    with EmbeddingsServer(chat_replies=["7"]) as server:
        llm = dataclasses.replace(
            corpus["settings"].llm, model="scripted", base_url=server.base_url, max_retries=0
        )
        retrieval = dataclasses.replace(corpus["settings"].retrieval, rerank="llm")
        settings = dataclasses.replace(corpus["settings"], llm=llm, retrieval=retrieval)
        retriever = build_retriever(settings, corpus["db"], corpus["retriever"].embedder)
        result = build_answerer(settings, corpus["db"], retriever=retriever).answer(
            PII_QUESTION + " (reranked)", caller=Caller("cli"), k=3
        )
    sent = json.dumps([r["messages"] for r in server.requests])
    assert len(server.requests) >= 4 and result.model == "scripted"  # grades, then the answer
    assert not any(value in sent for value in PLANTED)
    assert "<CARD_1>" in sent  # the payroll passage was graded, redacted


class _PublishedDuringAnswer:
    """A retriever over which the serving model changes (as a model switch by search_index does)
    right after retrieval, before the answer is stored."""

    def __init__(self, inner: Any, url: str) -> None:
        self.inner = inner
        self.url = url

    def search(self, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.search(*args, **kwargs)
        with psycopg.connect(self.url) as conn:
            conn.execute("UPDATE ragline.serving_model SET model_id = model_id || '-next'")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_cache_entry_is_stamped_with_what_retrieval_saw(corpus: dict) -> None:
    """A publish between retrieval and the store: the entry carries the served data retrieval saw,
    so it never hits on the new data."""
    url = corpus["url"]
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT state FROM ragline.served_data").fetchone()[0]
    question = "Do unused vacation days carry over to next year?"
    try:
        with EmbeddingsServer(chat_replies=["Up to five days carry over [1]."]) as server:
            llm = dataclasses.replace(corpus["settings"].llm, model="scripted", base_url=server.base_url)
            changed = dataclasses.replace(corpus["settings"], llm=llm)
            retriever = _PublishedDuringAnswer(corpus["retriever"], url)
            result = build_answerer(changed, corpus["db"], retriever=retriever).answer(
                question, caller=Caller("cli")
            )
            with psycopg.connect(url) as conn:
                after = conn.execute("SELECT state FROM ragline.served_data").fetchone()[0]
                [(served,)] = conn.execute(
                    "SELECT c.served FROM ragline.answer_cache c JOIN ragline.answers a "
                    "ON c.payload->>'text' = a.answer WHERE a.answer_id = %s",
                    (result.answer_id,),
                ).fetchall()
                generations = conn.execute(
                    "SELECT generations FROM ragline.answers WHERE answer_id = %s", (result.answer_id,)
                ).fetchone()[0]
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE ragline.serving_model SET model_id = %s", (before["serving_model"],))
    assert after != before and served == before and generations == before["generations"]


def test_a_stream_records_its_calls_when_each_step_runs_in_another_context(corpus: dict) -> None:
    """A server resumes a streamed answer on pool threads, each step in a copy of its own context:
    the call is still recorded for the caller, and no context is left with the sink installed."""
    first_id = _last_call_id(corpus["url"])
    with EmbeddingsServer(chat_replies=["Twenty-five days a year [1]."]) as server:
        stream = _scripted(corpus, server).stream(
            "How many days of paid vacation are there in a year?", caller=Caller("api", api_key_id=42)
        )
        events: list[tuple[str, Any]] = []
        leaked: list[object] = []

        def step() -> None:
            try:
                events.append(next(stream))
            except StopIteration:
                events.append(("end", None))
            leaked.append(_call_sink.get())

        while not events or events[-1][0] != "end":
            context = contextvars.copy_context()
            worker = threading.Thread(target=context.run, args=(step,))
            worker.start()
            worker.join()
    assert [k for k, _ in events][-2:] == ["answer", "end"] and len(events) > 3
    assert isinstance(events[-2][1], Answer) and not events[-2][1].cached
    assert leaked == [None] * len(events)
    calls = _chat_calls(corpus["url"], first_id)
    assert [(c["model"], c["api_key_id"], c["ok"], c["completion_tokens"] > 0) for c in calls] == [
        ("scripted", 42, True, True)
    ]


def test_the_router_falls_back_when_the_first_models_server_is_down(
    corpus: dict, llm: CapturingProxy
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    settings = _config_with(
        corpus,
        models={
            "small": {"model": "small-model", "base_url": dead, "max_retries": 0},
            "big": {"model": MODEL_NAME, "base_url": llm.base_url, "context_tokens": 2048},
        },
        routing={"default": "small", "fallback": ["big"]},
    )
    first_id = _last_call_id(corpus["url"])
    answerer = build_answerer(settings, corpus["db"], retriever=corpus["retriever"])
    result = answerer.answer("What happens to vacation days I do not use?", caller=Caller("cli"))
    assert not result.abstained and result.model == MODEL_NAME and result.completion_tokens > 0
    assert result.route.startswith("fallback to big: small failed") and "default small" in result.route
    calls = _chat_calls(corpus["url"], first_id)
    assert [(c["model"], c["ok"]) for c in calls] == [("small-model", False), (MODEL_NAME, True)]
    assert calls[0]["route"] == "default small: no escalation rule matched"
    assert calls[1]["route"] == result.route


def _config_with(corpus: dict, **blocks: Any) -> Settings:
    """The corpus's ragline.yaml with more blocks, loaded (validated) as a user's would be."""
    import yaml

    root: Path = corpus["root"]
    config = yaml.safe_load((root / "ragline.yaml").read_text())
    path = root / "routed.yaml"
    path.write_text(yaml.safe_dump({**config, **blocks}))
    return load_settings(path)


def test_answer_command_caches_and_gc_purges_dead_entries(
    corpus: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    question = "Is there paid leave for a wedding?"
    first_id = _last_call_id(corpus["url"])
    # A scripted model that finishes its answer (one cut at max_tokens would not be cached).
    with EmbeddingsServer(chat_replies=["Yes, two days of paid wedding leave [1]."]) as server:
        llm = {"model": "scripted", "base_url": server.base_url, "context_window": 2048}
        config = str(_config_with(corpus, llm=llm).path)
        assert main(["--config", config, "answer", question, "--json", "--no-log"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert main(["--config", config, "answer", question, "--no-log"]) == 0
        printed = capsys.readouterr().out
    assert not first["cached"] and "from the answer cache, 0 tokens" in printed
    calls = _chat_calls(corpus["url"], first_id)
    assert [(c["cached"], c["caller_kind"]) for c in calls] == [(False, "cli"), (True, "cli")]

    with Database(corpus["url"]) as db, db.connection() as conn:
        cache = AnswerCache(corpus["settings"].cache)
        cache.store(conn, exact="0" * 64, semantic=None, payload={"text": "old"}, served={"generations": {}})
        live = conn.execute("SELECT count(*) FROM ragline.answer_cache").fetchone()[0]
    assert main(["--config", config, "gc", "--dry-run"]) == 0
    assert "answer cache: would purge 1 entries" in capsys.readouterr().out
    assert main(["--config", config, "gc"]) == 0
    assert "answer cache: purged 1 entries" in capsys.readouterr().out
    with psycopg.connect(corpus["url"]) as conn:
        assert conn.execute("SELECT count(*) FROM ragline.answer_cache").fetchone()[0] == live - 1


QUESTION_SECRETS = ("5555 5555 5555 4444", "5555555555554444", "sk-proj-QUESTIONkey0123456789abcdef")


def test_the_questions_secrets_are_in_no_table(corpus: dict) -> None:
    """A question holding a card number and an API key, answered, streamed and abstained on: no
    column of answers, query_log, answer_cache or llm_calls holds either (the redacted question is
    what is searched, logged and stored)."""
    with EmbeddingsServer(chat_replies=["Ask the payroll desk [1]."]) as server:
        answerer = _scripted(corpus, server)
        answered = answerer.answer(PII_QUESTION + " (stored)", caller=Caller("cli"), log=True)
        list(answerer.stream(PII_QUESTION + " (streamed)", caller=Caller("cli"), log=True))
        abstained = answerer.answer(PII_QUESTION, caller=Caller("cli"), log=True, min_support=0.99)
    assert not answered.abstained and abstained.abstained and answered.answer_id is not None
    with psycopg.connect(corpus["url"]) as conn:
        stored = conn.execute(
            "SELECT question FROM ragline.answers WHERE answer_id = %s", (answered.answer_id,)
        ).fetchone()[0]
        rows = {
            table: [r[0] for r in conn.execute(f"SELECT row_to_json(t)::text FROM ragline.{table} t")]
            for table in ("answers", "query_log", "answer_cache", "llm_calls")
        }
    assert "<CARD_1>" in stored and "<API_KEY_1>" in stored and stored.endswith("(stored)")
    assert all(rows.values())
    for table, texts in rows.items():
        for value in QUESTION_SECRETS:
            assert not any(value in text for text in texts), (table, value)


def test_a_fallback_answer_is_not_served_to_the_chosen_models_lookup(corpus: dict) -> None:
    """The chosen model's server fails once and the fallback answers: that answer is not cached
    under the chosen model's key, so the same request, with the chosen model back, is answered by
    the chosen model (not served the fallback's answer from the cache)."""
    question = "Which days count as public holidays for the vacation allowance?"
    with (
        EmbeddingsServer(fail_first=[500], chat_replies=["The primary's answer [1]."]) as primary,
        EmbeddingsServer(chat_replies=["The fallback's answer [1]."]) as backup,
    ):
        settings = _config_with(
            corpus,
            models={
                "primary": {"model": "primary-model", "base_url": primary.base_url, "max_retries": 0},
                "backup": {"model": "backup-model", "base_url": backup.base_url, "max_retries": 0},
            },
            routing={"default": "primary", "fallback": ["backup"]},
        )
        answerer = build_answerer(settings, corpus["db"], retriever=corpus["retriever"])
        first = answerer.answer(question, caller=Caller("cli"))
        second = answerer.answer(question, caller=Caller("cli"))
        third = answerer.answer(question, caller=Caller("cli"))
    assert first.model == "backup-model" and first.route.startswith("fallback to backup")
    assert not second.cached and second.model == "primary-model" and second.text.startswith("The primary's")
    assert third.cached and third.model == "primary-model"  # the chosen model's own answer is cached


def test_an_edited_prompt_gets_no_semantic_hit(corpus: dict, tmp_path: Path) -> None:
    """The semantic cache on, the project's prompt file edited without a new version: the same
    question is answered anew (the prompt's hash is part of the semantic key)."""
    from ragline.answer.prompts import PROMPT_DIR

    prompt = tmp_path / "answer@1.md"
    prompt.write_text((PROMPT_DIR / "answer@1.md").read_text())
    question = "Can unused vacation days be paid out when I leave the company?"
    with EmbeddingsServer(chat_replies=["First answer [1].", "Second answer [1]."]) as server:
        llm = dataclasses.replace(corpus["settings"].llm, model="scripted", base_url=server.base_url)
        cache = dataclasses.replace(corpus["settings"].cache, semantic=True)
        answer = dataclasses.replace(corpus["settings"].answer, prompt_dir=tmp_path)
        answerer = _answerer(corpus, llm=llm, cache=cache, answer=answer)
        first = answerer.answer(question, caller=Caller("cli"))
        again = answerer.answer(question, caller=Caller("cli"))
        prompt.write_text(prompt.read_text().replace("# user", "Answer in one sentence.\n\n# user"))
        edited = answerer.answer(question, caller=Caller("cli"))
    assert not first.cached and again.cached and again.text == first.text
    assert not edited.cached and edited.text.startswith("Second answer") and len(server.requests) == 2


def test_search_redacts_what_it_sends_to_a_reranking_model_and_a_remote_embedder(corpus: dict) -> None:
    """With guardrails on, a plain search (as `ragline search` and /v1/search run it, no answer
    pipeline) sends the LLM reranker and a remote embedding model no planted value."""
    from ragline.config import EmbeddingSettings, VariantSettings
    from tests.conftest import local_embedder as embedder

    with (
        EmbeddingsServer(chat_replies=["7"]) as chat,
        EmbeddingsServer(embedder=embedder()) as embeddings,
    ):
        llm = dataclasses.replace(
            corpus["settings"].llm, model="scripted", base_url=chat.base_url, max_retries=0
        )
        retrieval = dataclasses.replace(corpus["settings"].retrieval, rerank="llm")
        settings = dataclasses.replace(corpus["settings"], llm=llm, retrieval=retrieval)
        reranked = build_retriever(settings, corpus["db"], corpus["retriever"].embedder, caller="api")
        assert reranked.search(PII_QUESTION, k=3, log=False).hits
        remote = EmbeddingSettings(provider="openai", model="remote-minilm", base_url=embeddings.base_url)
        variant = VariantSettings("remote", corpus["settings"].retrieval, embedding=remote)
        searched = build_retriever(
            corpus["settings"], corpus["db"], corpus["retriever"].embedder, variant=variant
        )
        searched.search(PII_QUESTION, k=3, strategy="dense", log=False)
    graded = json.dumps([r["messages"] for r in chat.requests])
    embedded = json.dumps([r["input"] for r in embeddings.requests])
    assert len(chat.requests) >= 3 and "<CARD_1>" in graded and "<API_KEY_1>" in embedded
    for value in PLANTED:
        assert value not in graded and value not in embedded


def test_a_stream_never_sends_a_blocklisted_term_or_text_past_the_length_limit(corpus: dict) -> None:
    """Streamed in 3-character pieces (the term split across deltas): the blocklisted term never
    reaches the client, the final answer is the refusal and replaces what was streamed; a longer
    word that merely starts with the term streams whole; the stream stops at max_answer_chars."""
    guardrails = dataclasses.replace(
        corpus["settings"].guardrails, blocklist=("Project Falcon",), max_answer_chars=60
    )
    replies = [
        "The payroll desk runs Project Falcon for cards [1].",
        "Project Falconry is a hobby of the payroll desk [1].",
        "Write to the payroll desk about the card, and they will answer within two working days [1].",
    ]
    tokens, finals = [], []
    with EmbeddingsServer(chat_replies=replies, stream_chunk_chars=3) as server:
        llm = dataclasses.replace(corpus["settings"].llm, model="scripted", base_url=server.base_url)
        answerer = _answerer(corpus, llm=llm, guardrails=guardrails)
        for n in range(3):
            events = list(answerer.stream(f"{VACATION} ({n})", caller=Caller("cli")))
            tokens.append("".join(item for kind, item in events if kind == "token"))
            finals.append(events[-1][1])
    assert tokens[0] == "The payroll desk runs " and "falcon" not in tokens[0].lower()
    assert finals[0].replaced and finals[0].guardrails["output"]["action"] == "refused"
    assert tokens[1] == replies[1] and not finals[1].replaced and finals[1].text == replies[1]
    assert tokens[2] == replies[2][:60] and finals[2].replaced
    assert finals[2].guardrails["output"]["violations"] == ["answer longer than 60 characters"]


def test_the_local_model_embeds_the_real_query_even_when_loaded_in_the_background(corpus: dict) -> None:
    """The CLI and `ragline serve` wrap the local model in BackgroundEmbedder: a query with an
    e-mail is still embedded as written (nothing leaves the machine), not redacted."""
    from ragline.index.background import BackgroundEmbedder

    model = corpus["retriever"].embedder
    retriever = build_retriever(corpus["settings"], corpus["db"], BackgroundEmbedder(lambda: model))
    question = "Whom do I write at payroll.desk@example.com about my vacation days?"
    assert retriever.redact_query is None
    assert np.allclose(retriever._embed_query(None, question), model.embed([question])[0])
    # Under a remote provider the same wrapper is taken for what it is: the query goes out redacted.
    from ragline.config import EmbeddingSettings

    remote = EmbeddingSettings(provider="openai", model="remote-minilm", base_url="http://127.0.0.1:9/v1")
    settings = dataclasses.replace(corpus["settings"], embedding=remote)
    redacted = build_retriever(settings, corpus["db"], BackgroundEmbedder(lambda: model)).redact_query
    assert redacted is not None and "payroll.desk@example.com" not in redacted(question)
