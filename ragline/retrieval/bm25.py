"""Exact Okapi BM25 that reads only what a query needs: a threshold (MaxScore) search over
impact-ordered postings in Postgres, equal to scoring every posting of the query's terms."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import psycopg

from ragline.storage.db import query

# The reference parameters of the stored impact (ragline.bm25_impact in migration 0004). The impact
# is only an order; these let a reader bound what a posting below a given impact can weigh.
IMPACT_K1 = 1.2
IMPACT_B = 0.75
IMPACT_AVGDL = 100.0
# Impacts are stored as real: a posting's true reference weight may exceed its stored impact by
# one float4 rounding (2**-24 relative).
_IMPACT_SLACK = 1e-6
# Bounds and the threshold are compared with this margin, far above float8 rounding and far below
# any difference between two scores that matters for ranking.
_MARGIN = 1e-9
# Postings read per term in the first round, as a multiple of k; later rounds read 4x as many.
FIRST_READ = 1
GROWTH = 4

# BM25 extensions a server may offer; ragline reports them, and keeps its own postings otherwise.
BM25_EXTENSIONS = ("pg_search", "pg_textsearch", "vchord_bm25")


@dataclass(frozen=True)
class ScoredText:
    text_hash: str
    score: float


@dataclass
class Bm25Result:
    texts: list[ScoredText]
    rounds: int = 0
    postings_read: int = 0
    texts_scored: int = 0
    exhaustive: bool = False


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


def reference_weight(tf: int, doc_length: int) -> float:
    """The stored impact's formula (ragline.bm25_impact) before its rounding to real."""
    return tf * (IMPACT_K1 + 1) / (tf + IMPACT_K1 * (1 - IMPACT_B + IMPACT_B * doc_length / IMPACT_AVGDL))


def unseen_weight_bound(impact: float, max_tf: int, *, k1: float, b: float, avgdl: float) -> float:
    """The largest tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)) that a posting can have when its
    stored impact is at most `impact` and its tf at most `max_tf`.

    The weight rises with tf and falls with dl (for k1, b >= 0). A stored impact <= I means the
    reference weight <= I, that is dl >= A0 / (k0 b0) * (tf * ((k0 + 1) / I - 1) - k0 (1 - b0)); a text
    also holds at least tf lexemes. So for each tf the weight is largest at the smallest such dl.
    """
    top = impact * (1 + _IMPACT_SLACK)
    tf = np.arange(1, max(max_tf, 1) + 1, dtype=np.float64)
    least = (
        IMPACT_AVGDL
        / (IMPACT_K1 * IMPACT_B)
        * (tf * ((IMPACT_K1 + 1) / top - 1) - IMPACT_K1 * (1 - IMPACT_B))
    )
    dl = np.maximum(least, tf)
    return float((tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))).max())


@dataclass
class _Term:
    term_id: int
    df: float
    max_tf: int
    idf: float
    read: int = 0
    last_impact: float = math.inf
    exhausted: bool = False
    bound: float = math.inf  # idf * the largest weight of a posting not read yet
    goal: int = 0  # postings to have read by the end of this round


@dataclass
class _Candidate:
    partial: float = 0.0  # weights of the postings read so far (a lower bound of the score)
    seen: int = 0  # bit i: term i's posting of this text has been read
    exact: float | None = None
    text_hash: str = ""


class PostgresBm25:
    """BM25 over ragline's own postings (migration 0004), in plain SQL on any Postgres.

    Each round reads, per query term, the next postings in impact order (k, then 4x more per round),
    scores exactly (through the (set, term, text) key) every candidate whose upper bound can still
    reach the k-th best, and stops once the k-th exact score is strictly above the best score a text
    not yet seen could have. A term read to its end adds nothing to that bound.
    """

    name = "ragline-postings"

    def top_texts(
        self, conn: psycopg.Connection, chunk_set: str, text: str, k: int | None, *, k1: float, b: float
    ) -> Bm25Result:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            # One snapshot for every round, so a publish committing meanwhile cannot break the bounds.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", prepare=True)
                return self._search(conn, chunk_set, text, k, k1=k1, b=b)
        return self._search(conn, chunk_set, text, k, k1=k1, b=b)

    def _search(
        self, conn: psycopg.Connection, chunk_set: str, text: str, k: int | None, *, k1: float, b: float
    ) -> Bm25Result:
        if k is None:
            return exhaustive_top_texts(conn, chunk_set, text, None, k1=k1, b=b)
        rows = conn.execute(query("bm25_query_terms"), {"query": text, "chunk_set": chunk_set}, prepare=True)
        rows = rows.fetchall()
        if not rows:
            return Bm25Result([])
        n, avgdl = float(rows[0][3]), float(rows[0][4])
        terms = [
            _Term(int(term_id), float(df), int(max_tf), math.log(1 + (n - df + 0.5) / (df + 0.5)))
            for term_id, df, max_tf, _n, _avgdl in rows
        ]
        index = {t.term_id: i for i, t in enumerate(terms)}
        scoring = {
            "chunk_set": chunk_set,
            "n": n,
            "avgdl": avgdl,
            "k1": k1,
            "b": b,
            "term_ids": [t.term_id for t in terms],
            "dfs": [t.df for t in terms],
        }
        candidates: dict[int, _Candidate] = {}
        result = Bm25Result([])
        for t in terms:
            t.goal = max(k, 1) * FIRST_READ
        while True:
            result.rounds += 1
            reading = [t for t in terms if not t.exhausted and t.goal > t.read]
            takes = [t.goal - t.read for t in reading]
            postings = conn.execute(
                query("bm25_top_postings"),
                {
                    "chunk_set": chunk_set,
                    "term_ids": [t.term_id for t in reading],
                    "skips": [t.read for t in reading],
                    "takes": takes,
                },
                prepare=True,
            ).fetchall()
            result.postings_read += len(postings)
            got = dict.fromkeys((t.term_id for t in reading), 0)
            for term_id, text_id, tf, doc_length, impact in postings:
                i = index[term_id]
                term = terms[i]
                got[term_id] += 1
                term.last_impact = min(term.last_impact, impact)
                c = candidates.get(text_id)
                if c is None:
                    c = candidates[text_id] = _Candidate()
                c.seen |= 1 << i
                c.partial += term.idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_length / avgdl))
            for term, take in zip(reading, takes, strict=True):
                term.read += got[term.term_id]
                if got[term.term_id] < take:
                    term.exhausted, term.bound = True, 0.0
                else:
                    bound = unseen_weight_bound(term.last_impact, term.max_tf, k1=k1, b=b, avgdl=avgdl)
                    term.bound = term.idf * bound
            # Exact scores are fetched once, when the partial scores alone (lower bounds) already put
            # k texts above anything unread: the k-th exact score can only be higher.
            unseen = sum(t.bound for t in terms)
            kth = (
                heapq.nlargest(k, (c.partial for c in candidates.values()))[-1]
                if len(candidates) >= k
                else None
            )
            if all(t.exhausted for t in terms) or (
                kth is not None and kth * (1 - _MARGIN) - _MARGIN > unseen * (1 + _MARGIN) + _MARGIN
            ):
                self._score_hopeful(conn, candidates, terms, k, scoring, result)
                ranked = heapq.nsmallest(
                    k,
                    ((c.exact, c.text_hash) for c in candidates.values() if c.exact is not None),
                    key=lambda e: (-e[0], e[1]),
                )
                result.texts = [ScoredText(h, s) for s, h in ranked]
                return result
            # Read deeper only where it lowers the bound most: the terms whose unread postings could
            # weigh at least half as much as the heaviest term's.
            heaviest = max(t.bound for t in terms)
            for t in terms:
                if not t.exhausted and t.bound >= heaviest / 2:
                    t.goal *= GROWTH

    @staticmethod
    def _score_hopeful(
        conn: psycopg.Connection,
        candidates: dict[int, _Candidate],
        terms: Sequence[_Term],
        k: int,
        scoring: dict,
        result: Bm25Result,
    ) -> None:
        """Score exactly every candidate whose best possible score reaches the k-th best partial score
        (a candidate below it cannot be in the top k, since k texts score at least that much)."""
        if len(candidates) >= k:
            threshold = heapq.nlargest(k, (c.partial for c in candidates.values()))[-1]
            threshold = threshold * (1 - _MARGIN) - _MARGIN
        else:
            threshold = -math.inf
        missing: dict[int, float] = {}
        todo = []
        for text_id, c in candidates.items():
            if c.exact is not None:
                continue
            rest = missing.get(c.seen)
            if rest is None:
                rest = missing[c.seen] = sum(t.bound for i, t in enumerate(terms) if not c.seen >> i & 1)
            if (c.partial + rest) * (1 + _MARGIN) + _MARGIN >= threshold:
                todo.append(text_id)
        if not todo:
            return
        rows = conn.execute(query("bm25_score_texts"), {**scoring, "text_ids": todo}, prepare=True)
        for text_id, text_hash, score in rows:
            c = candidates[text_id]
            c.exact, c.text_hash = float(score), text_hash
        result.texts_scored += len(todo)


class ExhaustiveBm25:
    """BM25 in one statement (bm25_top_texts.sql): every posting of the query's terms scored, the
    top texts kept. What lexical search serves: on real text at 24k and 100k chunks it answered
    faster than the threshold search (PostgresBm25), whose rounds cost a round trip each and whose
    common query terms' bounds fall slowly (benchmarks/results/bm25_latency.md)."""

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
    return Bm25Result([ScoredText(h, float(s)) for h, s in rows], rounds=1, exhaustive=True)
