"""Fixtures: one embedded PostgreSQL for the session, a fresh database per test, small projects."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml

from ragline.config import Settings, load_settings
from ragline.monitoring.board import render_board
from ragline.storage.db import database_url, migrate, stop_embedded

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "corpus"
# One embedded server per pytest-xdist worker (gw0, gw1, ...): workers never share a data dir.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
TEST_DATA_DIR = REPO / ".ragline" / (f"test-{_WORKER}" if _WORKER else "test")
# Migrated once per session (the explicit step, as `ragline db migrate`); test databases are copies.
MIGRATED_TEMPLATE = "t_migrated_template"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The embedded server the tests share (its own data dir, so a demo's data is untouched)."""
    import os

    saved = os.environ.pop("DATABASE_URL", None)
    url = database_url(TEST_DATA_DIR)
    drop_database(url, MIGRATED_TEMPLATE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(MIGRATED_TEMPLATE)))
    migrate(database_at(url, MIGRATED_TEMPLATE))
    yield url
    stop_embedded(TEST_DATA_DIR)
    shutil.rmtree(TEST_DATA_DIR, ignore_errors=True)
    if saved is not None:
        os.environ["DATABASE_URL"] = saved


def database_at(server_url: str, name: str) -> str:
    return server_url.replace("/ragline?", f"/{name}?")


def fresh_database(
    server_url: str, migrated: bool = True, template: str = MIGRATED_TEMPLATE
) -> tuple[str, str]:
    """A new database: a copy of a template (default: migrated, no data), or empty (for the
    migrations' own tests)."""
    name = "t_" + uuid.uuid4().hex[:12]
    create = psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
    if migrated:
        create += psycopg.sql.SQL(" TEMPLATE {}").format(psycopg.sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(create)
    return name, database_at(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    from orchestration.resources import close_databases

    close_databases()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
        )


@pytest.fixture
def db_url(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new migrated database without data; DATABASE_URL points at it, as a user's external
    server would."""
    name, url = fresh_database(server_url)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def empty_db_url(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new database that no migration has touched; DATABASE_URL points at it."""
    name, url = fresh_database(server_url, migrated=False)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def llm_url() -> Iterator[str]:
    """llama.cpp serving SmolLM2-135M on loopback, one server for the session (one thread, to
    spare the cores). Modules that need their own server state start their own."""
    from tests.llm_server import local_llm_server

    with local_llm_server(n_threads=1) as url:
        yield url


# The small corpus that answer-plane modules share: three handbook pages, materialized (data plane)
# once per session into a template database; each module answers over its own copy of it.
HANDBOOK = ("paid-time-off.md", "expenses-and-travel.md", "meeting-norms.md")


def handbook_project(root: Path, **overrides: Any) -> Settings:
    """root/corpus/handbook holding the HANDBOOK pages, and a ragline.yaml over them; overrides may
    only add blocks that the data plane does not read (llm, answer, prices of chat models, cache,
    guardrails, serve), so that the shared template holds what this project would materialize."""
    folder = root / "corpus" / "handbook"
    folder.mkdir(parents=True, exist_ok=True)
    for file in HANDBOOK:
        shutil.copy(EXAMPLES / "handbook" / file, folder / file)
    sources = [{"name": "handbook", "root": "corpus/handbook", "chunking": {"strategy": "markdown"}}]
    return write_project(root, sources, **overrides)


@pytest.fixture(scope="session")
def handbook_template(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a database holding the HANDBOOK project materialized (data plane and indexes);
    never use it directly: `fresh_database(server_url, template=handbook_template)` copies it."""
    from orchestration.resources import close_databases

    name, url = fresh_database(server_url)
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", url)
    try:
        run(handbook_project(tmp_path_factory.mktemp("handbook")), quality=False)
    finally:
        mp.undo()
    close_databases()  # a template must have no open connections when it is copied
    yield name
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def demo(server_url: str) -> Iterator[dict[str, Any]]:
    """The repository's ragline.yaml over examples/, materialized twice in a fresh database (the
    whole pipeline: data plane, eval sets, variants, today's scores and drift). DATABASE_URL is
    set only while the runs execute; tests that need it again set it themselves."""
    name, url = fresh_database(server_url)
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", url)
    settings = load_settings(REPO / "ragline.yaml")
    first = run(settings)
    after_first = counts(url)
    second = run(settings, quality=False)  # the no-op rerun of the data plane and indexes
    after_second = counts(url)
    mp.undo()
    yield {
        "url": url,
        "settings": settings,
        "first": first,
        "second": second,
        "after_first": after_first,
        "after_second": after_second,
    }
    drop_database(server_url, name)


def write_project(root: Path, sources: list[dict[str, Any]], **overrides: Any) -> Settings:
    """A ragline.yaml under root with the given sources (paths relative to root)."""
    config = {
        "data_dir": ".ragline",
        "embedding": {"provider": "local", "model": "all-MiniLM-L6-v2"},
        "index": {"recall_sample": 100},
        "defaults": {"chunking": {"chunk_size": 200, "chunk_overlap": 20}},
        "sources": sources,
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = root / "ragline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_settings(path)


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Callable[..., Settings]:
    """Make a project over copies of demo files: project({"docs": ["handbook/onboarding.md"]})."""

    def make(files: dict[str, list[str]], strategy: str = "markdown", **overrides: Any) -> Settings:
        sources = []
        for name, paths in files.items():
            folder = tmp_path / "corpus" / name
            folder.mkdir(parents=True, exist_ok=True)
            for rel in paths:
                shutil.copy(EXAMPLES / rel, folder / Path(rel).name)
            sources.append({"name": name, "root": f"corpus/{name}", "chunking": {"strategy": strategy}})
        return write_project(tmp_path, sources, **overrides)

    return make


def run(
    settings: Settings, sources: list[str] | None = None, day: str | None = None, quality: bool = True
) -> dict[str, dg.ExecuteInProcessResult]:
    """Materialize the pipeline in-process on an ephemeral Dagster instance (quality assets: `day`)."""
    from orchestration.commands import run_pipeline

    names = sources or [s.name for s in settings.sources]
    return dict(run_pipeline(settings, names, dg.DagsterInstance.ephemeral(), day=day, quality=quality))


def quality_run(results: dict[str, dg.ExecuteInProcessResult]) -> dg.ExecuteInProcessResult:
    return next(r for what, r in results.items() if what.startswith("quality "))


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [mat] = result.asset_materializations_for_node(asset)
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool | str]:
    """Each check's verdict: True, False, or "untested" (a check that could not test anything,
    reported as a failed WARN result with `not_tested`; truthy, so `all(...)` means none failed)."""
    return {
        f"{e.asset_key.to_user_string()}.{e.check_name}": (
            UNTESTED
            if not e.passed and e.severity == dg.AssetCheckSeverity.WARN and "not_tested" in e.metadata
            else e.passed
        )
        for e in result.get_asset_check_evaluations()
    }


UNTESTED = "untested"


def table_rows(value: Any) -> list[dict[str, str]]:
    """The rows of a table metadata value (assets/tables.py inline_table), as dicts."""
    return [dict(r.data) for r in value.records]


def counts(url: str) -> dict[str, int]:
    tables = ["documents", "document_versions", "chunks", "embeddings", "quarantine"]
    with psycopg.connect(url) as conn:
        out = {
            t: conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM ragline.{}").format(psycopg.sql.Identifier(t))
            ).fetchone()[0]
            for t in [*tables, "serving_chunks"]
        }
    return out


def local_embedder():
    """The process-wide MiniLM instance the assets use (its .calls counts texts embedded)."""
    from orchestration.resources import EmbedderResource

    return EmbedderResource().embedder()


def quality_board(quality: dict[str, Any]) -> str:
    """The status board with only its quality section filled."""
    return render_board(
        {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(),
            "freshness_window": {"warn_hours": 26, "fail_hours": 50},
            "assets": [],
            "failing_checks": [],
            "stale": [],
            "quality": quality,
        }
    )
