"""The embedding ledger: one vector per (text hash, model), written in batches by binary COPY."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql

from ragline.index.embedding import vector_problems
from ragline.index.progress import Progress
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
    terminal: TextIO | None = None,
) -> EmbedStats:
    """Embed every current chunk text of the source that this model has not embedded yet; each
    batch sends `progress` a line with the rate and ETA, and redraws a bar on `terminal` if it is
    a TTY.

    Texts are keyed by hash, so a paragraph shared by many documents, or unchanged across
    versions, is embedded once.
    """
    started = time.perf_counter()
    model = embedder.model_id
    stats = EmbedStats(model)
    params = {"source": source, "model_id": model}
    with conn.transaction():
        pending, pending_tokens = conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(sum(least(token_count, %(max_tokens)s)), 0) FROM ({}) AS p"
            ).format(sql.SQL(query("texts_needing_embedding"))),
            {**params, "max_tokens": embedder.max_tokens},
        ).fetchone()
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
    bar = Progress(source, pending, "texts embedded", progress, terminal, total_work=pending_tokens)
    with conn.cursor(name=f"pending_texts_{source}", withhold=True) as cursor:
        cursor.execute(query("texts_needing_embedding"), params)

        def report() -> None:
            elapsed = time.perf_counter() - started
            detail = f"model {stats.model_seconds:.1f}s of {elapsed:.1f}s"
            bar.update(stats.texts_embedded, detail, work_done=stats.tokens_embedded)

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

    A pipeline: the model runs in a worker thread, a batch behind the main thread, which meanwhile
    fetches, claims and tokenizes the next batch and COPYs the previous one, so the model runs back
    to back. What was committed stays if a later batch fails; the claims of the batches not yet
    stored are released.

    Concurrent runs split the work instead of repeating it: a run embeds only the texts whose claim
    it takes; the texts another run holds are waited for once the batches are done, and embedded
    here only if that run stored no vector for them (it failed).
    """
    deferred: list[tuple] = []
    held: set[str] = set()  # hashes whose session-level claim this run holds
    prepare = getattr(embedder, "prepare", None)  # tokenizing off the model's thread, if it can
    model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragline-model")
    try:
        running: tuple[list[tuple], Future] | None = None
        for batch in batches:
            todo, others = _claim_for_pipeline(conn, embedder, batch, held)
            deferred += others
            queued = None
            if todo:
                texts = [t for _h, t, _n in todo]
                # In this context: the model's calls reach the cost ledger's sink installed here.
                inputs = prepare(texts) if prepare else texts
                queued = (todo, model.submit(contextvars.copy_context().run, _timed_embed, embedder, inputs))
            if running is not None:
                _store_running(conn, embedder, *running, stats, held)
                after_batch()
            running = queued
        if running is not None:
            _store_running(conn, embedder, *running, stats, held)
            after_batch()
    finally:
        model.shutdown(wait=True, cancel_futures=True)
        _release(conn, embedder, held)
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


def _timed_embed(embedder: Embedder, texts) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    return embedder.embed(texts), time.perf_counter() - started


def _claim_for_pipeline(
    conn: psycopg.Connection, embedder: Embedder, batch: list[tuple], held: set[str]
) -> tuple[list[tuple], list[tuple]]:
    """Claim the batch's texts that no other run is embedding, for this session until released:
    (the claimed rows that still have no vector, the rows another run holds). Claimed rows that
    meanwhile got a vector are released at once."""
    rows = {r[0]: r for r in batch}
    params = {"namespace": EMBEDDING_CLAIM, "model_id": embedder.model_id, "hashes": list(rows)}
    try:
        with conn.transaction():
            claimed = {h for (h,) in conn.execute(query("claim_texts_for_pipeline"), params)}
            held.update(claimed)
            # A statement of its own, after the claims: its snapshot sees what their last holders stored.
            todo = set(_without_vector(conn, embedder, sorted(claimed)))
    except BaseException:
        # Session-level locks outlive the rolled-back transaction: a claim statement cancelled
        # part way may hold some of the batch. All of it is released with the rest (unlocking a
        # lock not held only warns).
        held.update(rows)
        raise
    _release(conn, embedder, held, claimed - todo)
    return [r for h, r in rows.items() if h in todo], [r for h, r in rows.items() if h not in claimed]


def _store_running(
    conn: psycopg.Connection,
    embedder: Embedder,
    batch: list[tuple],
    vectors: Future,
    stats: EmbedStats,
    held: set[str],
) -> None:
    """Wait for the model's vectors of a claimed batch, COPY them in a transaction of their own,
    then release the batch's claims."""
    result, seconds = vectors.result()
    stats.model_seconds += seconds
    checked = _checked(embedder, embedder.dim, batch, result)
    with conn.transaction():
        store_vectors(conn, embedder, embedder.dim, batch, checked, stats)
    _release(conn, embedder, held, {h for h, _t, _n in batch})


def _release(
    conn: psycopg.Connection, embedder: Embedder, held: set[str], hashes: set[str] | None = None
) -> None:
    """Release session-level claims (all those held by default)."""
    hashes = set(held) if hashes is None else hashes & held
    if not hashes:
        return
    held.difference_update(hashes)
    params = {"namespace": EMBEDDING_CLAIM, "model_id": embedder.model_id, "hashes": sorted(hashes)}
    try:
        with conn.transaction():
            conn.execute(query("release_text_claims"), params)
    except psycopg.OperationalError:
        pass  # the connection is gone, and with its session every claim it held


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
    vectors, seconds = _timed_embed(embedder, [t for _h, t, _n in batch])
    stats.model_seconds += seconds
    store_vectors(conn, embedder, dim, batch, _checked(embedder, dim, batch, vectors), stats)


def _checked(embedder: Embedder, dim: int, batch, vectors: np.ndarray) -> np.ndarray:
    """The model's vectors for the batch's rows, or an error if any of them must not be stored."""
    model = embedder.model_id
    if vectors.shape != (len(batch), dim):
        raise EmbeddingError(
            f"{model} returned shape {vectors.shape} for {len(batch)} texts, expected dim {dim}"
        )
    bad = vector_problems(vectors)
    if bad:
        examples = ", ".join(f"{batch[p.index][0][:12]}: {p.problem}" for p in bad[:5])
        raise EmbeddingError(
            f"{model} returned {len(bad)} unusable vectors ({examples}); nothing of this "
            "batch was stored, earlier batches were"
        )
    return vectors


def store_vectors(
    conn: psycopg.Connection, embedder: Embedder, dim: int, batch, vectors, stats: EmbedStats
) -> None:
    _store(conn, embedder.model_id, dim, batch, vectors, embedder)
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
