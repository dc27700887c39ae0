"""Retrieval over the stored chunks: dense (pgvector HNSW), lexical (BM25 in Postgres) and hybrid
(reciprocal rank fusion), with metadata filters, MMR diversity, reranking and a query log."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ragline.config import (
    DEFAULT_CHUNK_SET,
    RETRIEVAL_STRATEGIES,
    ConfigError,
    GuardrailSettings,
    RetrievalSettings,
    Settings,
    VariantSettings,
)
from ragline.index.embedding import variant_embedder, with_missing_embedded
from ragline.retrieval.bm25 import Bm25Backend, ExhaustiveBm25
from ragline.retrieval.memory_bm25 import memory_bm25
from ragline.safe_text import printable
from ragline.storage.db import Database, query
from ragline.types import Embedder, Filters, Hit, Reranker, RetrievalError, SearchResult

CHUNK_COLUMNS = (
    "c.chunk_id, c.source, c.doc_id, c.path, c.doc_version, c.chunk_index, c.text, c.text_hash, "
    "c.token_count, c.start_char, c.end_char, c.metadata"
)


# The widest candidate scans before falling back: pgvector's default hnsw.max_scan_tuples, and a
# BM25 scan beyond which scoring every matching text costs about the same.
MAX_DENSE_SCAN = 20_000
MAX_LEXICAL_SCAN = 20_000

# Threads that run the lexical side of hybrid searches, each on a pooled connection of its own,
# while the calling thread embeds the query and runs the dense side.
_LEXICAL_THREADS = 4
_lexical_pool: ThreadPoolExecutor | None = None
_lexical_pool_lock = threading.Lock()


def _lexical_executor() -> ThreadPoolExecutor:
    global _lexical_pool
    with _lexical_pool_lock:
        if _lexical_pool is None:
            _lexical_pool = ThreadPoolExecutor(_LEXICAL_THREADS, thread_name_prefix="ragline-lexical")
        return _lexical_pool


def filter_clause(filters: Filters) -> tuple[sql.Composable, dict[str, Any]]:
    """The filters as a SQL condition on the chunk columns (c.*) and its parameters."""
    params: dict[str, Any] = {}
    if filters.sources:
        params["f_sources"] = list(filters.sources)
    if filters.doc_ids:
        params["f_doc_ids"] = list(filters.doc_ids)
    if filters.metadata:
        params["f_meta"] = Jsonb(dict(filters.metadata))
    return _filter_sql(tuple(params)), params


def _filter_sql(names: tuple[str, ...]) -> sql.Composable:
    """The condition that the filter parameters `names` (of filter_clause) stand for."""
    conditions = {
        "f_sources": "c.source = ANY(%(f_sources)s)",
        "f_doc_ids": "c.doc_id = ANY(%(f_doc_ids)s)",
        # Document metadata (JSONL fields, PDF info) and chunk metadata (headings) together.
        "f_meta": "(c.doc_metadata || c.metadata) @> %(f_meta)s",
    }
    if not names:
        return sql.SQL("")
    return sql.SQL(" AND ") + sql.SQL(" AND ").join(sql.SQL(conditions[n]) for n in names)


@lru_cache(maxsize=256)
def search_statement(name: str, filters: tuple[str, ...], model_id: str = "", dim: int = 0) -> bytes:
    """A search statement (sql/queries/<name>.sql) with its chunk columns, the condition of the
    filter parameters `filters` and the model's literals, composed once per shape: composing and
    rendering it was ~0.2 ms of every search."""
    literals = {"model": sql.Literal(model_id), "dim": sql.Literal(dim)} if model_id else {}
    statement = sql.SQL(query(name)).format(
        columns=sql.SQL(CHUNK_COLUMNS), filters=_filter_sql(filters), **literals
    )
    return statement.as_bytes(None)


def hit_from_row(row: Sequence[Any], score: float | None = None) -> Hit:
    """A Hit from a row that starts with the chunk columns every search query selects, then its
    score (unless the score is given)."""
    return Hit(*row[:11], score=float(row[12]) if score is None else score, metadata=row[11] or {})


def result_json(result: SearchResult) -> dict[str, Any]:
    """A search result as JSON (`ragline search --json`, the API's /v1/search): ranked, cited hits."""
    return {
        "query": result.query,
        "strategy": result.strategy,
        "latency_ms": round(result.latency_ms, 2),
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "query_id": result.query_id,
        "hits": [
            {
                "rank": i,
                "score": h.score,
                "chunk_id": h.chunk_id,
                "document": h.document,
                "path": h.path,
                "start_char": h.start_char,
                "end_char": h.end_char,
                "text": h.text,
            }
            for i, h in enumerate(result.hits, start=1)
        ],
    }


class Retriever:
    """Searches one chunk set (the pipeline's chunks, or an evaluation variant's) with one model.

    The dense side reads the serving model's vectors unless `model_id`/`dim` name another model
    in the ledger; the embedder must produce vectors of that model. `concurrent=False` runs a hybrid
    search's two sides one after the other on one connection (same results).
    """

    def __init__(
        self,
        db: Database,
        embedder: Embedder | None,
        settings: RetrievalSettings | None = None,
        *,
        ef_search: int = 40,
        chunk_set: str = DEFAULT_CHUNK_SET,
        model_id: str | None = None,
        reranker: Reranker | None = None,
        variant: str | None = None,
        caller: str = "python",
        concurrent: bool = True,
        redact_query: Callable[[str], str] | None = None,
    ) -> None:
        self.db = db
        # Applied to the query before a remote embedder sees it (the guardrails' redaction).
        self.redact_query = redact_query
        self.embedder = embedder
        self.settings = settings or RetrievalSettings()
        self.ef_search = ef_search
        self.chunk_set = chunk_set
        self.reranker = reranker
        self.variant = variant
        self.caller = caller
        # Hybrid runs its lexical side on a second pooled connection while the query is embedded.
        self.concurrent = concurrent
        self._model: tuple[str, int] | None = None
        # BM25 in one SQL statement per query, or (lexical_index: memory) from the postings this
        # process holds in memory, shared by every Retriever on the same Database.
        self.bm25: Bm25Backend = (
            memory_bm25(db) if self.settings.lexical_index == "memory" else ExhaustiveBm25()
        )
        self._own_model = model_id is not None
        if model_id is not None:
            if embedder is None or embedder.model_id != model_id:
                raise RetrievalError(f"model {model_id!r} needs an embedder producing its vectors")
            self._model = (model_id, embedder.dim)

    # --- the public entry point ------------------------------------------------------------------

    def search(
        self,
        text: str,
        *,
        k: int | None = None,
        strategy: str | None = None,
        filters: Filters | None = None,
        mmr_lambda: float | None = None,
        rerank: bool | None = None,
        log: bool | None = None,
    ) -> SearchResult:
        """The top k chunks for a query; logged to ragline.query_log unless log is False."""
        s = self.settings
        k = k or s.k
        strategy = strategy or s.strategy
        filters = filters or Filters()
        mmr_lambda = s.mmr_lambda if mmr_lambda is None else mmr_lambda
        use_rerank = (self.reranker is not None) if rerank is None else rerank
        if use_rerank and self.reranker is None:
            raise RetrievalError("reranking was asked for but no reranker is configured")
        if strategy not in RETRIEVAL_STRATEGIES:
            raise RetrievalError(f"unknown strategy {strategy!r}; choose one of {RETRIEVAL_STRATEGIES}")
        if not text or not text.strip():
            raise RetrievalError("the query is empty")
        if k < 1:
            raise RetrievalError("k must be at least 1")
        pool = max(k, s.candidates) if (use_rerank or mmr_lambda is not None or strategy == "hybrid") else k
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        qvec: np.ndarray | None = None
        if strategy == "hybrid":
            # Reranking and MMR choose among every fused candidate; otherwise only the best k are kept.
            keep = None if (use_rerank or mmr_lambda is not None) else k
            hits, qvec = self._hybrid(text, pool, filters, timings, keep)
        else:
            with self.db.connection() as conn:
                if strategy == "dense":
                    qvec = self._timed(timings, "embed", self._embed_query, conn, text)
                    hits = self._timed(timings, "dense", self.dense, conn, qvec, pool, filters)
                else:
                    hits = self._timed(timings, "lexical", self.lexical, conn, text, pool, filters)
        if use_rerank:
            assert self.reranker is not None
            # The reranker sees the first rerank_candidates hits; any further hits (k larger than
            # that) follow in first-stage order, so its cost stays bounded whatever k is.
            head, tail = hits[: s.rerank_candidates], hits[s.rerank_candidates :]
            hits = self._timed(timings, "rerank", self.reranker.rerank, text, head, None) + tail
        log_query = s.log_queries if log is None else log
        with self.db.connection() if (log_query or mmr_lambda is not None) else nullcontext() as conn:
            if mmr_lambda is not None and hits:
                t = time.perf_counter()
                vectors = self.vectors(conn, hits)
                hits = mmr(hits, vectors, k=k, lam=mmr_lambda)
                timings["mmr"] = 1000 * (time.perf_counter() - t)
            hits = hits[:k]
            latency = 1000 * (time.perf_counter() - t0)
            timings["total"] = latency
            result = SearchResult(text, strategy, hits, latency, timings_ms=timings, vector=qvec)
            if log_query:
                result.query_id = self._log(conn, result, k, filters, qvec)
        return result

    def _hybrid(
        self, text: str, pool: int, filters: Filters, timings: dict[str, float], keep: int | None = None
    ) -> tuple[list[Hit], np.ndarray]:
        """Both first-stage lists fused (the best `keep` of them, or all). Concurrently, the lexical
        side runs on a pooled connection of its own while this thread embeds the query (ONNX Runtime
        releases the GIL) and runs the dense side; the fused hits are the same as run one after the
        other."""
        s = self.settings
        lexical_run: Future | None = None
        if self.concurrent:
            lexical_run = _lexical_executor().submit(self._lexical_on_own_connection, text, pool, filters)
        if self._model is None:
            with self.db.connection() as conn:
                self.model(conn)
        # The query is embedded holding no connection: a remote model may wait out a Retry-After,
        # and the lexical side needs a pooled connection meanwhile.
        qvec = self._timed(timings, "embed", self._embed_query, None, text)
        with self.db.connection() as conn:
            dense = self._timed(timings, "dense", self.dense, conn, qvec, pool, filters)
            if lexical_run is None:
                lexical = self._timed(timings, "lexical", self.lexical, conn, text, pool, filters)
        if lexical_run is not None:
            # Waited for only after the connection went back to the pool: a search never holds
            # one connection while it waits for another, so concurrent searches cannot deadlock.
            t = time.perf_counter()
            lexical, timings["lexical"] = lexical_run.result()
            timings["wait"] = 1000 * (time.perf_counter() - t)
        t = time.perf_counter()
        hits = reciprocal_rank_fusion(
            [dense, lexical], [s.dense_weight, s.lexical_weight], rrf_k=s.rrf_k, limit=keep
        )
        timings["fuse"] = 1000 * (time.perf_counter() - t)
        return hits, qvec

    def _lexical_on_own_connection(self, text: str, limit: int, filters: Filters) -> tuple[list[Hit], float]:
        with self.db.connection() as conn:
            t = time.perf_counter()
            hits = self.lexical(conn, text, limit, filters)
            return hits, 1000 * (time.perf_counter() - t)

    @staticmethod
    def _timed(timings: dict[str, float], name: str, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args)
        timings[name] = 1000 * (time.perf_counter() - t)
        return out

    # --- strategies ------------------------------------------------------------------------------

    def model(self, conn: psycopg.Connection) -> tuple[str, int]:
        """The (model_id, dim) whose vectors dense search reads: the published serving model."""
        if self._model is None:
            row = conn.execute(query("serving_model"), prepare=True).fetchone()
            if row is None:
                raise RetrievalError("no search index has been built yet; materialize search_index first")
            if self.embedder is not None and self.embedder.model_id != row[0]:
                raise RetrievalError(
                    f"the index serves {row[0]!r} vectors but the configured embedder is "
                    f"{self.embedder.model_id!r}; materialize embeddings and search_index for it"
                )
            self._model = (row[0], int(row[1]))
        return self._model

    def _embed_query(self, conn: psycopg.Connection | None, text: str) -> np.ndarray:
        """The query's vector; with conn, after checking the embedder against the serving model
        (without, the caller has checked it)."""
        if self.embedder is None:
            raise RetrievalError("dense search and MMR need an embedder")
        if conn is not None:
            self.model(conn)
        if self.redact_query is not None:
            text = self.redact_query(text)
        return self.embedder.embed([text])[0]

    def dense(self, conn: psycopg.Connection, qvec: np.ndarray, limit: int, filters: Filters) -> list[Hit]:
        """Nearest chunks by cosine similarity, through the serving model's partial HNSW index; on a
        connection in a transaction (or not in autocommit), under a savepoint rolled back after it."""
        model_id, dim = self.model(conn)
        _where, params = filter_clause(filters)
        # Literal model and dimension: the partial index only matches a query that repeats its
        # predicate and expression verbatim.
        approximate = search_statement("search_dense", tuple(params), model_id, dim)
        exact = search_statement("search_dense_exact", tuple(params), model_id, dim)
        args = {"q": qvec.astype(np.float32), "chunk_set": self.chunk_set, "limit": limit, **params}
        # Unfiltered, every served text is a published chunk's, so the nearest `limit` texts hold
        # the top `limit` chunks: no over-fetch. Filtered, the scan starts wider (see _widening).
        first_scan = None if filters.as_dict() else limit
        # Pipeline mode: the statements up to its closing Sync run as one implicit transaction, so the
        # settings (local to it) reach the search without BEGIN and COMMIT, and go out with it in one
        # round trip (four before). Inside the caller's transaction they would outlive the search: a
        # savepoint (or transaction) rolled back after it undoes them, and the search writes nothing.
        idle = conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with conn.pipeline() if idle else conn.transaction(force_rollback=True):
            # Iterative scans keep reading the index past ef_search (up to hnsw.max_scan_tuples),
            # so a wide scan returns as many candidates as asked for.
            ef_search = min(max(self.ef_search, limit), 1000)
            plan_cache_mode = "auto" if filters.as_dict() else "force_generic_plan"
            conn.execute(
                query("dense_scan_settings"),
                {"ef_search": str(ef_search), "plan_cache_mode": plan_cache_mode},
                prepare=True,
            )
            # Only the published chunks under the serving model have a serving index; a variant's own
            # chunks or model are searched exactly over the ledger.
            served = self.chunk_set == DEFAULT_CHUNK_SET and not self._own_model
            rows = None
            if served:
                rows = self._widening(
                    conn,
                    approximate,
                    args,
                    limit,
                    filters,
                    MAX_DENSE_SCAN,
                    first_scan=first_scan,
                    prepare=True,
                )
            if rows is None:
                # Filters so selective that 20,000 neighbours held fewer than `limit` matches.
                rows = conn.execute(exact, args).fetchall()
        return [hit_from_row(r) for r in rows]

    def lexical(self, conn: psycopg.Connection, text: str, limit: int, filters: Filters) -> list[Hit]:
        """Okapi BM25 over Postgres' english lexemes (stemmed, stop words removed): the best texts
        (exact, ragline.retrieval.bm25), then their chunks in the chunk set that pass the filters."""
        _where, params = filter_clause(filters)
        statement = search_statement("lexical_chunks", tuple(params))
        args = {"chunk_set": self.chunk_set, "limit": limit, **params}
        # Every indexed text of the chunk set is one of its published chunks', so unfiltered the best
        # `limit` texts hold the best `limit` chunks. Filters thin the texts out: a filtered search
        # starts wider, and the scan widens until it yields `limit` rows or runs out.
        scan: int | None = limit if not filters.as_dict() else max(limit * 20, 40)
        while True:
            found = self.bm25.top_texts(
                conn, self.chunk_set, text, scan, k1=self.settings.bm25_k1, b=self.settings.bm25_b
            ).texts
            rows = conn.execute(
                statement,
                {**args, "text_hashes": [t.text_hash for t in found], "scores": [t.score for t in found]},
                prepare=True,
            ).fetchall()
            if len(rows) >= limit or scan is None or len(found) < scan:
                return [hit_from_row(r) for r in rows]
            scan = min(scan * 4, MAX_LEXICAL_SCAN) if scan < MAX_LEXICAL_SCAN else None  # then every text

    @staticmethod
    def _widening(
        conn: psycopg.Connection,
        statement: bytes,
        args: dict,
        limit: int,
        filters: Filters,
        cap: int,
        *,
        first_scan: int | None = None,
        prepare: bool | None = None,
    ) -> list[tuple] | None:
        """Run a scan-then-join search with a growing candidate scan until it yields `limit` rows or
        runs out of candidates; None when the cap is reached first."""
        # Texts shared by chunks of other chunk sets, stale versions and filters all thin the
        # candidates out; a filtered search starts wider.
        scan = first_scan or max(limit * (4 if not filters.as_dict() else 20), 40)
        while True:
            rows = conn.execute(statement, {**args, "scan": scan}, prepare=prepare).fetchall()
            scanned = rows[0][-1] if rows else None
            if len(rows) >= limit or (scanned is not None and scanned < scan):
                return rows  # enough rows, or every candidate was already scanned
            if scan >= cap:
                return None
            scan = min(scan * 4, cap)

    def vectors(self, conn: psycopg.Connection, hits: Sequence[Hit]) -> np.ndarray:
        """The hits' vectors under the serving model (stored, or embedded now if missing), in order."""
        model_id, _dim = self.model(conn)
        stored = dict(
            conn.execute(query("vectors_of_texts"), (model_id, [h.text_hash for h in hits])).fetchall()
        )
        if self.embedder is None and len(stored) < len({h.text_hash for h in hits}):
            raise RetrievalError("some hits have no stored vector and there is no embedder to make one")
        # A chunk without a vector yet (embeddings not run) is embedded now rather than guessed.
        return with_missing_embedded(
            [stored.get(h.text_hash) for h in hits],
            [h.text for h in hits],
            self.embedder,  # type: ignore[arg-type]
        )

    def _log(
        self,
        conn: psycopg.Connection,
        result: SearchResult,
        k: int,
        filters: Filters,
        qvec: np.ndarray | None,
    ) -> int:
        results = [
            {"chunk_id": h.chunk_id, "document": h.document, "score": round(h.score, 6)} for h in result.hits
        ]
        model_id = self._model[0] if (qvec is not None and self._model) else None
        row = conn.execute(
            query("insert_query_log"),
            {
                "query": result.query,
                "strategy": result.strategy,
                "variant": self.variant,
                "k": k,
                "filters": Jsonb(filters.as_dict()),
                "results": Jsonb(results),
                "latency_ms": result.latency_ms,
                "caller": self.caller,
                "model_id": model_id,
                "embedding": qvec.astype(np.float32) if qvec is not None else None,
            },
        ).fetchone()
        return int(row[0])


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]], weights: Sequence[float], *, rrf_k: int = 60, limit: int | None = None
) -> list[Hit]:
    """Fuse ranked lists: each hit scores sum(weight / (rrf_k + rank)) over the lists it is in; the
    best `limit` fused hits (all without one)."""
    if len(rankings) != len(weights):
        raise ValueError("one weight per ranking")
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    best_rank: dict[str, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (rrf_k + rank)
            first.setdefault(hit.chunk_id, hit)
            best_rank[hit.chunk_id] = min(best_rank.get(hit.chunk_id, rank), rank)
    order = sorted(scores, key=lambda cid: (-scores[cid], best_rank[cid], cid))
    # A new Hit per kept chunk only: dataclasses.replace cost ~8 us each, most of a fusion's time.
    return [replace(first[cid], score=scores[cid]) for cid in order[:limit]]


def mmr(hits: Sequence[Hit], vectors: np.ndarray, *, k: int, lam: float) -> list[Hit]:
    """Maximal marginal relevance: pick hits relevant to the query but unlike those already picked.

    Relevance is the incoming ranking's own score (dense, BM25, fused or reranked), scaled to
    [0, 1], so lam = 1 keeps the incoming order; lower values trade relevance for diversity,
    measured as cosine similarity between the hits' vectors.
    """
    if not hits:
        return []
    scores = np.array([h.score for h in hits], dtype=np.float64)
    spread = scores.max() - scores.min()
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones(len(hits))
    similarity = vectors @ vectors.T
    chosen: list[int] = []
    left = list(range(len(hits)))
    while left and len(chosen) < k:
        redundancy = similarity[np.ix_(left, chosen)].max(axis=1) if chosen else np.zeros(len(left))
        value = lam * relevance[left] - (1 - lam) * redundancy
        pick = left[int(np.argmax(value))]  # argmax takes the first: ties keep the incoming order
        chosen.append(pick)
        left.remove(pick)
    return [hits[i] for i in chosen]


# Nesting beyond this in a --where value is a mistake, not a filter on real metadata.
MAX_FILTER_DEPTH = 32


def parse_filters(sources: Sequence[str], pairs: Sequence[str]) -> Filters:
    """Filters from CLI arguments: --source NAME (repeatable) and --where key=value (repeatable).

    A value is JSON when it parses as strict JSON (`priority=2` is a number, `k=NaN` the string
    "NaN"), else the text as given. What Postgres cannot hold is refused with a ConfigError: NUL,
    text that is not valid UTF-8, numbers out of range, nesting deeper than MAX_FILTER_DEPTH.
    """
    metadata: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--where takes key=value, got '{printable(pair, 80)}'")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--where needs a key before '=', got '{printable(pair, 80)}'")
        try:
            value: Any = json.loads(raw, parse_constant=_not_json, parse_float=_float, parse_int=_int)
        except ValueError as exc:
            if not isinstance(exc, json.JSONDecodeError):
                raise ConfigError(f"--where {printable(key, 80)}: {exc}") from None
            value = raw  # not JSON: the text itself
        except RecursionError:
            raise ConfigError(f"--where {printable(key, 80)}: the value is nested too deeply") from None
        try:
            for part in (key, value):
                check_storable(part, f"--where {printable(key, 80)}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        metadata[key] = value
    return Filters.of(sources=sources, metadata=metadata)


def _not_json(constant: str) -> Any:
    # NaN and Infinity are Python's extensions to JSON, and jsonb has no such numbers.
    raise json.JSONDecodeError(f"{constant} is not JSON", constant, 0)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {printable(text, 40)} is out of range")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise ValueError(f"the number {printable(text, 40)} is out of range") from None


def check_storable(value: Any, what: str) -> None:
    """Raise ValueError ("<what>: ...") unless every string in value (keys too) is text Postgres
    can store, every number is finite and nesting is at most MAX_FILTER_DEPTH."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_FILTER_DEPTH:
            raise ValueError(f"{what}: the value is nested too deeply")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError(f"{what}: NUL characters cannot be matched")
            if any("\ud800" <= ch <= "\udfff" for ch in item):
                raise ValueError(f"{what}: not valid UTF-8 text")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{what}: numbers must be finite")
        elif isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)


def build_retriever(
    settings: Settings,
    db: Database,
    embedder: Embedder | None,
    *,
    variant: VariantSettings | None = None,
    caller: str = "python",
    log_queries: bool | None = None,
) -> Retriever:
    """The retriever ragline.yaml describes: the pipeline's own, or an evaluation variant's."""
    from ragline.index.background import BackgroundEmbedder
    from ragline.index.local_model import LocalMiniLM
    from ragline.retrieval.reranking import build_reranker

    retrieval = variant.retrieval if variant else settings.retrieval
    if log_queries is not None:
        retrieval = replace(retrieval, log_queries=log_queries)
    model_id = None
    if variant is not None and variant.embedding is not None:
        # A variant with its own model reads that model's vectors, not the published ones.
        embedder = variant_embedder(variant, embedder)  # type: ignore[arg-type]
        model_id = embedder.model_id
    # With guardrails on, nothing a search sends to an external endpoint carries personal data or
    # credentials: the LLM reranker's requests, and the query a remote embedding model embeds.
    redact = guard_redactor(settings.guardrails) if settings.guardrails.enabled else None
    # Decided from the configuration: the CLI and `ragline serve` hand in the local model wrapped
    # (BackgroundEmbedder). An embedder of another kind under a local provider counts as remote.
    provider = (variant.embedding if variant and variant.embedding else settings.embedding).provider
    local = isinstance(embedder, LocalMiniLM | BackgroundEmbedder)
    remote = embedder is not None and (provider != "local" or not local)
    return Retriever(
        db,
        embedder,
        retrieval,
        ef_search=settings.index.ef_search,
        chunk_set=variant.chunk_set if variant else DEFAULT_CHUNK_SET,
        model_id=model_id,
        reranker=build_reranker(retrieval.rerank, embedder, settings.llm, redact),
        variant=variant.name if variant else None,
        caller=caller,
        redact_query=redact if remote else None,
    )


def guard_redactor(settings: GuardrailSettings) -> Callable[[str], str]:
    """One text redacted as the guardrails redact a model call's texts."""
    from ragline.guardrails import Guard

    guard = Guard(settings)

    def redact(text: str) -> str:
        return guard.redact([text]).texts[0]

    return redact
