"""Exact BM25 from memory: a long-lived process keeps a chunk set's postings in numpy arrays and
scores a query in about a millisecond, with the SQL path's terms, statistics and arithmetic.

Each search first runs one tiny statement (memory_bm25_probe.sql): the set's lexical version, N, the
total length and the query's term ids. When the version is the loaded index's, the query is scored in
memory. When it is not (a publish, a variant sync, a compaction), a background thread loads the new
postings and, until they are ready, this and every other search of the set is answered by the SQL
statement (ExhaustiveBm25), so no search ever reads postings of another version than the one it
probed. Texts map to chunks in SQL afterwards (lexical_chunks.sql, through the published view), so
nothing unpublished is ever returned.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import psycopg

from ragline.config import RetrievalSettings
from ragline.retrieval.bm25 import Bm25Result, ExhaustiveBm25, ScoredText
from ragline.safe_text import printable
from ragline.storage.db import Database, query, redact_error
from ragline.types import DatabaseError

log = logging.getLogger(__name__)

# After a failed background reload, stale searches keep using SQL this long before the next try.
RETRY_AFTER_FAILURE_SECONDS = 30.0

# One posting as memory_bm25_postings.sql packs it: term_id, text_id and tf as big-endian int4.
_POSTING = np.dtype([("term", ">i4"), ("text", ">i4"), ("tf", ">i4")])


@dataclass(frozen=True)
class Probe:
    """What one search needs from Postgres before scoring: the set's version, statistics and the
    query's term ids (ascending)."""

    version: str
    texts: int
    total_length: int
    term_ids: list[int]

    @property
    def n(self) -> float:
        return float(max(self.texts, 1))

    @property
    def avgdl(self) -> float:
        # bm25_weight's avgdl: greatest(total_length::float8 / greatest(texts, 1), 1)
        return max(float(self.total_length) / max(self.texts, 1), 1.0)


def probe(conn: psycopg.Connection, chunk_set: str, text: str) -> Probe:
    """The chunk set's lexical version and statistics, and the query's term ids, in one statement."""
    row = conn.execute(query("memory_bm25_probe"), {"chunk_set": chunk_set, "query": text}, prepare=True)
    version, texts, total_length, term_ids = row.fetchone()  # type: ignore[misc]
    return Probe(version, int(texts), int(total_length), sorted(int(t) for t in term_ids))


@dataclass
class LexicalIndex:
    """One chunk set's postings at one version: CSR arrays by term (term ids ascending), the texts'
    lengths and hashes, and the rank of each hash (ties are broken by text_hash, as in SQL)."""

    chunk_set: str
    stats: Probe
    term_ids: np.ndarray  # sorted unique term ids that have postings
    starts: np.ndarray  # term i's postings are [starts[i], starts[i + 1])
    posting_text: np.ndarray  # row of the text of each posting (ascending within a term)
    posting_tf: np.ndarray  # float64 tf of each posting
    doc_length: np.ndarray  # float64 length of each text, in lexemes
    text_hash: list[str]
    hash_rank: np.ndarray  # position of each text's hash in sorted order
    load_ms: float = 0.0
    # (k1, b) -> each posting's BM25 denominator: two at most (13 MB each at 1.6 M postings).
    _denominators: dict[tuple[float, float], np.ndarray] = field(default_factory=dict, repr=False)
    # Score arrays of finished searches, all zeros, reused: a fresh 800 KB array per search (at 100k
    # texts) cost page faults on every first write.
    _scratch: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def version(self) -> str:
        return self.stats.version

    @property
    def postings(self) -> int:
        return int(self.posting_text.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays and the hash strings (the index's own memory)."""
        arrays = (
            self.term_ids,
            self.starts,
            self.posting_text,
            self.posting_tf,
            self.doc_length,
            self.hash_rank,
        )
        strings = sum(49 + len(h) for h in self.text_hash) + 8 * len(self.text_hash)
        # A copy first (one step under the GIL): a search on another thread may evict from the dict.
        scratch = list(self._denominators.values()) + list(self._scratch)
        return sum(a.nbytes for a in arrays) + strings + sum(v.nbytes for v in scratch)

    def _denominator(self, k1: float, b: float) -> np.ndarray:
        """tf + k1 * (1 - b + b * dl / avgdl) per posting, evaluated as ragline.bm25_weight evaluates
        it. Read in posting order at search time, where gathering each text's norm was a random read."""
        cache, key = self._denominators, (k1, b)
        # Least recently used first: a hit moves to the end, a third pair evicts the oldest. Each
        # step is one dictionary operation under the GIL; a pair another thread evicted meanwhile is
        # computed again.
        denominator = cache.pop(key, None)
        if denominator is None:
            norm = k1 * ((1 - b) + (b * self.doc_length) / self.stats.avgdl)
            denominator = self.posting_tf + norm[self.posting_text]
        cache[key] = denominator
        while len(cache) > 2:
            try:
                del cache[next(iter(cache))]
            except (KeyError, RuntimeError, StopIteration):
                break
        return denominator

    def top_texts(self, term_ids: list[int], k: int | None, *, k1: float, b: float) -> Bm25Result:
        """The best k texts (every text sharing a term when k is None) by (score desc, text_hash).

        Each weight is ragline.bm25_weight's expression in the same order of float8 operations, and a
        text's weights are added in ascending term id, as the exhaustive reference sums them: the
        scores are the reference's to the bit."""
        n, k1_plus_1 = self.stats.n, k1 + 1
        denominator = self._denominator(k1, b)
        wanted = np.asarray(term_ids, dtype=np.int64)
        where = np.searchsorted(self.term_ids, wanted).tolist()
        known, starts = self.term_ids, self.starts
        scores = self._take_scratch()
        for i, term_id in zip(where, term_ids, strict=True):
            if i >= known.size or known[i] != term_id:
                continue  # a lexeme of the set that no text holds any more (df 0)
            start, end = int(starts[i]), int(starts[i + 1])
            df = float(end - start)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            # ((idf * tf) * (k1 + 1)) / (tf + norm), in place: the reference's order of operations.
            weight = np.multiply(self.posting_tf[start:end], idf)
            weight *= k1_plus_1
            weight /= denominator[start:end]
            scores[self.posting_text[start:end]] += weight
        # Every text sharing a term scores > 0 (idf > 0, tf >= 1). The selection runs over those only
        # (argpartition over the whole, mostly zero, array was 50x slower); a boolean mask finds them
        # about 4x faster than nonzero() over the floats.
        rows = np.flatnonzero(scores != 0)
        values = scores[rows]
        scores[rows] = 0.0  # the scratch array is all zeros again
        self._scratch.append(scores)
        if rows.size == 0:
            return Bm25Result([])
        if k is not None and k < rows.size:
            kth = -np.partition(-values, k - 1)[k - 1]
            keep = values >= kth  # every text tied at the cut, then by hash
            rows, values = rows[keep], values[keep]
        order = np.lexsort((self.hash_rank[rows], -values))
        if k is not None:
            order = order[:k]
        hashes = self.text_hash
        return Bm25Result(
            [
                ScoredText(hashes[r], s)
                for r, s in zip(rows[order].tolist(), values[order].tolist(), strict=True)
            ]
        )

    def _take_scratch(self) -> np.ndarray:
        """A zeroed score per text. Searches hand theirs back zeroed; a search on another thread takes
        another one (list.pop and append are atomic), so each array is only ever written by one."""
        try:
            return self._scratch.pop()
        except IndexError:
            return np.zeros(len(self.text_hash), dtype=np.float64)


def load_index(conn: psycopg.Connection, chunk_set: str) -> LexicalIndex:
    """A chunk set's postings, texts and version read in one snapshot (the caller's transaction)."""
    t0 = time.perf_counter()
    stats = probe(conn, chunk_set, "")
    rows = conn.execute(query("memory_bm25_texts"), {"chunk_set": chunk_set}).fetchall()
    text_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    doc_length = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    text_hash = [r[2] for r in rows]
    del rows
    packed = conn.execute(query("memory_bm25_postings"), {"chunk_set": chunk_set}, binary=True).fetchall()
    postings = np.frombuffer(b"".join(row[0] for row in packed), dtype=_POSTING)
    del packed
    terms = postings["term"].astype(np.int64)
    # By term, then text: a search then reads and writes each term's texts' scores in ascending order.
    by_term = np.lexsort((postings["text"], terms))
    terms = terms[by_term]
    posting_ids = postings["text"][by_term].astype(np.int64)
    posting_text = _rows_of(text_ids, posting_ids)
    if posting_text.size and not np.array_equal(text_ids[posting_text], posting_ids):
        raise RuntimeError(f"postings of chunk set {printable(chunk_set, 80)} name texts it does not hold")
    term_ids, first = np.unique(terms, return_index=True)
    starts = np.append(first, terms.size).astype(np.int64)
    hash_rank = np.empty(len(text_hash), dtype=np.int64)
    hash_rank[np.argsort(np.array(text_hash, dtype=object), kind="stable")] = np.arange(len(text_hash))
    return LexicalIndex(
        chunk_set=chunk_set,
        stats=stats,
        term_ids=term_ids,
        starts=starts,
        posting_text=posting_text.astype(np.int32),
        posting_tf=postings["tf"][by_term].astype(np.float64),
        doc_length=doc_length,
        text_hash=text_hash,
        hash_rank=hash_rank,
        load_ms=1000 * (time.perf_counter() - t0),
    )


def _rows_of(text_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The row of each id in the sorted text_ids (a clipped, wrong row for an id not there): a direct
    table when the ids are dense enough (identity values, a few burnt), else a binary search."""
    if text_ids.size == 0:
        return np.zeros(ids.size, dtype=np.int64)
    top = int(text_ids[-1])
    if top <= 8 * text_ids.size + 1_000_000 and int(text_ids[0]) >= 0:
        table = np.zeros(top + 1, dtype=np.int64)
        table[text_ids] = np.arange(text_ids.size)
        return table[np.clip(ids, 0, top)]
    return np.minimum(np.searchsorted(text_ids, ids), text_ids.size - 1)


class MemoryBm25:
    """A Bm25Backend over in-memory copies of chunk sets' postings, for long-lived processes.

    A set is loaded at its first search (blocking; `warm` loads it ahead) on a connection of its own,
    outside the pool. A search that finds the set's version changed starts one background reload and
    is answered by the SQL statement meanwhile; the new copy replaces the old once loaded.
    """

    name = "ragline-memory"

    def __init__(self, db: Database) -> None:
        self._url = db.url
        self._indexes: dict[str, LexicalIndex] = {}
        self._reloading: dict[str, threading.Thread] = {}
        self._failed_at: dict[str, float] = {}
        self._first_load: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.fallback = ExhaustiveBm25()
        self.counts = {"memory": 0, "sql": 0, "loads": 0, "failed_loads": 0}
        # The (k1, b) searches used last (ragline's defaults before any): a load computes their
        # denominators, so the first search of a new copy does not.
        self._params: list[tuple[float, float]] = [(RetrievalSettings.bm25_k1, RetrievalSettings.bm25_b)]

    def index(self, chunk_set: str) -> LexicalIndex | None:
        """The loaded copy of a chunk set, if any."""
        return self._indexes.get(chunk_set)

    def warm(self, chunk_set: str) -> LexicalIndex:
        """Load a chunk set now (a server calls this at start so its first search pays nothing)."""
        index = self._load(chunk_set)
        with self._lock:
            self._indexes[chunk_set] = index
        return index

    def top_texts(
        self, conn: psycopg.Connection, chunk_set: str, text: str, k: int | None, *, k1: float, b: float
    ) -> Bm25Result:
        seen = probe(conn, chunk_set, text)
        index = self._indexes.get(chunk_set) or self._first(chunk_set)
        if index.version != seen.version:
            self._reload_in_background(chunk_set)
            self.counts["sql"] += 1
            return self.fallback.top_texts(conn, chunk_set, text, k, k1=k1, b=b)
        self.counts["memory"] += 1
        if self._params[-1] != (k1, b):
            self._params = [*[p for p in self._params if p != (k1, b)][-1:], (k1, b)]
        return index.top_texts(seen.term_ids, k, k1=k1, b=b)

    def _first(self, chunk_set: str) -> LexicalIndex:
        """The first load of a set: one thread loads, concurrent first searches wait for it."""
        with self._lock:
            gate = self._first_load.setdefault(chunk_set, threading.Lock())
        with gate:
            index = self._indexes.get(chunk_set)
            if index is None:
                try:
                    index = self.warm(chunk_set)
                except (psycopg.Error, RuntimeError) as exc:
                    # The server's failure, not the query's: 503 from the API, not 4xx.
                    raise DatabaseError(
                        f"loading the in-memory BM25 index of {printable(chunk_set, 80)} failed: "
                        f"{printable(redact_error(exc, self._url), 300)}"
                    ) from None
            return index

    def _reload_in_background(self, chunk_set: str) -> None:
        with self._lock:
            running = self._reloading.get(chunk_set)
            if running is not None and running.is_alive():
                return
            if time.monotonic() - self._failed_at.get(chunk_set, -math.inf) < RETRY_AFTER_FAILURE_SECONDS:
                return
            thread = threading.Thread(
                target=self._reload, args=(chunk_set,), name=f"ragline-bm25-load-{chunk_set}", daemon=True
            )
            self._reloading[chunk_set] = thread
        thread.start()

    def _reload(self, chunk_set: str) -> None:
        try:
            self.warm(chunk_set)
        except Exception as exc:  # noqa: BLE001 - the SQL path keeps answering; a later search retries
            self._failed_at[chunk_set] = time.monotonic()
            self.counts["failed_loads"] += 1
            log.warning(
                "reloading the in-memory BM25 index of %s failed (searches use SQL, retry in %.0f s): %s",
                printable(chunk_set, 80),
                RETRY_AFTER_FAILURE_SECONDS,
                printable(redact_error(exc, self._url), 300),
            )

    def _load(self, chunk_set: str) -> LexicalIndex:
        connect = psycopg.connect(self._url, autocommit=True, application_name="ragline-bm25-load")
        with connect as conn, conn.transaction():
            # One snapshot: the version read is the version of the postings read.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            index = load_index(conn, chunk_set)
        for k1, b in self._params:
            index._denominator(k1, b)
        self.counts["loads"] += 1
        log.info(
            "in-memory BM25 index of %s: %d texts, %d postings, %.0f MB, loaded in %.0f ms",
            printable(chunk_set, 80),
            len(index.text_hash),
            index.postings,
            index.nbytes / 2**20,
            index.load_ms,
        )
        return index


_SHARED: weakref.WeakKeyDictionary[Database, MemoryBm25] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def memory_bm25(db: Database) -> MemoryBm25:
    """The one in-memory BM25 backend of a Database: every Retriever on it shares its copies."""
    with _SHARED_LOCK:
        backend = _SHARED.get(db)
        if backend is None:
            backend = _SHARED[db] = MemoryBm25(db)
        return backend
