"""Evaluation variants' own corpora: a variant with its own chunker gets its chunks in
ragline.variant_chunks, and every variant's texts get vectors from the variant's model."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from ragline.config import Settings, VariantSettings
from ragline.index.embedding_ledger import COMMIT_EVERY, EmbedStats, embed_batches
from ragline.ingest.chunk_store import chunk_rows
from ragline.ingest.chunking import Chunker
from ragline.storage.db import query
from ragline.types import Embedder


@dataclass
class VariantCorpusStats:
    variant: str
    chunk_set: str
    model_id: str
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks: int = 0
    texts_embedded: int = 0
    texts_indexed: int = 0
    texts_unindexed: int = 0
    seconds: float = 0.0


def build_variant_corpus(
    conn: psycopg.Connection,
    settings: Settings,
    variant: VariantSettings,
    embedder: Embedder,
    progress: Callable[[str], None] = lambda _msg: None,
) -> VariantCorpusStats:
    """Bring a variant's chunks in line with the published documents, then embed its missing texts."""
    started = time.perf_counter()
    stats = VariantCorpusStats(variant.name, variant.chunk_set, embedder.model_id)
    if variant.chunking is not None:
        chunker = Chunker(variant.chunking, embedder.tokenizer)
        with conn.transaction():
            stats.chunks_removed = conn.execute(
                query("delete_stale_variant_chunks"), {"variant": variant.name, "chunker": chunker.id}
            ).rowcount
            todo = conn.execute(
                query("documents_needing_variant_chunks"), {"variant": variant.name, "chunker": chunker.id}
            ).fetchall()
            with conn.cursor() as cur, cur.copy(query("copy_variant_chunks")) as copy:
                for source, doc_id, version, content_hash, text in todo:
                    for row in chunk_rows(chunker, source, doc_id, version, content_hash, text):
                        copy.write_row((variant.name, *row))
                        stats.chunks_added += 1
            # The variant's own BM25 set: its texts, not the served ones.
            stats.texts_indexed, stats.texts_unindexed = conn.execute(
                query("sync_variant_texts"), {"chunk_set": variant.chunk_set}
            ).fetchone()
        progress(f"variant {variant.name}: {stats.chunks_added} chunks added, {stats.chunks_removed} removed")
    params = {"chunk_set": variant.chunk_set, "model_id": embedder.model_id}
    stats.chunks = conn.execute(query("count_chunk_set"), params).fetchone()[0]
    embed_stats = EmbedStats(embedder.model_id)
    with conn.cursor(name=f"variant_texts_{variant.name}", withhold=True) as cursor:
        cursor.execute(query("variant_texts_needing_embedding"), params)
        embed_batches(
            conn,
            embedder,
            iter(lambda: cursor.fetchmany(COMMIT_EVERY), []),
            embed_stats,
            lambda: progress(f"variant {variant.name}: {embed_stats.texts_embedded} texts embedded"),
        )
    stats.texts_embedded = embed_stats.texts_embedded
    stats.seconds = time.perf_counter() - started
    return stats


def drop_unconfigured_variants(conn: psycopg.Connection, names: list[str]) -> tuple[int, int]:
    """Remove the chunks and lexical texts of variants no longer in ragline.yaml: (chunks, texts)."""
    return conn.execute(query("delete_unconfigured_variants"), {"variants": names}).fetchone()
