"""Exact Okapi BM25 over ragline's own postings in Postgres: one statement scores every posting of the
query's terms (bm25_top_texts.sql), equal to the exhaustive reference (bm25_exhaustive.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import psycopg

from ragline.storage.db import query

# BM25 extensions a server may offer; ragline reports them, and keeps its own postings otherwise.
BM25_EXTENSIONS = ("pg_search", "pg_textsearch", "vchord_bm25")


@dataclass(frozen=True)
class ScoredText:
    text_hash: str
    score: float


@dataclass
class Bm25Result:
    texts: list[ScoredText]


class Bm25Backend(Protocol):
    """What lexical search needs from a BM25 engine: a chunk set's best texts for a query, ranked by
    (score desc, text_hash); k None means every text that shares a term with the query."""

    name: str

    def top_texts(
        self, conn: psycopg.Connection, chunk_set: str, text: str, k: int | None, *, k1: float, b: float
    ) -> Bm25Result: ...


@dataclass(frozen=True)
class Bm25Extension:
    name: str
    available_version: str | None
    installed_version: str | None


def bm25_extensions(conn: psycopg.Connection) -> list[Bm25Extension]:
    """The BM25 extensions (pg_search, pg_textsearch, vchord_bm25) the server offers or this database
    has installed. ragline detects them but searches its own postings: no adapter for them has been
    tested yet (none can be installed into the embedded server)."""
    rows = conn.execute(query("bm25_extensions"), {"names": list(BM25_EXTENSIONS)}).fetchall()
    return [Bm25Extension(*row) for row in rows]


class ExhaustiveBm25:
    """BM25 in one statement (bm25_top_texts.sql): every posting of the query's terms scored, the
    top texts kept. What lexical search serves. On real text at 24k and 100k chunks it answered
    faster than a threshold (MaxScore) search over impact-ordered postings, whose rounds cost a round
    trip each and whose common query terms' bounds fell slowly (benchmarks/results/bm25_latency.md);
    migration 0017 removed that search and the index it read."""

    name = "ragline-postings-exhaustive"

    def top_texts(
        self, conn: psycopg.Connection, chunk_set: str, text: str, k: int | None, *, k1: float, b: float
    ) -> Bm25Result:
        return _one_statement(conn, "bm25_top_texts", chunk_set, text, k, k1=k1, b=b, prepare=True)


def exhaustive_top_texts(
    conn: psycopg.Connection, chunk_set: str, text: str, k: int | None, *, k1: float, b: float
) -> Bm25Result:
    """The reference: every posting of the query's terms scored (bm25_exhaustive.sql)."""
    return _one_statement(conn, "bm25_exhaustive", chunk_set, text, k, k1=k1, b=b, prepare=False)


def _one_statement(
    conn: psycopg.Connection,
    name: str,
    chunk_set: str,
    text: str,
    k: int | None,
    *,
    k1: float,
    b: float,
    prepare: bool,
) -> Bm25Result:
    """Runs a named BM25 statement that returns (text_hash, score) rows, best first."""
    params = {"query": text, "chunk_set": chunk_set, "k1": k1, "b": b, "scan": k}
    rows = conn.execute(query(name), params, prepare=prepare).fetchall()
    return Bm25Result([ScoredText(h, float(s)) for h, s in rows])
