"""The embedding ledger: one vector per (text hash, model), written in batches by binary COPY."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg
from pgvector import Vector
from psycopg import sql

from ragline.index.embedding import vector_problems
from ragline.storage.db import EMBEDDING_CLAIM, query
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
    progress(f"embedding {pending} new texts for {source} with {model}")
    # A server-side cursor streams the texts, so memory does not grow with the backlog; WITH HOLD
    # keeps it open across the per-batch commits on this connection.
    with conn.cursor(name=f"pending_texts_{source}", withhold=True) as cursor:
        cursor.execute(query("texts_needing_embedding"), params)

        def report() -> None:
            elapsed = time.perf_counter() - started
            rate = stats.texts_embedded / elapsed
            progress(
                f"{source}: {stats.texts_embedded}/{pending} texts embedded "
                f"({rate:.1f}/s, model {stats.model_seconds:.1f}s of {elapsed:.1f}s)"
            )

        embed_batches(conn, embedder, iter(lambda: cursor.fetchmany(COMMIT_EVERY), []), stats, report)
    stats.seconds = time.perf_counter() - started
    return stats


def embed_batches(
    conn: psycopg.Connection,
    embedder: Embedder,
    batches: Iterable[list[tuple]],
    stats: EmbedStats,
    after_batch: Callable[[], None] = lambda: None,
) -> None:
    """Embed batches of (text hash, text, token count) rows, each committed on its own.

    Concurrent runs split the work instead of repeating it: a run embeds only the texts whose claim
    it takes; the texts another run holds are waited for once the batches are done, and embedded
    here only if that run stored no vector for them (it failed).
    """
    deferred: list[tuple] = []
    for batch in batches:
        deferred += _embed_claimed(conn, embedder, batch, stats)
        after_batch()
    while deferred:
        embedded = stats.texts_embedded
        rows = {r[0]: r for r in deferred}
        missing = [rows[h] for h in _without_vector(conn, embedder, list(rows))]
        deferred = []
        for i in range(0, len(missing), COMMIT_EVERY):
            deferred += _embed_claimed(conn, embedder, missing[i : i + COMMIT_EVERY], stats)
        if stats.texts_embedded > embedded:
            after_batch()
        if deferred:
            # Wait until the run holding this claim commits (or fails), then look again.
            wait_for_claim(conn, _claim_name(embedder.model_id, deferred[0][0]))


def wait_for_claim(conn: psycopg.Connection, name: str, poll_seconds: float = 0.2) -> None:
    """Return once no other run holds the claim. Polls in short transactions rather than blocking
    in one: a blocked waiter would hold a snapshot all the while, which stalls every CREATE INDEX
    CONCURRENTLY and VACUUM behind a stuck claim holder."""
    params = {"namespace": EMBEDDING_CLAIM, "name": name}
    while not _claim_free(conn, params):
        time.sleep(poll_seconds)


def _claim_free(conn: psycopg.Connection, params: dict) -> bool:
    if conn.autocommit:  # a statement of its own: the lock it takes ends with it
        return conn.execute(query("advisory_try_xact_lock"), params).fetchone()[0]
    with conn.transaction():
        return conn.execute(query("advisory_try_xact_lock"), params).fetchone()[0]


def _claim_name(model_id: str, text_hash: str) -> str:
    return f"{model_id} {text_hash}"


def _without_vector(conn: psycopg.Connection, embedder: Embedder, hashes: list[str]) -> list[str]:
    params = {"model_id": embedder.model_id, "hashes": hashes}
    return [h for (h,) in conn.execute(query("texts_without_vector"), params)]


def _embed_claimed(
    conn: psycopg.Connection, embedder: Embedder, batch: list[tuple], stats: EmbedStats
) -> list[tuple]:
    """Claim the batch's texts that no other run is embedding, embed and store those that still
    have no vector; returns the rows another run holds. The claims last as long as the transaction,
    the model's work included, so a failure releases them with nothing stored."""
    rows = {r[0]: r for r in batch}
    params = {"namespace": EMBEDDING_CLAIM, "model_id": embedder.model_id, "hashes": list(rows)}
    with conn.transaction():
        claimed = {h for (h,) in conn.execute(query("claim_texts_to_embed"), params)}
        # A statement of its own, after the claims: its snapshot sees what their last holders stored.
        todo = [rows[h] for h in _without_vector(conn, embedder, sorted(claimed))]
        if todo:
            embed_batch(conn, embedder, embedder.dim, todo, stats)
    return [r for h, r in rows.items() if h not in claimed]


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
            # Claims keep concurrent runs from embedding a text twice; the ledger keeps the first anyway.
            cur.execute(query("insert_loaded_embeddings"), {"model_id": model})
