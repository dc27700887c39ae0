"""The HTTP API on a real uvicorn server on a loopback port, with a real HTTP client: readiness,
API keys, rate limits and budgets, bad bodies, metrics, the request log and the health board."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from ragline.cli import build_api, main
from ragline.config import ConfigError
from ragline.costs import Caller, postgres_sink
from ragline.serving.app import create_app
from ragline.serving.keys import RequestRecord, log_request
from ragline.storage.db import Database
from ragline.types import CallRecord
from tests.conftest import EXAMPLES, drop_database, fresh_database, run, write_project

QUESTION = "How many vacation days do I get per year?"


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run the app under uvicorn on a free loopback port (bound here, so no race); yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def project(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A one-source project in a fresh database, nothing materialized yet."""
    root = tmp_path_factory.mktemp("serve")
    folder = root / "corpus" / "handbook"
    folder.mkdir(parents=True)
    for name in ("paid-time-off.md", "benefits.md", "onboarding.md"):
        shutil.copy(EXAMPLES / "handbook" / name, folder / name)
    name, url = fresh_database(server_url)
    saved = dict(os.environ)
    os.environ["DATABASE_URL"] = url
    settings = write_project(
        root,
        [{"name": "handbook", "root": "corpus/handbook", "chunking": {"strategy": "markdown"}}],
        serve={"max_body_bytes": 4096, "max_k": 50, "max_query_chars": 500},
    )
    yield {"settings": settings, "url": url, "root": root}
    os.environ.clear()  # `ragline serve`'s board sets the Dagster variables; leave none behind
    os.environ.update(saved)
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def api(project: dict[str, Any]) -> Iterator[str]:
    """`ragline serve`'s app (keys required, the board wired in) on a real server."""
    app = build_api(project["settings"])
    project["app"] = app
    with serving(app) as base:
        yield base


@pytest.fixture(scope="module")
def published(project: dict[str, Any]) -> None:
    run(project["settings"], quality=False)


def cli(project: dict[str, Any], *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(project["settings"].path), *args])
    return code, out.getvalue(), err.getvalue()


def new_key(project: dict[str, Any], name: str, *options: str) -> str:
    code, out, _ = cli(project, "keys", "create", "--name", name, *options)
    assert code == 0
    return out.strip()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_healthz_is_503_until_a_generation_is_published(api, project, request):
    before = httpx.get(f"{api}/healthz")
    assert before.status_code == 503
    assert before.json()["database"] is True and "nothing is published" in before.json()["reason"]
    early = httpx.post(
        f"{api}/v1/search", json={"query": QUESTION}, headers=bearer(new_key(project, "early"))
    )
    assert early.status_code == 503 and "nothing is published" in early.json()["detail"]
    request.getfixturevalue("published")
    after = httpx.get(f"{api}/healthz")
    assert after.status_code == 200 and after.json() == {
        "ready": True,
        "database": True,
        "published_sources": 1,
        "reason": None,
    }


def test_keys_are_hashed_and_required_and_revocable(api, project, published):
    key = new_key(project, "alice")
    assert key.startswith("rl_") and len(key) == 46
    stored = rows(project["url"], "SELECT key_hash, key_prefix FROM ragline.api_keys WHERE name = 'alice'")
    assert stored[0][0] != key and key not in str(stored)  # only the hash is kept
    code, listing, _ = cli(project, "keys", "list")
    assert code == 0 and "alice" in listing and key not in listing and key[8:] not in listing

    body = {"query": QUESTION, "k": 3}
    missing = httpx.post(f"{api}/v1/search", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    wrong = httpx.post(f"{api}/v1/search", json=body, headers=bearer(key[:-4] + "AAAA"))
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown API key"

    found = httpx.post(f"{api}/v1/search", json=body, headers=bearer(key))
    assert found.status_code == 200, found.text
    hits = found.json()["hits"]
    assert len(hits) == 3 and hits[0]["document"] == "handbook:paid-time-off.md"
    context = httpx.post(f"{api}/v1/context", json={"query": QUESTION, "budget": 300}, headers=bearer(key))
    assert context.status_code == 200
    assert 0 < context.json()["tokens"] <= 300 and context.json()["citations"][0]["number"] == 1

    assert cli(project, "keys", "revoke", "alice")[0] == 0
    revoked = httpx.post(f"{api}/v1/search", json=body, headers=bearer(key))
    assert revoked.status_code == 403 and "revoked" in revoked.json()["detail"]
    assert cli(project, "keys", "revoke", "nobody")[0] == 2


def test_rate_limit_answers_429_with_retry_after(api, project, published):
    key = new_key(project, "limited", "--rate-per-minute", "2")
    body = {"query": "expenses", "strategy": "lexical", "k": 1}
    statuses = [httpx.post(f"{api}/v1/search", json=body, headers=bearer(key)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert 1 <= int(statuses[2].headers["retry-after"]) <= 30
    assert "rate limit" in statuses[2].json()["detail"]
    # The server scores lexical queries from its in-memory BM25 index (serve.lexical_index: memory).
    bm25 = project["app"].state.retriever.bm25
    assert bm25.counts["memory"] >= 1 and bm25.counts["loads"] >= 1, bm25.counts


def test_spent_token_budget_answers_429(api, project, published):
    key = new_key(project, "budgeted", "--token-budget", "100")
    body = {"query": "benefits", "strategy": "lexical", "k": 1}
    assert httpx.post(f"{api}/v1/search", json=body, headers=bearer(key)).status_code == 200
    [(key_id,)] = rows(project["url"], "SELECT key_id FROM ragline.api_keys WHERE name = 'budgeted'")
    # A chat call booked to the key by the cost ledger (as an answer's is): 110 tokens of a 100 budget.
    # The request log is not what counts: a stream its client abandoned logs no tokens there.
    with Database(project["url"], max_size=1) as db:
        with db.connection() as conn:
            record = RequestRecord("POST", "/v1/answer", key_id=key_id, prompt_tokens=500)
            log_request(conn, record, status=200, latency_ms=5.0)
        assert httpx.post(f"{api}/v1/search", json=body, headers=bearer(key)).status_code == 200
        postgres_sink(db, Caller("api", api_key_id=key_id))(
            CallRecord("chat", "m", "127.0.0.1:1", 80, 30, 5.0)
        )
    spent = httpx.post(f"{api}/v1/search", json=body, headers=bearer(key))
    assert spent.status_code == 429
    assert "token budget" in spent.json()["detail"] and "110 of 100" in spent.json()["detail"]


BAD_BODIES: list[tuple[str, str, Any]] = [
    ("malformed JSON", "/v1/search", b'{"query": "x",'),
    ("not an object", "/v1/search", b"[1, 2]"),
    ("wrong type", "/v1/search", {"query": QUESTION, "k": "ten"}),
    ("k over the limit", "/v1/search", {"query": QUESTION, "k": 51}),
    ("k zero", "/v1/search", {"query": QUESTION, "k": 0}),
    ("unknown field", "/v1/search", {"query": QUESTION, "top_k": 3}),
    ("empty query", "/v1/search", {"query": "   "}),
    ("query too long", "/v1/search", {"query": "word " * 200}),
    ("NUL in the query", "/v1/search", {"query": "vacation\x00days"}),
    ("lone surrogate", "/v1/search", b'{"query": "vacation \\ud800 days"}'),
    ("NaN filter", "/v1/search", b'{"query": "x", "where": {"a": NaN}}'),
    ("deep filter", "/v1/search", b'{"query": "x", "where": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}"),
    ("very deep JSON", "/v1/search", b'{"query": "x", "where": {"a": ' + b"[" * 1500 + b"]" * 1500 + b"}}"),
    ("mmr out of range", "/v1/search", {"query": "x", "mmr": 2}),
    ("unknown strategy", "/v1/search", {"query": "x", "strategy": "magic"}),
    ("unknown source", "/v1/search", {"query": "x", "sources": ["nope"]}),
    ("budget over the limit", "/v1/context", {"query": "x", "budget": 10**9}),
    ("unknown tokenizer", "/v1/context", {"query": "x", "tokenizer": "gpt2"}),
    ("body too large", "/v1/search", {"query": "x", "where": {"pad": "p" * 5000}}),
]


def test_bad_bodies_answer_4xx_with_a_json_message_never_500(api, project, published):
    key = new_key(project, "fuzzer")
    headers = {**bearer(key), "Content-Type": "application/json"}
    with httpx.Client(base_url=api, headers=headers) as client:
        for what, route, body in BAD_BODIES:
            response = (
                client.post(route, content=body) if isinstance(body, bytes) else client.post(route, json=body)
            )
            assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
            assert isinstance(response.json()["detail"], str) and response.json()["detail"], what
        broken = client.post("/v1/search", content=b'{"query": "x",')
        assert (
            broken.json()["detail"]
            == "the body is not valid JSON: Expecting property name enclosed in double quotes at character 14"
        )
        # A body sent in chunks without a Content-Length is cut off at the limit too.
        chunked = client.post("/v1/search", content=iter([b'{"query": "', b"x" * 3000, b"x" * 3000, b'"}']))
        assert chunked.status_code == 413 and "4,096 bytes" in chunked.json()["detail"]
        # Control characters other than NUL are searchable text, not an error.
        escaped = client.post("/v1/search", json={"query": "vacation\x1b[31m days\u202e", "k": 2})
        assert escaped.status_code == 200
        plain = client.post("/v1/search", content=b"vacation", headers={"Content-Type": "text/plain"})
        assert plain.status_code == 422
        assert client.get("/v1/nowhere").status_code == 404
        assert client.get("/v1/search").status_code == 405
    statuses = dict(rows(project["url"], "SELECT status, count(*) FROM ragline.api_requests GROUP BY status"))
    assert 500 not in statuses


def test_metrics_and_the_request_log_count_every_request(api, project, published):
    key = new_key(project, "counted")
    with httpx.Client(base_url=api) as client:
        for _ in range(3):
            assert client.post(
                "/v1/search", json={"query": "onboarding", "k": 2}, headers=bearer(key)
            ).is_success
        assert client.post("/v1/search", json={"query": "onboarding"}).status_code == 401
        text = client.get("/metrics").text
    assert 'ragline_api_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'ragline_api_requests_total{method="POST",route="/v1/search",status="401"}' in text
    assert 'ragline_api_request_seconds_count{route="/v1/search"}' in text
    assert "ragline_api_tokens_total" in text or "# HELP ragline_api_tokens" in text
    assert "ragline_api_cache_hits_total 0.0" in text and "# HELP ragline_api_errors" in text
    logged = rows(
        project["url"],
        "SELECT r.route, r.status, r.latency_ms, r.models, r.prompt_tokens, r.cost, r.cached, r.error, "
        "k.name FROM ragline.api_requests r LEFT JOIN ragline.api_keys k USING (key_id) ORDER BY request_id",
    )
    mine = [r for r in logged if r[8] == "counted"]
    assert len(mine) == 3 and all(r[:2] == ("/v1/search", 200) and r[2] > 0 for r in mine)
    assert all(r[3] == [] and r[4] == 0 and r[5] is None and r[6] is False and r[7] is None for r in mine)
    unauthenticated = [r for r in logged if r[1] == 401]
    assert unauthenticated and all(r[8] is None and "API key" in r[7] for r in unauthenticated)
    assert any(r[1] == 413 and "4,096 bytes" in r[7] for r in logged)  # rejected before any route ran
    assert any(r[1] == 403 and r[8] == "alice" for r in logged)
    assert not any(r[0] == "/healthz" and r[1] == 200 for r in logged)  # probes are not logged
    query_log = rows(project["url"], "SELECT caller FROM ragline.query_log WHERE query = 'onboarding'")
    assert [c for (c,) in query_log] == ["api"] * 3


def test_board_renders_and_says_so_when_dagster_is_unavailable(api, project, published):
    board = httpx.get(f"{api}/board", timeout=120)
    assert board.status_code == 200 and board.headers["content-type"].startswith("text/html")
    assert "<html" in board.text and "chunks" in board.text

    def broken() -> str:
        raise RuntimeError("no dagster.yaml under /nowhere (password=hunter2)")

    settings = project["settings"]
    with Database(project["url"], max_size=2) as db:
        app = create_app(settings, db, retriever=None, board=broken, auth=False)  # type: ignore[arg-type]
        with serving(app) as base:
            page = httpx.get(f"{base}/board")
            answer = httpx.post(f"{base}/v1/answer", json={"question": "x"})
            crash = httpx.post(f"{base}/v1/search", json={"query": "x"})  # no retriever: a server fault
            errors = httpx.get(f"{base}/metrics").text
    assert page.status_code == 503 and "Health board unavailable" in page.text
    assert "no dagster.yaml" in page.text and "hunter2" not in page.text
    assert answer.status_code == 501  # no answerer wired in, and no key needed without auth
    # An unexpected failure is a JSON 500 without a traceback, counted and logged like any request.
    assert crash.status_code == 500 and crash.json() == {"detail": "internal error; see the server's log"}
    assert 'ragline_api_errors_total{route="/v1/search"} 1.0' in errors
    [(status, error)] = rows(
        project["url"], "SELECT status, error FROM ragline.api_requests WHERE status = 500"
    )
    assert status == 500 and error.startswith("AttributeError: 'NoneType' object has no attribute 'search'")


def test_no_auth_is_refused_off_loopback(project, capsys):
    code, _, err = cli(project, "serve", "--no-auth", "--host", "0.0.0.0", "--port", "0")
    assert code == 2 and "loopback" in err


def test_openapi_schema_describes_every_route(api):
    schema = httpx.get(f"{api}/openapi.json").json()
    assert {"/v1/search", "/v1/context", "/v1/answer", "/v1/chat/completions", "/healthz", "/metrics"} <= set(
        schema["paths"]
    )
    search = schema["components"]["schemas"]["SearchRequest"]
    assert search["additionalProperties"] is False and "query" in search["required"]
    assert httpx.get(f"{api}/docs").status_code == 200


def test_serve_block_rejects_unknown_keys_and_bad_limits(tmp_path):
    sources = [{"name": "docs", "root": "corpus"}]
    with pytest.raises(ConfigError, match=r"serve: unknown keys \['max_kk'\]"):
        write_project(tmp_path, sources, serve={"max_kk": 5})
    with pytest.raises(ConfigError, match="at least 1"):
        write_project(tmp_path, sources, serve={"max_body_bytes": 0})
    assert write_project(tmp_path, sources).serve.max_k == 100  # no serve block: the defaults


def test_generated_requests_never_get_a_server_error(api, project, published, tmp_path):
    """Schemathesis's coverage phase sends requests derived from /openapi.json (boundary values,
    wrong types, missing and extra fields: 220 cases) to the search and context routes; none may
    answer 5xx. Deterministic: no random fuzzing phase."""
    key = new_key(project, "schemathesis")
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{api}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {key}",
            "--include-path-regex",
            "^/v1/(search|context)$",
            "--phases",
            "coverage",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # schemathesis keeps a .schemathesis/ cache in its working directory
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    [(count,)] = rows(project["url"], "SELECT count(*) FROM ragline.api_requests WHERE route LIKE '/v1/%'")
    assert count > 50
