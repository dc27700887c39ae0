"""What the database says was built: content hashes (data versions) of each step's output, so that a
re-run that changed nothing is recognisable, and the first day the project stored anything."""

from __future__ import annotations

import datetime as dt
import hashlib

import psycopg

from ragline.config import Settings
from ragline.storage.db import database_url, query
from ragline.types import DatabaseError

# What each asset's data version hashes (sql/queries/version_of_<name>.sql).
DOCUMENTS = "documents"
CHUNKS = "chunks"
EMBEDDINGS = "embeddings"
PUBLICATIONS = "publications"
EVAL_SETS = "eval_sets"
VARIANT_CHUNKS = "variant_chunks"


def stored_version(conn: psycopg.Connection, what: str, **params: object) -> str:
    """The hash of what the database holds now for one kind of output (see the names above)."""
    return conn.execute(query(f"version_of_{what}"), params).fetchone()[0]


def combined_version(*parts: object) -> str:
    """One hash of several parts (stored versions, model ids, verdicts)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def first_partition_day(settings: Settings) -> tuple[dt.date, str]:
    """The first daily partition of the quality assets, and where it comes from: evaluation.start_date
    if set; else the day the project was installed (its first migration, which gc never deletes,
    or an older stored document version); else today.
    Called when definitions load: it never starts a database and gives up after 2 seconds."""
    if settings.evaluation.start_date:
        return dt.date.fromisoformat(settings.evaluation.start_date), "evaluation.start_date"
    today = dt.datetime.now(dt.UTC).date()
    try:
        url = database_url(settings.data_dir, start=False)
        with psycopg.connect(url, connect_timeout=2) as conn:
            first = conn.execute(query("first_materialized_day")).fetchone()[0]
    except (psycopg.Error, DatabaseError, OSError):
        first = None  # no database yet, or not reachable: nothing was materialized that we can see
    if first is None:
        return today, "today: nothing materialized yet"
    return min(first, today), "the day this project was installed (its first migration)"
