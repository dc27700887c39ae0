"""The embedding ledger: one vector per (text hash, model), written in batches by binary COPY."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from pgvector import Vector
from psycopg import sql

from ragline.index.embedding import vector_problems
from ragline.storage.db import query
from ragline.types import Embedder, EmbeddingError

# Each batch is committed on its own, so a failure loses at most one batch of model work.
COMMIT_EVERY = 512


@dataclass
class EmbedStats:
    model_id: str
    chunks: int = 0
    chunks_reused: int = 0
    texts_embedded: int = 0
    tokens_embedded: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.texts_embedded / self.seconds if self.seconds else 0.0


def embed_pending(
    conn: psycopg.Connection,
    source: str,
    embedder: Embedder,
    *,
    progress: Callable[[str], None] = lambda _msg: None,
) -> EmbedStats:
    """Embed every current chunk text of the source that this model has not embedded yet.

    Texts are keyed by hash, so a paragraph shared by many documents, or unchanged across
    versions, is embedded once.
    """
    started = time.perf_counter()
    model = embedder.model_id
    stats = EmbedStats(model)
    params = {"source": source, "model_id": model}
    with conn.transaction():
        pending = conn.execute(
            sql.SQL("SELECT count(*) FROM ({}) AS pending").format(sql.SQL(query("texts_needing_embedding"))),
            params,
        ).fetchone()[0]
        stats.chunks = conn.execute(query("count_current_chunks"), {"source": source}).fetchone()[0]
        stats.chunks_reused = conn.execute(query("chunks_already_embedded"), params).fetchone()[0]
    if not pending:
        stats.seconds = time.perf_counter() - started
        return stats
    # The ledger has no ANN index (search reads ragline.serving_vectors), so a bulk COPY never
    # updates an HNSW graph row by row and never takes an index away from readers.
    dim = embedder.dim
    progress(f"embedding {pending} new texts for {source} with {model}")
    # A server-side cursor streams the texts, so memory does not grow with the backlog; WITH HOLD
    # keeps it open across the per-batch commits on this connection.
    with conn.cursor(name=f"pending_texts_{source}", withhold=True) as cursor:
        cursor.execute(query("texts_needing_embedding"), params)
        while batch := cursor.fetchmany(COMMIT_EVERY):
            embed_batch(conn, embedder, dim, batch, stats)
            elapsed = time.perf_counter() - started
            rate = stats.texts_embedded / elapsed
            progress(
                f"{source}: {stats.texts_embedded}/{pending} texts embedded "
                f"({rate:.1f}/s, model {stats.model_seconds:.1f}s of {elapsed:.1f}s)"
            )
    stats.seconds = time.perf_counter() - started
    return stats


def embed_batch(conn: psycopg.Connection, embedder: Embedder, dim: int, batch, stats: EmbedStats) -> None:
    model = embedder.model_id
    texts = [t for _h, t, _n in batch]
    t0 = time.perf_counter()
    vectors = embedder.embed(texts)
    stats.model_seconds += time.perf_counter() - t0
    if vectors.shape != (len(texts), dim):
        raise EmbeddingError(
            f"{model} returned shape {vectors.shape} for {len(texts)} texts, expected dim {dim}"
        )
    bad = vector_problems(vectors)
    if bad:
        examples = ", ".join(f"{batch[p.index][0][:12]}: {p.problem}" for p in bad[:5])
        raise EmbeddingError(
            f"{model} returned {len(bad)} unusable vectors ({examples}); nothing of this "
            "batch was stored, earlier batches were"
        )
    _store(conn, model, dim, batch, vectors, embedder)
    stats.texts_embedded += len(batch)
    stats.tokens_embedded += sum(min(n, embedder.max_tokens) for _h, _t, n in batch)


def stored_dim(conn: psycopg.Connection, embedder: Embedder) -> int:
    """The model's dimension from the ledger when it has vectors, so that a no-op run does not
    call a remote endpoint just to learn it; else from the embedder."""
    row = conn.execute(query("stored_model_dim"), {"model_id": embedder.model_id}).fetchone()
    return row[0] if row else embedder.dim


def _store(conn, model: str, dim: int, batch, vectors, embedder: Embedder) -> None:
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS embeddings_load "
            "(text_hash text, dim integer, embedding vector, token_count integer) ON COMMIT DELETE ROWS"
        )
        with conn.cursor() as cur:
            with cur.copy(
                "COPY embeddings_load (text_hash, dim, embedding, token_count) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "int4", "vector", "int4"])
                for (h, _text, n), vec in zip(batch, vectors, strict=True):
                    copy.write_row((h, dim, Vector(vec), min(n, embedder.max_tokens)))
            # Two partitions can embed the same text at once; the ledger keeps the first.
            cur.execute(query("insert_loaded_embeddings"), {"model_id": model})
