"""Routing and cost lineage: fallback and circuit breaking against the real SmolLM2 server and a dead
port; llm_calls rows, prices and callers for an asset run and the CLI; the daily budget check."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml

from ragline.answer.routing import Router
from ragline.config import ConfigError, ModelPrice, ModelSettings, parse_settings
from ragline.costs import Caller, postgres_sink, price
from ragline.costs.budget import budget_outcome
from ragline.endpoints import Endpoint, calls_recorded_by, endpoint_host, report_call
from ragline.llm import LLMError, LLMUnavailable
from ragline.storage.db import Database
from ragline.types import CallRecord, Completion, RouteFeatures
from tests.conftest import metadata, run
from tests.llm_server import MODEL_NAME
from tests.openai_server import EmbeddingsServer

PRICES = {MODEL_NAME: {"input_per_1m": 2.0, "output_per_1m": 8.0}}
ASK = [{"role": "user", "content": "Say hello."}]


class OpenAIChat:
    """A ChatModel over the openai client that reports each call as ChatClient.chat/stream do
    (the answer part's ChatClient replaces it once merged): the router is tested through it."""

    def __init__(self, m: ModelSettings) -> None:
        self.model = m.model
        self.endpoint = Endpoint(
            m.base_url,
            None,
            error=LLMError,
            unavailable=LLMUnavailable,
            timeout_seconds=m.timeout_seconds,
            max_retries=m.max_retries,
        )
        self.host = endpoint_host(self.endpoint.url)

    def _record(self, started: float, **fields: Any) -> None:
        ms = (time.perf_counter() - started) * 1000
        report_call(CallRecord(kind="chat", model=self.model, endpoint=self.host, latency_ms=ms, **fields))

    def _create(self, started: float, messages, max_tokens: int, temperature: float, **extra: Any):
        """One request; a failure is reported (as ChatClient does) and raised as LLMError."""
        try:
            return self.endpoint.call(
                "chat request",
                self.endpoint.client.chat.completions.create,
                model=self.model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                **extra,
            )
        except LLMError as exc:
            self._record(started, prompt_tokens=0, completion_tokens=0, ok=False, error=str(exc))
            raise

    def chat(self, messages, *, max_tokens, temperature=0.0, response_format=None) -> Completion:
        started = time.perf_counter()
        r = self._create(started, messages, max_tokens, temperature)
        usage = {"prompt_tokens": r.usage.prompt_tokens, "completion_tokens": r.usage.completion_tokens}
        self._record(started, **usage)
        text = r.choices[0].message.content or ""
        return Completion(text=text, model=self.model, endpoint=self.host, latency_ms=0.0, **usage)

    def stream(self, messages, *, max_tokens, temperature=0.0) -> Iterator[str | Completion]:
        started = time.perf_counter()
        options = {"stream": True, "stream_options": {"include_usage": True}}
        chunks = self._create(started, messages, max_tokens, temperature, **options)
        text, usage = [], None
        for chunk in chunks:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
                    yield choice.delta.content
        tokens = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        self._record(started, **tokens)
        yield Completion(text="".join(text), model=self.model, endpoint=self.host, latency_ms=0.0, **tokens)


def dead_url() -> str:
    """A loopback port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def settings_with(tmp_path, **blocks: Any):
    return parse_settings({"sources": [{"name": "docs", "root": "."}], **blocks}, tmp_path / "ragline.yaml")


def ledger(url: str, **where: Any) -> list[dict[str, Any]]:
    """The llm_calls rows (in the order recorded) whose columns have the given values."""
    with psycopg.connect(url) as conn:
        cur = conn.execute("SELECT * FROM ragline.llm_calls ORDER BY id")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur]
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def test_fallback_circuit_breaker_and_reasons_in_the_ledger(tmp_path, db_url, llm_url) -> None:
    dead = dead_url()
    settings = settings_with(
        tmp_path,
        models={
            "cheap": {"model": "cheap-model", "base_url": dead, "max_retries": 0, "timeout_seconds": 5},
            "small": {"model": MODEL_NAME, "base_url": llm_url, "timeout_seconds": 30},
        },
        routing={
            "default": "cheap",
            "fallback": ["small"],
            "circuit": {"failures": 2, "cooldown_seconds": 60},
        },
        prices=PRICES,
    )
    now = [0.0]
    router = Router(settings, connect=OpenAIChat, clock=lambda: now[0])
    with (
        Database(db_url, max_size=1) as db,
        calls_recorded_by(postgres_sink(db, Caller("api", api_key_id=7), settings.prices)),
    ):
        answers = [router.select(RouteFeatures()).chat(ASK, max_tokens=8) for _ in range(3)]
        assert router.breaker.state(endpoint_host(dead)) == "open"
        now[0] = 61.0  # past the cooldown: one trial call goes to the dead endpoint again
        assert router.breaker.state(endpoint_host(dead)) == "half-open"
        streamed = list(router.select(RouteFeatures()).stream(ASK, max_tokens=8))
    rows = ledger(db_url)
    # Calls 1 and 2 try the dead server first; after 2 failures the circuit is open and call 3 skips
    # it; after the cooldown the streamed call tries it once more, then falls back.
    assert [(r["model"], r["ok"]) for r in rows] == [
        ("cheap-model", False), (MODEL_NAME, True),
        ("cheap-model", False), (MODEL_NAME, True),
        (MODEL_NAME, True),
        ("cheap-model", False), (MODEL_NAME, True),
    ]  # fmt: skip
    assert all(a.model == MODEL_NAME and a.text.strip() for a in answers)
    assert answers[0].route.startswith(
        "fallback to small: cheap failed: chat request failed after 1 attempts"
    )
    assert answers[0].route.endswith("(chosen: default cheap: no escalation rule matched)")
    assert answers[2].route.startswith("fallback to small: cheap unavailable (circuit open)")
    assert [r["route"] for r in rows[:2]] == ["default cheap: no escalation rule matched", answers[0].route]
    assert rows[4]["route"] == answers[2].route
    assert "cannot reach" in rows[0]["error"] and rows[0]["endpoint"] == endpoint_host(dead)
    final = streamed[-1]
    assert isinstance(final, Completion) and "".join(streamed[:-1]) == final.text
    assert final.route.startswith("fallback to small: cheap failed") and rows[-1]["route"] == final.route
    # Tokens are the server's usage, priced by the prices: block; an unpriced model costs NULL.
    for row, done in zip([rows[1], rows[3], rows[4], rows[6]], [*answers, final], strict=True):
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            done.prompt_tokens,
            done.completion_tokens,
        )
        assert row["prompt_tokens"] > 0 and 0 < row["completion_tokens"] <= 8
        expected = (done.prompt_tokens * 2.0 + done.completion_tokens * 8.0) / 1e6
        assert float(row["cost_usd"]) == pytest.approx(expected) and row["price_known"]
    assert rows[0]["cost_usd"] is None and not rows[0]["price_known"]
    assert {(r["caller_kind"], r["api_key_id"], r["asset_key"]) for r in rows} == {("api", 7, None)}
    assert router.breaker.state(endpoint_host(dead)) == "open"  # the trial failed: open again


def test_every_model_down_is_an_llm_error_and_the_decision_is_recorded(tmp_path, db_url) -> None:
    settings = settings_with(
        tmp_path,
        models={"only": {"model": "m", "base_url": dead_url(), "max_retries": 0}},
        routing={"circuit": {"failures": 1, "cooldown_seconds": 60}},
    )
    router = Router(settings, connect=OpenAIChat, clock=lambda: 0.0)
    with Database(db_url, max_size=1) as db, calls_recorded_by(postgres_sink(db, Caller("cli"))):
        with pytest.raises(LLMError, match="no chat model answered: only failed"):
            router.select(RouteFeatures()).chat(ASK, max_tokens=4)
        with pytest.raises(LLMError, match=r"only unavailable \(circuit open\)"):
            router.select(RouteFeatures()).chat(ASK, max_tokens=4)
    rows = ledger(db_url)
    assert [(r["ok"], r["caller_kind"]) for r in rows] == [(False, "cli"), (False, "cli")]
    assert rows[1]["error"] == "not called: every model's circuit is open"
    assert rows[1]["route"].startswith("only unavailable (circuit open)")


def test_a_refusal_does_not_open_the_circuit(tmp_path) -> None:
    """A 400 (or 401) is the endpoint answering: the router falls back for that request, but the
    endpoint's circuit stays closed and the next request tries it again; a 500 opens it."""
    with (
        EmbeddingsServer(echo_status=400) as picky,
        EmbeddingsServer(echo_status=500) as broken,
        EmbeddingsServer(chat_replies=["hello"]) as good,
    ):
        for server, opens in ((picky, False), (broken, True)):
            settings = settings_with(
                tmp_path,
                models={
                    "first": {"model": "m", "base_url": server.base_url, "max_retries": 0},
                    "good": {"model": "g", "base_url": good.base_url},
                },
                routing={"fallback": ["good"], "circuit": {"failures": 1, "cooldown_seconds": 60}},
            )
            router = Router(settings, clock=lambda: 0.0)
            routes = [router.select(RouteFeatures()).chat(ASK, max_tokens=4).route for _ in range(2)]
            assert all(r.startswith("fallback to good: first") for r in routes)
            assert ("circuit open" in routes[1]) is opens, routes
            assert len(server.requests) == (1 if opens else 2)
            assert router.breaker.state(router.endpoint("first")) == ("open" if opens else "closed")


def test_escalation_rules_and_the_budget_floor(tmp_path) -> None:
    settings = settings_with(
        tmp_path,
        models={"small": {"model": "s"}, "large": {"model": "l"}},
        routing={
            "escalate": [
                {"model": "large", "retrieval_margin_below": 0.05},
                {"model": "large", "question_tokens_above": 100},
                {"model": "large", "output": "json"},
            ],
            "min_budget_tokens": 1000,
        },
    )
    router = Router(settings, connect=lambda m: None)  # decisions only: no model is called
    assert router.decide(RouteFeatures(retrieval_margin=0.2)) == (
        "small",
        "default small: no escalation rule matched",
    )
    assert router.decide(RouteFeatures(retrieval_margin=0.01)) == (
        "large",
        "escalated to large: retrieval_margin 0.0100 < 0.05",
    )
    assert (
        router.decide(RouteFeatures(question_tokens=300))[1]
        == "escalated to large: question_tokens 300 > 100"
    )
    assert router.decide(RouteFeatures(output="json"))[1] == "escalated to large: output json"
    low = router.decide(RouteFeatures(output="json", budget_left_tokens=10))
    assert low == (
        "small",
        "default small: not escalated to large (output json): budget_left_tokens 10 < 1000",
    )
    assert router.select(RouteFeatures(output="json")).chain == ["large"]
    # No models: block: the llm: block is the single model.
    single = Router(settings_with(tmp_path, llm={"model": "x", "base_url": "http://127.0.0.1:9/v1"}))
    assert list(single.models) == ["llm"] and single.decide(RouteFeatures())[0] == "llm"


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        (
            {"routing": {"default": "nope"}, "models": {"a": {"model": "m"}}},
            "'nope' is not a configured model",
        ),
        ({"routing": {"default": "a"}}, "routing needs chat models"),
        ({"models": {"a": {"model": "m", "colour": 1}}}, "unknown keys ['colour']"),
        (
            {"models": {"a": {"model": "m", "base_url": "http://u:p@example.com/v1"}}},
            "must not carry credentials",
        ),
        ({"models": {"a": {"model": "m"}}, "routing": {"escalate": [{"model": "a"}]}}, "at least one of"),
        ({"prices": {"m": {"input_per_1m": -1}}}, "USD amounts >= 0"),
        ({"prices": {"m": {"input_per_1m": 1, "per_token": 1}}}, "unknown keys ['per_token']"),
        ({"costs": {"daily_budget": {"warn": 5, "fail": 1}}}, "warn must not exceed fail"),
        ({"costs": {"budget": 5}}, "unknown keys ['budget']"),
    ],
)
def test_bad_routing_price_and_budget_config_is_refused(tmp_path, blocks, message) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, **blocks)
    assert message in str(caught.value)


def test_price_maths() -> None:
    prices = (ModelPrice("gpt", input_per_1m=0.15, output_per_1m=0.6),)
    assert price("gpt", 1_000_000, 500_000, prices=prices) == pytest.approx(0.45)
    assert price("gpt", 1234, 0, prices=prices) == pytest.approx(1234 * 0.15 / 1e6)
    assert price("other", 10, 10, prices=prices) is None
    assert price("all-MiniLM-L6-v2", 10, 0, prices=prices, endpoint="local") == 0.0


def test_remote_embedding_calls_carry_the_servers_usage(db_url) -> None:
    from ragline.config import EmbeddingSettings
    from ragline.index.embedding import OpenAICompatibleEmbedder
    from tests.conftest import local_embedder

    texts = ["the on-call engineer pages the database team", "queues back up at night", "restart it"]
    with EmbeddingsServer(local_embedder()) as server:
        config = EmbeddingSettings(provider="openai", model="minilm", base_url=server.base_url, batch_size=2)
        with Database(db_url, max_size=2) as db, calls_recorded_by(postgres_sink(db, Caller("cli"))):
            OpenAICompatibleEmbedder(config, api_key=None).embed(texts)
    rows = ledger(db_url)
    assert sorted((r["texts"], r["prompt_tokens"]) for r in rows) == [(1, 2), (2, 12)]  # words, per request
    assert {(r["kind"], r["model"], r["endpoint"]) for r in rows} == {
        ("embedding", "minilm", endpoint_host(server.base_url))
    }
    assert all(r["cost_usd"] is None for r in rows)  # no price for minilm: NULL, never 0


def test_asset_runs_and_the_cli_are_metered_and_the_budget_check_warns_then_fails(
    project, db_url, capsys, monkeypatch
) -> None:
    # A price for the local model, so that the day's embeddings cost something to budget.
    settings = project(
        {"docs": ["handbook/onboarding.md"]}, prices={"all-MiniLM-L6-v2": {"input_per_1m": 1000.0}}
    )
    results = run(settings, quality=False)
    source_run = results["source docs"]
    rows = ledger(db_url, asset_key="embeddings")
    assert rows and {(r["caller_kind"], r["partition_key"], r["run_id"]) for r in rows} == {
        ("asset", "docs", source_run.run_id)
    }
    assert {(r["kind"], r["model"], r["endpoint"]) for r in rows} == {
        ("embedding", "all-MiniLM-L6-v2", "local")
    }
    meta = metadata(source_run, "embeddings")
    tokens = sum(r["prompt_tokens"] for r in rows)
    assert meta["llm_tokens_in"] == tokens > 0 and meta["llm_tokens_out"] == 0
    assert meta["model_calls"] == len(rows) and sum(r["texts"] for r in rows) == meta["chunks_embedded"]
    assert meta["llm_cost_usd"] == pytest.approx(tokens * 1000 / 1e6)
    # search_index is metered too (its recall queries are stored vectors here: no model call).
    assert metadata(results["search index"], "search_index")["model_calls"] == 0

    from ragline.cli import main

    config = str(settings.path)
    assert main(["--config", config, "search", "paid leave", "--strategy", "dense", "--no-log"]) == 0
    [cli_row] = ledger(db_url, caller_kind="cli")
    assert (cli_row["texts"], cli_row["asset_key"], cli_row["run_id"]) == (1, None, None)
    capsys.readouterr()
    assert main(["--config", config, "cost", "--by", "caller", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    labels = {r["label"]: r for r in out["rows"]}
    assert labels["asset:embeddings docs"]["prompt_tokens"] == tokens and "cli" in labels
    assert out["total_usd"] == pytest.approx(sum(r["cost_usd"] for r in out["rows"]))
    assert main(["--config", config, "cost", "--by", "model"]) == 0
    text = capsys.readouterr().out
    assert "embedding:all-MiniLM-L6-v2" in text and "total" in text
    assert main(["--config", config, "cost", "--since", "2026-02-30"]) == 2
    assert "--since takes a day" in capsys.readouterr().err

    # The daily roll-up: no budget is not a pass; past warn a WARN failure; past fail an ERROR one.
    cost = out["total_usd"]
    from orchestration.definitions import build_definitions

    def budget_check(**budget: float) -> dg.AssetCheckEvaluation:
        raw = yaml.safe_load(settings.path.read_text())
        settings.path.write_text(yaml.safe_dump({**raw, "costs": {"daily_budget": budget}}))
        job = build_definitions(settings, "in_process").resolve_job_def("llm_costs_job")
        today = dt.datetime.now(dt.UTC).date().isoformat()
        result = job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key=today, raise_on_error=False
        )
        [evaluation] = result.get_asset_check_evaluations()
        assert metadata(result, "llm_costs")["llm_cost_usd"] == pytest.approx(cost)
        # A failed blocking ERROR check fails the run (it is what stops downstream work).
        assert result.success == (evaluation.passed or evaluation.severity == dg.AssetCheckSeverity.WARN)
        return evaluation

    assert budget_outcome(cost, cost * 2, cost * 4, unpriced=[]).passed
    untested = budget_outcome(cost, None, None, unpriced=[])
    assert untested.untested and "no costs.daily_budget" in untested.untested  # reported as not tested
    warned = budget_check(warn=cost / 2, fail=cost * 2)
    assert (warned.passed, warned.severity) == (False, dg.AssetCheckSeverity.WARN)
    failed = budget_check(warn=cost / 4, fail=cost / 2)
    assert (failed.passed, failed.severity) == (False, dg.AssetCheckSeverity.ERROR)


def test_a_call_recorded_while_the_caller_holds_every_pooled_connection_is_stored(db_url) -> None:
    """A dense search embeds its query holding a connection; the ledger must not wait on that pool."""
    record = CallRecord(
        kind="embedding", model="m", endpoint="local", prompt_tokens=3, completion_tokens=0, latency_ms=1.0
    )
    with (
        Database(db_url, max_size=1) as db,
        db.connection(),
        calls_recorded_by(postgres_sink(db, Caller("api"))),
    ):
        report_call(record)
    [row] = ledger(db_url)
    assert (row["prompt_tokens"], row["caller_kind"], row["cost_usd"]) == (3, "api", 0)


class ScriptedReplies:
    """A loopback HTTP server answering each POST with the next (status, body) of a script: a
    refusal, a server error, a malformed 200 (a choice without a message), a good reply."""

    def __init__(self, script: list[tuple[int, dict[str, Any]]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        replies = list(script)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                status, body = replies.pop(0)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.replies = replies
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def __enter__(self) -> ScriptedReplies:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


def _chat_reply(choice: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}


def test_a_trial_call_that_raises_anything_settles_the_circuit_and_a_refusal_never_opens_it(tmp_path) -> None:
    """With the real ChatClient against a scripted server: a 400 refusal leaves the circuit closed;
    a 500 opens it; after the cooldown the trial call gets a malformed reply (a choice without a
    message: LLMMalformedReply, reported to the ledger once) which re-opens the circuit; after the
    next cooldown a call goes through again (before the fix the unsettled trial kept the circuit
    open for good)."""
    refusal = {"error": {"message": "bad request", "type": "invalid_request_error"}}
    message = {"role": "assistant", "content": "hi"}
    good = _chat_reply({"index": 0, "message": message, "finish_reason": "stop"})
    malformed = _chat_reply({"index": 0})
    script = [(400, refusal), (500, {"error": {"message": "boom"}}), (200, malformed), (200, good)]
    with ScriptedReplies(script) as server:
        settings = settings_with(
            tmp_path,
            models={"only": {"model": "m", "base_url": server.base_url, "max_retries": 0}},
            routing={"circuit": {"failures": 1, "cooldown_seconds": 60}},
        )
        now = [0.0]
        router = Router(settings, clock=lambda: now[0])
        endpoint = router.endpoint("only")
        with pytest.raises(LLMError, match="only failed: .*HTTP 400"):
            router.select(RouteFeatures()).chat(ASK, max_tokens=4)
        assert router.breaker.state(endpoint) == "closed"  # the endpoint answered: a refusal
        with pytest.raises(LLMError, match="only failed: .*HTTP 500"):
            router.select(RouteFeatures()).chat(ASK, max_tokens=4)
        assert router.breaker.state(endpoint) == "open"
        now[0] = 61.0
        assert router.breaker.state(endpoint) == "half-open"
        calls: list[CallRecord] = []
        with calls_recorded_by(calls.append), pytest.raises(LLMError, match=r"malformed reply \(Attr"):
            router.select(RouteFeatures()).chat(ASK, max_tokens=4)
        assert router.breaker.state(endpoint) == "open"
        assert [c.ok for c in calls] == [False] and "malformed reply" in calls[0].error
        now[0] = 122.0
        assert router.breaker.state(endpoint) == "half-open"
        assert router.select(RouteFeatures()).chat(ASK, max_tokens=4).text == "hi"
        assert router.breaker.state(endpoint) == "closed" and server.replies == []


def test_a_reply_with_no_choices_is_a_failure_the_circuit_counts_and_the_router_falls_back(tmp_path) -> None:
    """A 200 with no choices is not an answer: reported once as failed, it opens the circuit and the
    router falls back (a plain LLMError, a refusal, would have kept the circuit closed)."""
    empty = {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    with ScriptedReplies([(200, empty)]) as server, EmbeddingsServer(chat_replies=["hello"]) as good:
        settings = settings_with(
            tmp_path,
            models={
                "first": {"model": "m", "base_url": server.base_url, "max_retries": 0},
                "good": {"model": "g", "base_url": good.base_url},
            },
            routing={"fallback": ["good"], "circuit": {"failures": 1, "cooldown_seconds": 60}},
        )
        router = Router(settings, clock=lambda: 0.0)
        calls: list[CallRecord] = []
        with calls_recorded_by(calls.append):
            reply = router.select(RouteFeatures()).chat(ASK, max_tokens=4)
    assert reply.text == "hello" and "malformed reply (no choices)" in reply.route
    assert router.breaker.state(router.endpoint("first")) == "open"
    assert [(c.model, c.ok) for c in calls] == [("m", False), ("g", True)]
