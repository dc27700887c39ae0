"""The serving HNSW build: memory for its graph, and what it reports when the graph outgrows it."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_an_hnsw_build_gets_memory_for_its_graph_and_reports_when_it_outgrows_it(conn):
    model = local_embedder()
    # 2,000+ vectors: the handbook's real ones, each copied with a little noise under another model.
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
    vectors = served * copies
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
