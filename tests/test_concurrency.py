"""Concurrent runs and starts: two runs of a partition converge, texts are embedded once, cold starts
and migrators do not race. The races are made certain, not likely: the test holds a table lock
that both runs reach, waits until both are blocked in Postgres, then lets them go."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from ragline.config import ChunkingSettings, Settings
from ragline.index import embedding_ledger
from ragline.ingest.chunk_store import rechunk_source
from ragline.ingest.chunking import Chunker
from ragline.ingest.documents import store_scan
from ragline.ingest.sources import scan_source
from ragline.storage.db import Database, migrations
from tests.conftest import REPO, local_embedder, write_project

PARAGRAPH = (
    "Section {n} of {name}: the {topic} procedure has {n} steps, reviewed every quarter by the team.\n\n"
)


def write_docs(folder: Path, names: list[str], topic: str = "release") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        text = f"# {name}\n\n" + "".join(PARAGRAPH.format(n=n, name=name, topic=topic) for n in range(1, 9))
        (folder / f"{name}.md").write_text(text, encoding="utf-8")


def tiny_project(root: Path, **overrides) -> Settings:
    write_docs(root / "corpus", ["alpha", "beta", "gamma"])
    source = {"name": "docs", "root": "corpus", "glob": "*.md", "chunking": {"strategy": "markdown"}}
    return write_project(root, [source], **overrides)


def wait_for_blocked(url: str, count: int) -> None:
    """Wait until `count` other sessions of this database are blocked on a lock, or poll for one
    (ragline polls for a run's, an index build's or an embedding claim's lock: its last statement
    shows it, and it holds no advisory lock yet)."""
    deadline = time.monotonic() + 300
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            blocked = conn.execute(
                "SELECT count(*) FROM pg_stat_activity a WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() "
                "AND (wait_event_type = 'Lock' OR (query LIKE '%%pg_try_advisory%%lock(%%' "
                # A session whose try-lock succeeded shows the same last query: it holds the lock.
                "AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid "
                "AND l.locktype = 'advisory' AND l.granted)))"
            ).fetchone()[0]
            if blocked >= count:
                return
            assert time.monotonic() < deadline, f"{blocked} of {count} sessions reached the lock"
            time.sleep(0.05)


@contextmanager
def table_held(url: str, table: str, mode: str) -> Iterator[None]:
    """Hold a lock on the table for the block (EXCLUSIVE: reads go on, writes wait)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            psycopg.sql.SQL("LOCK TABLE ragline.{} IN {} MODE").format(
                psycopg.sql.Identifier(table), psycopg.sql.SQL(mode)
            )
        )
        yield
        conn.commit()


class Runner(threading.Thread):
    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def race(url: str, table: str, mode: str, *targets: Callable[[], object]) -> list[Runner]:
    """Hold a lock on the table; start each target once the ones before it are blocked (on that
    lock or on each other); then release it, and return the finished runners."""
    runs: list[Runner] = []
    with table_held(url, table, mode):
        for target in targets:
            runs.append(Runner(target))
            runs[-1].start()
            wait_for_blocked(url, len(runs))
    for r in runs:
        r.join()
    assert [r.error for r in runs] == [None] * len(runs)
    return runs


def source_run(settings: Settings) -> Callable[[], dg.ExecuteInProcessResult]:
    from orchestration.definitions import SOURCE_PIPELINE_JOB, build_definitions

    job = build_definitions(settings).resolve_job_def(SOURCE_PIPELINE_JOB)

    def run() -> dg.ExecuteInProcessResult:
        # Closed in the thread that made it: its in-memory SQLite refuses other threads.
        with dg.DagsterInstance.ephemeral() as instance:
            return job.execute_in_process(partition_key="docs", instance=instance, raise_on_error=False)

    return run


def test_two_runs_of_one_partition_on_an_edited_folder_converge(tmp_path, db_url):
    """Run A scans the first edit, run B the second; both reach the version insert together. Each
    version keeps its own text, and the document serves the file as it is now."""
    settings = published_tiny_project(tmp_path)
    doc = tmp_path / "corpus" / "beta.md"
    run = source_run(settings)

    def edit_and_run(line: str) -> Callable[[], dg.ExecuteInProcessResult]:
        def edit_then_run() -> dg.ExecuteInProcessResult:
            doc.write_text(doc.read_text() + line, encoding="utf-8")
            return run()

        return edit_then_run

    a, b = race(
        db_url,
        "document_versions",
        "EXCLUSIVE",
        edit_and_run("First edit: the rollback drill.\n"),
        edit_and_run("Second edit: the canary stage.\n"),
    )
    failures = [
        e.event_specific_data.error.message for r in (a, b) for e in r.result.get_step_failure_events()
    ]
    assert a.result.success and b.result.success, failures

    with psycopg.connect(db_url) as conn:
        versions = conn.execute(
            "SELECT version, content_hash, text FROM ragline.document_versions "
            "WHERE doc_id = 'beta.md' ORDER BY version"
        ).fetchall()
        current = conn.execute(
            "SELECT d.version, d.content_hash, v.content_hash FROM ragline.documents d "
            "JOIN ragline.document_versions v USING (source, doc_id, version) WHERE d.doc_id = 'beta.md'"
        ).fetchone()
        served = " ".join(
            r[0]
            for r in conn.execute(
                "SELECT text FROM ragline.corpus_chunks WHERE chunk_set = 'default' AND doc_id = 'beta.md'"
            )
        )
    # Nothing dropped: the original, the first edit and the second, one version per hash.
    assert len(versions) == len({h for _v, h, _t in versions}) == 3
    assert "First edit" in versions[1][2] and "Second edit" not in versions[1][2]
    assert current[0] == 3 and current[1] == current[2]  # the recorded hash is the stored text's
    assert "Second edit: the canary stage." in served


def test_concurrent_embedding_runs_embed_each_text_once(tmp_path, db_url):
    """Both runs reach the ledger insert with the same pending texts; the second waits for the
    first's claims instead of running the model over the same texts."""
    settings = tiny_project(tmp_path)
    source = settings.sources[0]
    model = local_embedder()
    with Database(db_url, max_size=3) as db:
        with db.connection() as conn:
            store_scan(conn, source.name, scan_source(source))
            rechunk_source(conn, source.name, Chunker(ChunkingSettings(chunk_size=40), model.tokenizer))
            distinct = conn.execute("SELECT count(DISTINCT text_hash) FROM ragline.chunks").fetchone()[0]

        def embed() -> embedding_ledger.EmbedStats:
            with db.connection() as conn:
                return embedding_ledger.embed_pending(conn, source.name, model)

        calls = model.calls
        runs = race(db_url, "embeddings", "EXCLUSIVE", embed, embed)
    embedded = [r.result.texts_embedded for r in runs]
    print(f"\nconcurrent embedding: {embedded} texts embedded by the two runs, {distinct} distinct texts")
    assert sum(embedded) == distinct == model.calls - calls
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ragline.embeddings").fetchone()[0] == distinct


def published_tiny_project(tmp_path: Path) -> Settings:
    settings = tiny_project(tmp_path)
    assert source_run(settings)().success
    return settings


def test_two_index_builds_at_once_take_turns(tmp_path, db_url):
    """Both builds reach CREATE INDEX CONCURRENTLY together: the second waits (polling, holding no
    snapshot) instead of deadlocking with the first or failing on the index the first made."""
    from ragline.config import IndexSettings
    from ragline.index.search_index import build_indexes

    published_tiny_project(tmp_path)
    model = local_embedder()
    with Database(db_url, max_size=2) as db:

        def build():
            with db.connection() as conn:
                return build_indexes(conn, model.model_id, model.dim, IndexSettings())

        # A writer's open transaction, which CREATE INDEX CONCURRENTLY waits for.
        runs = race(db_url, "serving_vectors", "ROW EXCLUSIVE", build, build)
    assert sorted(r.result.hnsw_built for r in runs) == [False, True]


def test_two_first_drift_runs_pin_one_baseline(tmp_path, db_url):
    """Both runs find no baseline and reach its insert together; the second finds it pinned."""
    import datetime as dt

    from ragline.config import DriftSettings
    from ragline.monitoring.drift import measure_drift

    published_tiny_project(tmp_path)
    model = local_embedder()
    with Database(db_url, max_size=2) as db:

        def drift(day: dt.date):
            with db.connection() as conn:
                return measure_drift(conn, day, model, DriftSettings(permutations=20))

        # The pin reads the ledger: both runs stop there, after finding no baseline.
        days = [dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
        runs = race(db_url, "embeddings", "ACCESS EXCLUSIVE", *[lambda d=d: drift(d) for d in days])
    assert sorted(r.result.pinned_now for r in runs) == [False, True]
    with psycopg.connect(db_url) as conn:
        pinned = conn.execute(
            "SELECT count(*), count(DISTINCT text_hash) FROM ragline.drift_baseline"
        ).fetchone()
    assert pinned[0] == pinned[1] > 0


def test_dagster_queues_one_run_per_partition(tmp_path, db_url, monkeypatch):
    """The daemon's runs (sensor, schedule, automation, UI) of one source wait in the queue."""
    from ragline.cli import dagster_environment

    settings = write_project(tmp_path, [{"name": "docs", "root": "."}])
    for key, value in dagster_environment(settings).items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.get() as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits


def test_migrations_applied_by_two_processes_at_once(tmp_path, empty_db_url):
    """Two `ragline db migrate` on an empty database: both succeed, each migration is applied once,
    and the Dagster instance's tables are made once."""
    settings = write_project(tmp_path, [{"name": "docs", "root": "."}])
    env = {**os.environ, "DATABASE_URL": empty_db_url}
    env.pop("DAGSTER_HOME", None)
    command = [sys.executable, "-m", "ragline.cli", "--config", str(settings.path), "db", "migrate"]
    procs = [subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    procs.append(
        subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    )
    outs = [p.communicate()[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    shipped = [m.name for m in migrations()]
    assert sorted(o.strip().splitlines()[-1] for o in outs) == sorted(
        ["applied: " + ", ".join(shipped), "schema is up to date"]
    ), outs
    with psycopg.connect(empty_db_url) as conn:
        recorded = [r[0] for r in conn.execute("SELECT name FROM ragline.schema_migrations ORDER BY name")]
        dagster_tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('runs', 'event_logs')"
        ).fetchone()[0]
    assert recorded == shipped and dagster_tables == 2


@pytest.fixture
def cold_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A tiny project whose data dir holds no server yet (short path: the socket lives there)."""
    data_dir = REPO / ".ragline" / f"cold-{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = tiny_project(tmp_path, data_dir=str(data_dir))
    try:
        yield settings
    finally:
        subprocess.run(
            [sys.executable, "-m", "ragline.cli", "--config", str(settings.path), "db", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data_dir, ignore_errors=True)


def test_two_cold_starts_at_once_both_succeed_and_embed_each_text_once(cold_project, monkeypatch):
    """Two `ragline materialize` on a fresh data dir: one starts the embedded server, both succeed,
    and the model embeds each distinct text once across the two runs."""
    settings = cold_project
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME", "XDG_RUNTIME_DIR")
    }
    command = [sys.executable, "-m", "ragline.cli", "--config", str(settings.path), "materialize"]
    procs = [
        subprocess.Popen(
            command,
            env=env,
            cwd=settings.project_dir,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outs = [p.communicate()[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(o[-3000:] for o in outs)

    from ragline.cli import dagster_environment

    for key, value in dagster_environment(settings).items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("embeddings")), limit=10
        ).records
    embedded = [r.asset_materialization.metadata["chunks_embedded"].value for r in records]
    with psycopg.connect(os.environ["DAGSTER_PG_URL"].replace("+psycopg2", "")) as conn:
        distinct = conn.execute("SELECT count(DISTINCT text_hash) FROM ragline.chunks").fetchone()[0]
        vectors = conn.execute("SELECT count(*) FROM ragline.embeddings").fetchone()[0]
    print(f"\ncold starts: {embedded} texts embedded by the two runs, {distinct} distinct texts")
    assert len(embedded) == 2 and sum(embedded) == distinct == vectors
