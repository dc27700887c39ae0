"""Migrations: applied once, recorded with checksum and time; edited ones are refused."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from ragline.db import DatabaseError, migrate, migrations, sql_dir

SHIPPED = [m.name for m in migrations()]


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
