"""The serving HNSW build: memory for its graph, what it reports when the graph outgrows it, and a
build the server refuses that memory."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ragline.config import IndexSettings
from ragline.index.search_index import build_indexes, hnsw_graph_mb
from ragline.storage.db import Database
from tests.conftest import drop_database, fresh_database, local_embedder

COPIES = "test:noisy-copies"  # a model id of its own: its vectors get their own partial index


@pytest.fixture
def conn(server_url: str, handbook_template: str) -> Iterator:
    name, url = fresh_database(server_url, template=handbook_template)
    try:
        with Database(url, max_size=1) as db, db.connection() as connection:
            yield connection
    finally:
        drop_database(server_url, name)


def noisy_copies(conn, model) -> int:
    """2,000+ vectors under COPIES: the handbook's real ones, each copied with a little noise."""
    served = conn.execute(
        "SELECT count(*) FROM ragline.serving_vectors WHERE model_id = %s", (model.model_id,)
    ).fetchone()[0]
    copies = -(-2000 // served)
    conn.execute(
        "INSERT INTO ragline.serving_vectors (model_id, text_hash, embedding) "
        "SELECT %(copies_model)s, v.text_hash || '#' || i, v.embedding + n.noise "
        "FROM ragline.serving_vectors v CROSS JOIN generate_series(1, %(n)s) i CROSS JOIN LATERAL "
        "  (SELECT array_agg(random() * 0.02)::vector AS noise\n"
        "   FROM generate_series(1, %(dim)s) WHERE i > 0) n "
        "WHERE v.model_id = %(model)s",
        {"copies_model": COPIES, "model": model.model_id, "n": copies, "dim": model.dim},
    )
    return served * copies


def test_an_hnsw_build_gets_memory_for_its_graph_and_reports_when_it_outgrows_it(conn):
    model = local_embedder()
    vectors = noisy_copies(conn, model)
    # A server whose maintenance_work_mem is far too small for the graph (1 MB holds ~440 vectors).
    conn.execute("SET maintenance_work_mem = '1MB'")

    stats = build_indexes(conn, COPIES, model.dim, IndexSettings())
    assert stats.hnsw_built and stats.vectors == vectors
    assert stats.hnsw_memory_mb == hnsw_graph_mb(vectors, model.dim, 16) > 1
    assert stats.hnsw_spilled is None  # without the raise, pgvector finishes this graph on disk
    # The pooled session gets its own setting back.
    assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == "1MB"

    # Capped below what the graph needs (other settings: a new index), the spill is reported.
    capped = build_indexes(conn, COPIES, model.dim, IndexSettings(hnsw_m=8, build_memory_mb=1))
    assert capped.hnsw_built and capped.hnsw_memory_mb == 1
    assert "no longer fits into maintenance_work_mem" in (capped.hnsw_spilled or "")
    assert capped.indexes_dropped == [stats.hnsw_index]
    assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == "1MB"
    # A session that never set it gets the server's value back (RESET), not a session copy of it.
    conn.execute("RESET maintenance_work_mem")
    assert build_indexes(conn, COPIES, model.dim, IndexSettings(hnsw_m=12)).hnsw_memory_mb > 1
    source = "SELECT source FROM pg_settings WHERE name = 'maintenance_work_mem'"
    assert conn.execute(source).fetchone()[0] != "session"


# A server that cannot give a build the memory it asks for: a parallel HNSW build keeps its graph in
# dynamic shared memory, and a container's 64 MB /dev/shm makes PostgreSQL fail the CREATE INDEX
# with disk_full ("could not resize shared memory segment ... No space left on device") after it
# has made the index, which a failed CREATE INDEX CONCURRENTLY leaves behind, invalid. This event
# trigger fails every CREATE INDEX the same way, at its end, while maintenance_work_mem is above
# `limit` bytes, with the given error code.
REFUSE_BUILDS = """
CREATE OR REPLACE FUNCTION public.refuse_index_builds() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_size_bytes(current_setting('maintenance_work_mem')) > {limit} THEN
        RAISE EXCEPTION 'could not resize shared memory segment "/PostgreSQL.4242" to % bytes: %',
            pg_size_bytes(current_setting('maintenance_work_mem')), 'No space left on device'
            USING ERRCODE = '{errcode}';
    END IF;
END
$$;
DROP EVENT TRIGGER IF EXISTS refuse_index_builds;
CREATE EVENT TRIGGER refuse_index_builds ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
    EXECUTE FUNCTION public.refuse_index_builds();
"""


def refuse_index_builds(conn, limit: int, errcode: str = "disk_full") -> None:
    conn.execute(REFUSE_BUILDS.format(limit=limit, errcode=errcode))


def test_an_hnsw_build_refused_its_memory_is_built_again_with_the_servers_own_setting(conn):
    model = local_embedder()
    vectors = noisy_copies(conn, model)
    conn.execute("SET maintenance_work_mem = '1MB'")
    refuse_index_builds(conn, 2**20)

    stats = build_indexes(conn, COPIES, model.dim, IndexSettings())
    # The failed build's invalid index dropped, built again with the session's own 1 MB (on disk,
    # past what fits), the refusal reported.
    assert stats.hnsw_built and stats.vectors == vectors and stats.hnsw_memory_mb == 1
    wanted = hnsw_graph_mb(vectors, model.dim, 16)
    assert stats.hnsw_memory_refused.startswith(f"{wanted} MB refused")
    assert "No space left on device" in stats.hnsw_memory_refused
    indexes = (
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid = 'ragline.serving_vectors'::regclass AND indexrelid::regclass::text LIKE %s"
    )
    assert conn.execute(indexes, (f"%{stats.hnsw_index}",)).fetchall() == [
        (f"ragline.{stats.hnsw_index}", True)
    ]
    assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == "1MB"

    # Refused the session's own setting (the build asks for no more when capped at 1 MB): no retry,
    # the error is the caller's.
    refuse_index_builds(conn, 0)
    with pytest.raises(psycopg.errors.DiskFull):
        build_indexes(conn, COPIES, model.dim, IndexSettings(hnsw_m=8, build_memory_mb=1))
    # Another error while the build has more than the session's own setting: no retry either, and
    # the pooled session gets its own setting back.
    refuse_index_builds(conn, 2**20, errcode="out_of_memory")
    with pytest.raises(psycopg.errors.OutOfMemory):
        build_indexes(conn, COPIES, model.dim, IndexSettings(hnsw_m=10))
    assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == "1MB"
