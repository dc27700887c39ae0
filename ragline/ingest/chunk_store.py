"""Bring a source's chunks in line with its live documents and chunker settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from ragline.ingest.chunking import Chunker, chunk_id, text_hash
from ragline.storage.db import SOURCE_LOCK, query, xact_lock

# Documents read from the cursor and chunked per COPY statement.
DOCUMENTS_PER_COPY = 200


@dataclass
class ChunkStats:
    documents_chunked: int = 0
    documents_quarantined: int = 0  # live documents whose text yields no chunk
    chunks_added: int = 0
    chunks_removed: int = 0
    current_chunks: int = 0
    live_documents: int = 0
    tokens_min: int = 0
    tokens_mean: float = 0.0
    tokens_max: int = 0


def chunk_rows(
    chunker: Chunker, source: str, doc_id: str, version: int, content_hash: str, text: str
) -> Iterator[tuple]:
    """One document version's chunks as rows of ragline.chunks' COPY columns (chunk_id .. chunker)."""
    for c in chunker.split(text):
        yield (
            chunk_id(source, doc_id, version, content_hash, chunker.id, c.chunk_index),
            source,
            doc_id,
            version,
            c.chunk_index,
            c.text,
            text_hash(c.text),
            c.token_count,
            c.start_char,
            c.end_char,
            Jsonb(c.metadata),
            chunker.id,
        )


def _copy_chunks(
    conn: psycopg.Connection, chunker: Chunker, source: str, documents: list[tuple], unchunkable: list[str]
) -> int:
    """COPY the chunks of (doc_id, version, content_hash, text) rows; returns how many. A document
    without chunks is added to `unchunkable`."""
    added = 0
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY ragline.chunks (chunk_id, source, doc_id, doc_version, chunk_index, text,"
            " text_hash, token_count, start_char, end_char, metadata, chunker) FROM STDIN"
        ) as copy,
    ):
        for doc_id, version, content_hash, text in documents:
            before = added
            for row in chunk_rows(chunker, source, doc_id, version, content_hash, text):
                copy.write_row(row)
                added += 1
            if added == before:
                unchunkable.append(doc_id)
    return added


def rechunk_source(conn: psycopg.Connection, source: str, chunker: Chunker) -> ChunkStats:
    """Chunk live documents that have no chunks under this chunker; drop chunks that are not
    current (older document versions, deleted documents, other chunker settings) unless a generation
    the source serves or keeps for rollback still uses them. One transaction."""
    stats = ChunkStats()
    unchunkable: list[str] = []
    with conn.transaction():
        # One writer per source (as store_scan): two runs would otherwise copy the same chunk ids.
        xact_lock(conn, SOURCE_LOCK, source)
        conn.execute(query("set_source_chunker"), {"source": source, "chunker": chunker.id})
        stats.chunks_removed = conn.execute(
            query("delete_stale_chunks"), {"source": source, "chunker": chunker.id}
        ).rowcount
        documents = 0
        # A server-side cursor streams the documents (their snapshot is the cursor's, so the chunks
        # written meanwhile change nothing it returns): memory does not grow with the source.
        with conn.cursor(name="documents_needing_chunks") as todo:
            todo.execute(query("documents_needing_chunks"), {"source": source, "chunker": chunker.id})
            while batch := todo.fetchmany(DOCUMENTS_PER_COPY):
                documents += len(batch)
                stats.chunks_added += _copy_chunks(conn, chunker, source, batch, unchunkable)
        stats.documents_chunked = documents - len(unchunkable)
        if unchunkable:
            # A text the tokenizer reads as nothing is quarantined, not a failed check for the
            # whole source; raw_documents keeps it out until its content changes.
            conn.execute(query("mark_documents_deleted"), {"source": source, "doc_ids": unchunkable})
            with conn.cursor() as cur:
                cur.executemany(
                    query("upsert_quarantine"),
                    [
                        {
                            "source": source,
                            "path": doc_id,
                            "reason": "no_chunks",
                            "detail": f"the text has no tokens for {chunker.tokenizer.name}",
                            "size_bytes": None,
                        }
                        for doc_id in unchunkable
                    ],
                )
        stats.documents_quarantined = len(unchunkable)
        row = conn.execute(query("chunk_summary"), {"source": source}).fetchone()
        (
            stats.current_chunks,
            stats.tokens_min,
            stats.tokens_mean,
            stats.tokens_max,
            stats.live_documents,
        ) = (row[0], row[1] or 0, float(row[2] or 0), row[3] or 0, row[4])
    return stats
