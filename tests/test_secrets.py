"""Secrets: a key goes only to the endpoint configured for it, and never comes back out of an error.

Real local HTTP servers on 127.0.0.1 (tests/openai_server.py) play the endpoints, one of them
echoing the Authorization header in its error bodies; the Dagster instance keeps its runs and
events in the test's Postgres database, so every table can be searched for the key.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from orchestration.commands import run_pipeline
from orchestration.resources import EmbedderResource
from ragline.config import ConfigError, EmbeddingSettings
from ragline.index.embedding import OpenAICompatibleEmbedder, build_embedder
from ragline.llm import ChatClient, LLMError, chat_client
from ragline.storage.db import migrate, redact, sqlalchemy_url
from ragline.types import DatabaseError, EmbeddingError
from tests.conftest import local_embedder, write_project
from tests.openai_server import EmbeddingsServer

PLANTED_KEY = "sk-planted-3f9c2a7b1e6d4058a9c7b2e1f0d3c6a9"
KEY_ENV = "RAGLINE_TEST_PLANTED_KEY"
# A key cut short by a length limit still leaks: look for each half as well as the whole.
KEY_FRAGMENTS = (PLANTED_KEY, PLANTED_KEY[:20], PLANTED_KEY[20:])


def _instance(home: Path, db_url: str) -> dg.DagsterInstance:
    """A Dagster instance like dagster.yaml's: runs and events in Postgres, step logs on disk."""
    config = {
        "storage": {"postgres": {"postgres_url": sqlalchemy_url(db_url)}},
        "local_artifact_storage": {
            "module": "dagster._core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(home / "storage")},
        },
        "compute_logs": {
            "module": "dagster._core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(home / "compute_logs")},
        },
        "telemetry": {"enabled": False},
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return dg.DagsterInstance.from_config(str(home))


def _rows_holding_key(db_url: str) -> dict[str, int]:
    """Rows per text-like column, in every schema of the database (Dagster's and ragline's)."""
    hits: dict[str, int] = {}
    with psycopg.connect(db_url) as conn:
        columns = conn.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea', 'ARRAY')"
        ).fetchall()
        for schema, table, column in columns:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{} WHERE {}::text LIKE ANY(%s)").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)
                ),
                ([f"%{f}%" for f in KEY_FRAGMENTS],),
            ).fetchone()[0]
            if count:
                hits[f"{schema}.{table}.{column}"] = count
    return hits


def _files_holding_key(root: Path) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in sorted(root.rglob("*"))
        if p.is_file() and any(f.encode() in p.read_bytes() for f in KEY_FRAGMENTS)
    ]


def test_a_key_echoed_by_failing_endpoints_appears_in_no_log_event_or_table(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog
) -> None:
    for logger in ("ragline", "openai", "httpx", "httpx2", "httpcore", "httpcore2", "dagster"):
        caplog.set_level(logging.DEBUG, logger=logger)  # far below what ragline shows
    monkeypatch.setenv(KEY_ENV, PLANTED_KEY)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, sentence in [
        ("alerts", "Route P1 alerts to the on-call phone within five minutes of the page."),
        ("billing", "Invoices are sent on the first working day of every calendar month."),
    ]:
        (corpus / f"{name}.md").write_text(f"# {name.title()}\n\n" + " ".join([sentence] * 4) + "\n")
    instance = _instance(tmp_path / "dagster", db_url)
    endpoint = {"base_url": None, "api_key_env": KEY_ENV, "max_retries": 1}
    failures: list[str] = []
    with EmbeddingsServer(echo_status=401) as refusing, EmbeddingsServer(echo_status=500) as failing:
        # The embedder's endpoint refuses the key (401) and echoes it back.
        embedding = {"provider": "openai", "model": "m", **endpoint, "base_url": refusing.base_url}
        settings = write_project(tmp_path, [{"name": "docs", "root": "corpus"}], embedding=embedding)
        results = dict(run_pipeline(settings, ["docs"], instance, quality=False))
        failures += [e.step_key for r in results.values() for e in r.all_events if e.is_step_failure]
        # Local embeddings; the chat endpoint writing synthetic questions fails (500) and echoes it.
        llm = {"model": "m", **endpoint, "base_url": failing.base_url}
        settings = write_project(
            tmp_path,
            [{"name": "docs", "root": "corpus"}],
            llm=llm,
            eval_sets=[{"name": "syn", "kind": "synthetic", "source": "docs", "count": 2}],
        )
        results = dict(run_pipeline(settings, ["docs"], instance, quality=False))
        failures += [e.step_key for r in results.values() for e in r.all_events if e.is_step_failure]
    instance.dispose()
    # Both endpoints really got the key and echoed it: the scenario is live, not vacuous.
    assert {r["auth"] for r in refusing.requests} == {f"Bearer {PLANTED_KEY}"}
    assert {r["auth"] for r in failing.requests} == {f"Bearer {PLANTED_KEY}"}
    assert "embeddings" in failures and "eval_set" in failures

    captured = capfd.readouterr()
    places = {
        "stdout": any(f in captured.out for f in KEY_FRAGMENTS),
        "stderr": any(f in captured.err for f in KEY_FRAGMENTS),
        "python logs": any(f in caplog.text for f in KEY_FRAGMENTS),
    }
    leaks = [where for where, hit in places.items() if hit]
    leaks += [f"file {p}" for p in _files_holding_key(tmp_path / "dagster")]
    leaks += [f"{column} ({n} rows)" for column, n in _rows_holding_key(db_url).items()]
    print(f"places holding the planted key: {len(leaks)}: {leaks}")
    assert leaks == []
    # What the operator does see names the endpoint and the status.
    assert f"{refusing.base_url}/embeddings" in captured.err and "401" in captured.err
    assert f"{failing.base_url}/chat/completions" in captured.err and "500" in captured.err


@pytest.mark.parametrize("status", [401, 413, 500])
def test_client_errors_name_the_endpoint_and_carry_no_key_or_chain(status: int, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="ragline")
    with EmbeddingsServer(echo_status=status) as server:
        embedder = OpenAICompatibleEmbedder(
            EmbeddingSettings(provider="openai", model="m", base_url=server.base_url, max_retries=1),
            api_key=PLANTED_KEY,
            sleep=lambda _s: None,
        )
        chat = ChatClient(
            base_url=server.base_url, model="m", api_key=PLANTED_KEY, max_retries=1, sleep=lambda _s: None
        )
        with pytest.raises(EmbeddingError) as embedding_failure:
            embedder.embed(["x"])
        with pytest.raises(LLMError) as chat_failure:
            chat.complete([{"role": "user", "content": "hi"}])
    for failure, path in [(embedding_failure, "embeddings"), (chat_failure, "chat/completions")]:
        message = str(failure.value)
        assert f"{server.base_url}/{path} answered HTTP {status}" in message
        assert "Authorization: ***" in message and PLANTED_KEY not in message
        # Nothing chained: Dagster serialises __cause__ and __context__ with the error.
        assert failure.value.__cause__ is None and failure.value.__context__ is None
    # 5xx is retried once, 401 and 413 are not (a 413 is the endpoint's own error for a chat call,
    # LLMError, and for an embedder a text too large even alone)
    assert len(server.requests) == (4 if status == 500 else 2)
    assert PLANTED_KEY not in caplog.text


def test_a_key_echoed_as_a_vector_is_not_quoted_back() -> None:
    """A server answering 200 with the Authorization header where the numbers should be."""
    with EmbeddingsServer(echo_status=200) as server:
        embedder = OpenAICompatibleEmbedder(
            EmbeddingSettings(provider="openai", model="m", base_url=server.base_url, max_retries=0),
            api_key=PLANTED_KEY,
        )
        with pytest.raises(EmbeddingError) as failure:
            embedder.embed(["x"])
    assert server.requests[0]["auth"] == f"Bearer {PLANTED_KEY}"
    assert "not lists of numbers" in str(failure.value) and PLANTED_KEY not in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__context__ is None


def test_no_key_goes_to_a_custom_base_url_unless_api_key_env_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ambient variables the openai client reads by itself: none may add a key or move the endpoint.
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", f"Authorization: Bearer {PLANTED_KEY}")
    monkeypatch.setenv("OPENAI_ADMIN_KEY", PLANTED_KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-planted")
    with EmbeddingsServer(local_embedder()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        endpoint = {"base_url": server.base_url}
        settings = write_project(
            tmp_path,
            [{"name": "docs", "root": "."}],
            embedding={"provider": "openai", "model": "m", **endpoint},
            llm={"model": "m", **endpoint},
        )
        assert settings.embedding.key_variable is None and settings.embedding.api_key() is None
        build_embedder(settings.embedding, settings.embedding.api_key()).embed(["cli and search path"])
        resource = EmbedderResource.from_settings(settings.embedding, dict(os.environ))
        assert resource.api_key is None
        resource.embedder().embed(["dagster path"])
        chat = chat_client(settings.llm)
        assert chat is not None
        with pytest.raises(LLMError, match="HTTP 404"):  # this server speaks embeddings only
            chat.complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 3
    assert [(r["auth"], r["org"]) for r in server.requests] == [(None, None)] * 3


def test_a_key_over_plain_http_is_refused_at_config_load(tmp_path: Path) -> None:
    def load(block: str, **endpoint: str | None):
        settings = {"provider": "openai", "model": "m"} if block == "embedding" else {"model": "m"}
        return write_project(tmp_path, [{"name": "docs", "root": "."}], **{block: {**settings, **endpoint}})

    for block in ("embedding", "llm"):
        with pytest.raises(ConfigError, match=r"api_key_env TEI_KEY would send that key .* plain http"):
            load(block, base_url="http://tei.internal:8080/v1", api_key_env="TEI_KEY")
        for url in (
            "https://user:pw@tei.internal/v1",
            "https://tei.internal/v1?api-key=k",
            "https://tei.internal/v1?x=1&access_token=k",
        ):
            with pytest.raises(ConfigError, match="must not carry credentials"):
                load(block, base_url=url)
        # No key, no risk: a server on the network that needs no key keeps working.
        assert getattr(load(block, base_url="http://tei.internal:8080/v1"), block).key_variable is None
        for url in (
            "https://tei.internal/v1",
            "https://tei.internal/v1?design=compact&tokenizer=bert",  # names that only contain "sig"
            "http://localhost:8080/v1",
            "http://127.0.0.5/v1",
            "http://[::1]/v1",
        ):
            assert getattr(load(block, base_url=url, api_key_env="TEI_KEY"), block).key_variable == "TEI_KEY"
        # OpenAI's own API gets OPENAI_API_KEY without being asked.
        assert getattr(load(block), block).key_variable == "OPENAI_API_KEY"
    # Settings made past the loader (a resource edited in the launchpad) are refused by the client.
    plain = EmbeddingSettings(provider="openai", model="m", base_url="http://tei.internal:8080/v1")
    with pytest.raises(EmbeddingError, match="refusing to send an API key over plain http"):
        OpenAICompatibleEmbedder(plain, api_key=PLANTED_KEY)
    with pytest.raises(LLMError, match="refusing to send an API key over plain http"):
        ChatClient(base_url=plain.base_url, model="m", api_key=PLANTED_KEY)
    # A variant's own endpoint does not inherit the key configured for the pipeline's.
    settings = write_project(
        tmp_path,
        [{"name": "docs", "root": "."}],
        embedding={
            "provider": "openai",
            "model": "m",
            "base_url": "http://127.0.0.1:8080/v1",
            "api_key_env": "K",
        },
        variants=[
            {"name": "same", "embedding": {"model": "other"}},
            {"name": "moved", "embedding": {"base_url": "http://tei.internal:8080/v1"}},
        ],
    )
    assert [v.embedding.key_variable for v in settings.variants] == ["K", None]


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/rag", "postgresql://app:***@db:5432/rag"),
        ("postgresql://app:p@ss@db/rag?sslmode=require", "postgresql://app:***@db/rag?sslmode=require"),
        (
            "postgresql://app@db/rag?password=s3cret&sslmode=require",
            "postgresql://app@db/rag?password=***&sslmode=require",
        ),
        ("postgresql://app@db/rag?sslpassword=s3cret", "postgresql://app@db/rag?sslpassword=***"),
        ("host=db user=app password=s3cret dbname=rag", "host=db user=app password=*** dbname=rag"),
        ("host=db password = 's3 c\\'ret' dbname=rag", "host=db password = *** dbname=rag"),
        ("PGPASSWORD=s3cret psql -h db", "PGPASSWORD=*** psql -h db"),
        ("postgresql://postgres:@/rag?host=/srv/pg", "postgresql://postgres:@/rag?host=/srv/pg"),
        ("postgresql:///rag?host=/srv/pg", "postgresql:///rag?host=/srv/pg"),
    ],
)
def test_redact_hides_every_form_of_dsn_password(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown


def test_a_malformed_dsn_is_not_quoted_back() -> None:
    with pytest.raises(DatabaseError) as failure:
        migrate("postgresql://app:s3cr%zzet@127.0.0.1:1/rag")  # libpq quotes the bad token
    assert "s3cr" not in str(failure.value) and "percent-encoded" in str(failure.value)
    # Tracebacks, Dagster's included, leave out a suppressed context.
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_unreachable_and_silent_endpoints_are_named() -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        for url, expected in [(closed_url, "cannot reach"), (silent_url, "did not answer within 0.5s")]:
            settings = EmbeddingSettings(provider="openai", model="m", base_url=url, timeout_seconds=0.5)
            embedder = OpenAICompatibleEmbedder(replace(settings, max_retries=0), api_key=None)
            with pytest.raises(EmbeddingError, match=re.escape(f"{expected}")) as failure:
                embedder.embed(["x"])
            assert f"{url}/embeddings" in str(failure.value)
            chat = ChatClient(base_url=url, model="m", api_key=None, timeout_seconds=0.5, max_retries=0)
            with pytest.raises(LLMError, match=re.escape(f"{url}/chat/completions")):
                chat.complete([{"role": "user", "content": "hi"}])
