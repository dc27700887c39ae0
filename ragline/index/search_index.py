"""The serving indexes: HNSW (cosine) over the published texts' vectors, built without taking an index
away from readers, and its recall against exact search, measured with real queries."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from ragline.config import IndexSettings
from ragline.expectations import HNSW_RECALL_AT_10, CheckOutcome
from ragline.index.embedding import as_array
from ragline.safe_text import printable
from ragline.storage.db import SEARCH_INDEX_LOCK, query, session_lock


def _index_prefix(model_id: str) -> str:
    """What the names of a model's serving HNSW indexes start with, whatever their settings."""
    return "serving_hnsw_" + hashlib.sha256(model_id.encode()).hexdigest()[:12] + "_"


def hnsw_index_name(model_id: str, settings: IndexSettings) -> str:
    """The serving HNSW index of a model under given build settings (a change builds a new one)."""
    return f"{_index_prefix(model_id)}m{settings.hnsw_m}_efc{settings.hnsw_ef_construction}"


def _vector_expr(dim: int) -> sql.Composable:
    # serving_vectors.embedding has no fixed dimension (it can hold two models during a switch); an
    # HNSW index needs one, so each model gets a partial index on a cast expression.
    return sql.SQL("(embedding::vector({}))").format(sql.Literal(dim))


@dataclass
class IndexStats:
    model_id: str
    dim: int
    vectors: int
    vectors_added: int
    texts_without_vector: int
    hnsw_built: bool
    hnsw_seconds: float
    hnsw_index: str
    indexes_dropped: list[str]
    hnsw_memory_mb: int = 0  # maintenance_work_mem the build ran with (0: nothing was built)
    hnsw_spilled: str | None = None  # pgvector's notice when the graph outgrew that memory
    hnsw_memory_refused: str | None = None  # the server could not give the memory asked for


# pgvector builds the HNSW graph in maintenance_work_mem (with the server's parallel maintenance
# workers) and, once the graph no longer fits, goes on inserting into the index on disk. PostgreSQL's
# default 64 MB holds 28,371 vectors of 384 dimensions at m = 16 (2.37 KB each); 46k vectors took
# 26 s to index that way and 12-14 s with room for the graph (benchmarks/results/hnsw_build_memory.md).
_CREATE_HNSW = sql.SQL(
    "CREATE INDEX CONCURRENTLY {} ON ragline.serving_vectors USING hnsw ({} vector_cosine_ops) "
    "WITH (m = {}, ef_construction = {}) WHERE model_id = {}"
)


def create_hnsw_statement(name: str, model_id: str, dim: int, settings: IndexSettings) -> sql.Composed:
    """CREATE INDEX CONCURRENTLY of a model's partial HNSW index on ragline.serving_vectors."""
    return _CREATE_HNSW.format(
        sql.Identifier(name),
        _vector_expr(dim),
        sql.Literal(settings.hnsw_m),
        sql.Literal(settings.hnsw_ef_construction),
        sql.Literal(model_id),
    )


_HNSW_BYTES_OVER_VECTOR = 128  # the element's header, beside 2 m neighbour slots of 24 bytes


def hnsw_graph_mb(vectors: int, dim: int, m: int) -> int:
    """The memory an HNSW graph of `vectors` needs to be built in memory, with a fifth to spare."""
    per_vector = dim * 4 + 8 + 2 * m * 24 + _HNSW_BYTES_OVER_VECTOR
    return max(1, math.ceil(1.2 * vectors * per_vector / 2**20))


def _model_indexes(conn: psycopg.Connection, model_id: str) -> dict[str, bool]:
    """The model's serving HNSW indexes (under any settings) and whether each is valid."""
    return dict(conn.execute(query("serving_indexes"), {"prefix": _index_prefix(model_id) + "%"}).fetchall())


def _drop_concurrently(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS ragline.{}").format(sql.Identifier(name)))


def build_indexes(conn: psycopg.Connection, model_id: str, dim: int, settings: IndexSettings) -> IndexStats:
    """Give every published text its vector of `model_id` in ragline.serving_vectors and make sure
    the model has a valid HNSW index there, built CONCURRENTLY so that searches go on meanwhile.

    An index with other build settings is replaced by building the new one first and dropping the
    old one after, so the served model never loses its index. Needs an autocommit connection.
    Concurrent builds take turns (`index_lock`).
    """
    with index_lock(conn):
        return _build_indexes(conn, model_id, dim, settings)


def index_lock(conn: psycopg.Connection) -> AbstractContextManager[None]:
    """One builder or dropper of serving indexes at a time: two runs' CREATE INDEX CONCURRENTLY of
    one index otherwise deadlock, each waiting for the other's snapshot. The waiter polls, holding no
    snapshot, since the holder's CREATE INDEX CONCURRENTLY waits for every older one."""
    return session_lock(conn, SEARCH_INDEX_LOCK, poll_seconds=0.2)


def _build_indexes(conn: psycopg.Connection, model_id: str, dim: int, settings: IndexSettings) -> IndexStats:
    added = conn.execute(query("fill_serving_vectors"), {"model_id": model_id}).rowcount
    missing = conn.execute(query("texts_without_serving_vector"), {"model_id": model_id}).fetchone()[0]
    name = hnsw_index_name(model_id, settings)
    existing = _model_indexes(conn, model_id)
    dropped = []
    if existing.get(name) is False:  # a CREATE INDEX CONCURRENTLY that failed leaves an invalid index
        _drop_concurrently(conn, name)
        dropped.append(name)
    t0 = time.perf_counter()
    built = not existing.get(name)
    memory: tuple[int, str | None, str | None] = (0, None, None)  # IndexStats' last three fields
    if built:
        vectors = conn.execute(query("count_serving_vectors"), {"model_id": model_id}).fetchone()[0]
        create = create_hnsw_statement(name, model_id, dim, settings)
        wanted_mb = hnsw_graph_mb(vectors, dim, settings.hnsw_m)
        with _BuildMemory(conn, wanted_mb, settings.build_memory_mb) as build:
            try:
                conn.execute(create)
            except psycopg.errors.DiskFull as exc:
                # A parallel build keeps the graph in shared memory: a server with less of it (a
                # container's 64 MB /dev/shm) refuses. Built again with the server's own setting.
                if build.memory_mb <= build.own_mb:
                    raise
                _drop_concurrently(conn, name)
                build.refused = f"{build.memory_mb} MB refused ({printable(exc, 200)})"
                build.restore()
                build.memory_mb = build.own_mb
                conn.execute(create)
        memory = (build.memory_mb, build.spilled, build.refused)
    hnsw_seconds = time.perf_counter() - t0
    for other in existing:
        if other != name:
            _drop_concurrently(conn, other)
            dropped.append(other)
    vectors = conn.execute(query("count_serving_vectors"), {"model_id": model_id}).fetchone()[0]
    return IndexStats(model_id, dim, vectors, added, missing, built, hnsw_seconds, name, dropped, *memory)


class _BuildMemory:
    """The session's maintenance_work_mem for one index build: raised to `wanted_mb` (at most
    `cap_mb`, never below the session's own setting), with pgvector's notice noted if the graph
    outgrows it, and put back after, error or not: the connection returns to a shared pool."""

    def __init__(self, conn: psycopg.Connection, wanted_mb: int, cap_mb: int) -> None:
        self.conn = conn
        self._setting, self.own_mb, self._source = conn.execute(query("maintenance_work_mem")).fetchone()
        self.memory_mb = max(self.own_mb, min(wanted_mb, cap_mb))  # what the build runs with
        self.spilled: str | None = None
        self.refused: str | None = None

    def __enter__(self) -> _BuildMemory:
        self.conn.add_notice_handler(self._notice)
        if self.memory_mb > self.own_mb:
            self.conn.execute(query("set_maintenance_work_mem"), {"value": f"{self.memory_mb}MB"})
        return self

    def __exit__(self, *_exc: object) -> None:
        self.conn.remove_notice_handler(self._notice)
        if not self.conn.closed and self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.restore()

    def restore(self) -> None:
        """The session's own setting again (RESET unless the session had SET it)."""
        if self._source == "session":
            self.conn.execute(query("set_maintenance_work_mem"), {"value": self._setting})
        else:
            self.conn.execute(query("reset_maintenance_work_mem"))

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        if diag.message_primary and "no longer fits" in diag.message_primary:
            self.spilled = diag.message_primary


def publish_model(conn: psycopg.Connection, model_id: str, dim: int) -> list[str]:
    """Serve `model_id`'s vectors; other models leave ragline.serving_vectors and their indexes are
    dropped (CONCURRENTLY, after the switch, so no query is left without an index)."""
    with conn.transaction():
        conn.execute(query("publish_serving_model"), {"model_id": model_id, "dim": dim})
    dropped = []
    with index_lock(conn):
        retired = conn.execute(query("retired_serving_models"), {"model_id": model_id}).fetchall()
        for (other,) in retired:
            for name in _model_indexes(conn, other):
                _drop_concurrently(conn, name)
                dropped.append(name)
            conn.execute(query("delete_serving_model_vectors"), {"model_id": other})
    return dropped


def serving_chunk_count(conn: psycopg.Connection) -> int:
    """Chunks that search serves: published, with a vector under the serving model."""
    return conn.execute(query("count_serving_chunks")).fetchone()[0]


def vacuum_lexical(conn: psycopg.Connection) -> None:
    """Fold the BM25 delta rows (df and totals) into one row each, then VACUUM (ANALYZE) the BM25
    tables, so that scoring reads postings from the covering indexes alone. Needs an autocommit
    connection (VACUUM cannot run in a transaction)."""
    conn.execute(query("compact_lexical_deltas"))
    lexical = (
        "lexical_postings",
        "lexical_texts",
        "lexical_lexemes",
        "lexical_term_deltas",
        "lexical_stat_deltas",
    )
    for table in (*lexical, "serving_vectors"):
        conn.execute(sql.SQL("VACUUM (ANALYZE) ragline.{}").format(sql.Identifier(table)))


@dataclass
class RecallResult:
    recall: float
    queries: int
    query_kind: str  # logged, eval or stored
    k: int
    ef_search: int
    index_used: bool
    approx_ms_per_query: float
    exact_ms_per_query: float


def recall_queries(
    conn: psycopg.Connection,
    model_id: str,
    embed: Callable[[list[str]], np.ndarray],
    *,
    sample: int,
    min_real: int,
) -> tuple[str, list[np.ndarray]]:
    """Query vectors for the recall check: logged queries of this model if at least `min_real`,
    else evaluation questions (embedded now) if that many, else stored vectors."""
    logged = [
        r[0] for r in conn.execute(query("logged_query_vectors"), {"model_id": model_id, "limit": sample})
    ]
    if len(logged) >= min_real:
        return "logged", [as_array(v) for v in logged]
    questions = [r[0] for r in conn.execute(query("eval_question_texts"), {"limit": sample})]
    if len(questions) >= min_real:
        return "eval", list(embed(questions))
    stored = conn.execute(query("stored_query_vectors"), {"model_id": model_id, "limit": sample})
    return "stored", [as_array(r[0]) for r in stored]


def hnsw_recall(
    conn: psycopg.Connection,
    model_id: str,
    dim: int,
    queries: list[np.ndarray],
    *,
    query_kind: str = "stored",
    k: int = 10,
    ef_search: int = 40,
) -> RecallResult:
    """Recall@k of the model's serving HNSW index against exact search over the served vectors."""
    nearest = sql.SQL(query("serving_nearest")).format(
        model=sql.Literal(model_id), dim=sql.Literal(dim), k=sql.Literal(k)
    )
    vectors = [q.astype(np.float32) for q in queries]
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
        # On a small table the planner may prefer a scan plus sort; this pass measures the index.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(sql.SQL("SET LOCAL {} = off").format(sql.Identifier(setting)))
        plan = (
            "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + nearest, {"q": vectors[0]}))
            if vectors
            else ""
        )
        index_used = "serving_hnsw_" in plan
        t0 = time.perf_counter()
        # prepare=False in both passes: psycopg prepares a statement after 5 runs, and the exact
        # pass would then reuse the cached HNSW plan whatever the SET LOCALs say (it measured
        # the index against itself: recall 1.000 at 104k chunks, 0.990 unprepared).
        approx = [[r[0] for r in conn.execute(nearest, {"q": q}, prepare=False)] for q in vectors]
        approx_s = time.perf_counter() - t0
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        t0 = time.perf_counter()
        exact = [[r[0] for r in conn.execute(nearest, {"q": q}, prepare=False)] for q in vectors]
        exact_s = time.perf_counter() - t0
    hits = sum(len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True))
    expected = sum(len(e) for e in exact)
    n = max(len(vectors), 1)
    return RecallResult(
        recall=hits / expected if expected else 1.0,
        queries=len(vectors),
        query_kind=query_kind,
        k=k,
        ef_search=ef_search,
        index_used=index_used,
        approx_ms_per_query=1000 * approx_s / n,
        exact_ms_per_query=1000 * exact_s / n,
    )


def recall_outcome(recall: RecallResult, stats: IndexStats, settings: IndexSettings) -> CheckOutcome:
    """The recall check: the index was used, recall@10 reaches min_recall, and every published text
    has a vector of the model. The model is served only when this passes."""
    problems = []
    if not recall.queries:
        problems.append("nothing is published yet, so nothing was measured")
    elif not recall.index_used:
        problems.append("the planner did not use the HNSW index")
    if recall.queries and recall.recall < settings.min_recall:
        problems.append(f"recall@10 {recall.recall:.4f} < {settings.min_recall}")
    if stats.texts_without_vector:
        problems.append(f"{stats.texts_without_vector} published texts have no {stats.model_id} vector")
    return CheckOutcome(
        HNSW_RECALL_AT_10,
        not problems,
        untested=problems[0] if not recall.queries and not stats.texts_without_vector else None,
        metadata={
            "recall_at_10": round(recall.recall, 4),
            "min_recall": settings.min_recall,
            "queries": recall.queries,
            "query_kind": recall.query_kind,
            "ef_search": recall.ef_search,
            "index_used": recall.index_used,
            "texts_without_vector": stats.texts_without_vector,
            "hnsw_ms_per_query": round(recall.approx_ms_per_query, 3),
            "exact_ms_per_query": round(recall.exact_ms_per_query, 3),
            "verdict": "; ".join(problems) or f"{stats.model_id} served",
            "where_to_look": (
                "raise index.ef_search or index.hnsw_m for recall; run the embeddings of every source for "
                "missing vectors. Until this passes, the previous model keeps serving."
            ),
        },
    )
