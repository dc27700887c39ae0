"""Migrations: applied once, recorded with checksum and time; edited ones are refused."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from ragline.storage.db import Database, migrate, migrations, sql_dir
from ragline.types import DatabaseError

SHIPPED = [m.name for m in migrations()]


@pytest.fixture
def db_url(empty_db_url):
    """Here a database no migration has touched: these tests start from nothing."""
    return empty_db_url


def test_opening_a_database_runs_no_ddl_and_names_the_pending_migrations(db_url):
    with pytest.raises(DatabaseError, match=rf"{len(SHIPPED)} migrations pending .*run `ragline db migrate`"):
        Database(db_url)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regnamespace('ragline')").fetchone()[0] is None  # nothing created
    migrate(db_url)
    with Database(db_url, max_size=1) as db, db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM ragline.schema_migrations").fetchone()[0] == len(SHIPPED)


def test_applied_once_and_recorded(db_url):
    assert SHIPPED[:2] == ["0001_core_schema.sql", "0002_quality_plane.sql"]
    assert migrate(db_url) == SHIPPED
    assert migrate(db_url) == []
    with psycopg.connect(db_url) as conn:
        name, checksum, applied_at = conn.execute(
            "SELECT name, checksum, applied_at FROM ragline.schema_migrations ORDER BY name LIMIT 1"
        ).fetchone()
        extension = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        view = conn.execute("SELECT to_regclass('ragline.serving_chunks')").fetchone()[0]
    assert name == "0001_core_schema.sql" and len(checksum) == 64 and applied_at is not None
    assert extension is not None and view == "ragline.serving_chunks"


def test_a_routine_migrate_does_not_wait_for_readers_of_the_views(db_url):
    """Views are re-created only when their file changed (or a migration ran): CREATE OR REPLACE
    VIEW would wait for every open reader, and queue new readers behind it."""
    import threading

    migrate(db_url)
    with psycopg.connect(db_url) as reader:
        reader.execute("SELECT * FROM ragline.corpus_chunks LIMIT 0")  # a transaction stays open
        again = threading.Thread(target=migrate, args=(db_url,), daemon=True)
        again.start()
        again.join(timeout=30)
        blocked = again.is_alive()
        reader.rollback()
    again.join()
    assert not blocked, "migrate waited for an open reader of a view it did not need to touch"
    with psycopg.connect(db_url) as conn:
        marks = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'ragline' AND c.relkind = 'v' "
            "AND obj_description(c.oid, 'pg_class') LIKE 'ragline view %%'"
        ).fetchone()[0]
    assert marks == len(list((sql_dir() / "views").glob("*.sql")))


def test_edited_migration_is_refused(db_url, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(sql_dir() / "migrations", folder)
    migrate(db_url, folder)
    path = folder / "0001_core_schema.sql"
    path.write_text(path.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(DatabaseError, match=r"edited since they ran: \['0001_core_schema.sql'\]"):
        migrate(db_url, folder)


def test_new_migration_is_applied_after_the_old_ones(db_url, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(sql_dir() / "migrations", folder)
    migrate(db_url, folder)
    (folder / "9999_add_column.sql").write_text("ALTER TABLE ragline.quarantine ADD COLUMN note text;")
    assert migrate(db_url, folder) == ["9999_add_column.sql"]
    with psycopg.connect(db_url) as conn:
        count = conn.execute("SELECT count(*) FROM ragline.schema_migrations").fetchone()[0]
    assert count == len(SHIPPED) + 1


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(DatabaseError, match="cannot connect"):
        migrate("postgresql://nobody:secret@/nodb?host=/nonexistent-socket-dir")


def test_upgrade_keeps_serving_what_was_served_and_renames_the_local_model_key(db_url):
    """A database from before 0003 (live documents with chunks, vectors of the old local key): after
    the upgrade each source serves those documents as generation 1, under the full ledger key."""
    from ragline.index.embedding import LEGACY_LOCAL_MODEL_ID, local_model_id

    int8 = local_model_id("int8")  # the graph ragline ran before 0003 (and until the fp32 graph)
    from ragline.storage.db import query

    # The schema as 0001 and 0002 left it (migrate() would also create today's views, which need 0003).
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE SCHEMA ragline")
        conn.execute(query("create_migration_ledger"))
        for m in migrations()[:2]:
            conn.execute(m.sql)
            conn.execute(
                "INSERT INTO ragline.schema_migrations (name, checksum) VALUES (%s, %s)", (m.name, m.checksum)
            )
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO ragline.documents (source, doc_id, path, version, content_hash, status) VALUES "
            "('docs', 'a.md', 'a.md', 2, 'h2', 'live'), ('docs', 'gone.md', 'gone.md', 1, 'g', 'deleted')"
        )
        conn.execute(
            "INSERT INTO ragline.document_versions (source, doc_id, version, content_hash, text, char_count) "
            "VALUES ('docs', 'a.md', 1, 'h1', 'old text', 8), ('docs', 'a.md', 2, 'h2', 'apple pie', 9), "
            "('docs', 'gone.md', 1, 'g', 'gone text', 9)"
        )
        conn.execute(
            "INSERT INTO ragline.chunks (chunk_id, source, doc_id, doc_version, chunk_index, text, "
            "text_hash, token_count, chunker) VALUES "
            "('c2', 'docs', 'a.md', 2, 0, 'apple pie', 't2', 2, 'k'), "
            "('cg', 'docs', 'gone.md', 1, 0, 'gone text', 'tg', 2, 'k')"
        )
        for text_hash in ("t2", "tg"):
            conn.execute(
                "INSERT INTO ragline.embeddings (text_hash, model_id, dim, embedding, token_count) "
                "VALUES (%s, %s, 3, '[1,0,0]', 2)",
                (text_hash, LEGACY_LOCAL_MODEL_ID),
            )
        conn.execute(
            "INSERT INTO ragline.serving_model (model_id, dim) VALUES (%s, 3)", (LEGACY_LOCAL_MODEL_ID,)
        )
    assert migrate(db_url) == SHIPPED[2:]
    with psycopg.connect(db_url) as conn:
        served = conn.execute(
            "SELECT source, doc_id, doc_version, chunker FROM ragline.published_documents"
        ).fetchall()
        texts = conn.execute("SELECT chunk_set, text_hash FROM ragline.indexed_texts").fetchall()
        vectors = conn.execute("SELECT model_id, text_hash FROM ragline.serving_vectors").fetchall()
        keys = conn.execute("SELECT DISTINCT model_id FROM ragline.embeddings").fetchall()
        serving = conn.execute("SELECT model_id FROM ragline.serving_model").fetchone()[0]
        bm25 = conn.execute(
            "SELECT lexeme FROM ragline.lexical_postings p JOIN ragline.lexical_lexemes USING (term_id) "
            "ORDER BY 1"
        ).fetchall()
        impact_order = conn.execute(
            "SELECT to_regclass('ragline.lexical_postings_by_impact'), "
            "to_regprocedure('ragline.bm25_impact(integer, integer)'), "
            "(SELECT count(*) FROM pg_attribute WHERE attrelid = 'ragline.lexical_postings'::regclass "
            "AND attname = 'impact' AND NOT attisdropped)"
        ).fetchone()
    assert served == [("docs", "a.md", 2, "k")]
    assert texts == [("default", "t2")]
    assert vectors == [(int8, "t2")] and keys == [(int8,)] and serving == int8
    assert bm25 == [("appl",), ("pie",)]
    # 0017 dropped the impact column, its index and function; the postings stay.
    assert impact_order == (None, None, 0)
