"""Drift monitoring against Postgres: pin a baseline snapshot of the corpus vectors, test the current
corpus (per source) and the logged queries for new content, name the documents that hold it, and store
the results per daily partition."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import psycopg

from ragline.config import DriftSettings
from ragline.expectations import CORPUS_HAS_NOT_DRIFTED, QUERIES_HAVE_NOT_DRIFTED, CheckOutcome
from ragline.index.embedding import as_array, with_missing_embedded
from ragline.monitoring.mmd import DriftResult, drift_test
from ragline.safe_text import printable
from ragline.storage.db import DRIFT_BASELINE_LOCK, query, xact_lock
from ragline.types import Embedder

ALL_SOURCES = "all"
SCOPE_CORPUS = "corpus_vs_baseline"
SCOPE_QUERIES_HISTORY = "queries_vs_history"
SCOPE_QUERIES_CORPUS = "queries_vs_corpus"
# Queries and passages are different kinds of text, so queries against the corpus are nearly always
# "significant": that row is context (watch its effect over time), and never raises the alarm.
ALARMING_SCOPES = (SCOPE_CORPUS, SCOPE_QUERIES_HISTORY)
# Vectors kept per source, in the baseline and in each day's current sample alike, so that the
# "all sources" test compares mixtures with the same weights.
ROWS_PER_SOURCE = 2000
# Documents named per alarm: the ones holding most of the rows unlike the baseline.
TOP_DOCUMENTS = 3


@dataclass(frozen=True)
class DriftRow:
    scope: str
    subject: str
    result: DriftResult
    # Where the rows unlike the baseline come from (sources, documents), for a significant corpus row.
    new_content: str = ""

    @property
    def alarm(self) -> bool:
        return self.scope in ALARMING_SCOPES and self.result.alarm

    def summary(self) -> str:
        """One line for on-call: "about 12% new content (p=0.005)", or why it was not tested."""
        r = self.result
        if r.reason:
            return f"not tested: {r.reason}"
        return f"about {r.new_share:.0%} new content (p={r.p_value:.3f})"


@dataclass(frozen=True)
class CorpusRows:
    """Sampled vectors of one source, and the document ("source/path") each row belongs to."""

    vectors: np.ndarray
    documents: tuple[str, ...] = field(default=())


def _vectors(rows: list[tuple]) -> dict[str, np.ndarray]:
    grouped: dict[str, list[np.ndarray]] = defaultdict(list)
    for source, vector in rows:
        grouped[source].append(as_array(vector))
    return {k: np.vstack(v) for k, v in grouped.items()}


def _corpus_rows(rows: list[tuple]) -> dict[str, CorpusRows]:
    vectors = _vectors([(source, vector) for source, _path, vector in rows])
    documents: dict[str, list[str]] = defaultdict(list)
    for source, path, _vector in rows:
        documents[source].append(f"{source}/{path}")
    return {k: CorpusRows(v, tuple(documents[k])) for k, v in vectors.items()}


def new_content_sources(result: DriftResult, documents: tuple[str, ...], by_source: bool) -> str:
    """The sources and the top documents of the current rows unlike the baseline, most rows first;
    "" when the test was not significant (then those rows are what chance puts beyond the threshold)."""
    if not result.significant or not result.unlike_rows:
        return ""
    unlike = [documents[i] for i in result.unlike_rows]
    parts = []
    if by_source:
        sources = Counter(d.split("/", 1)[0] for d in unlike)
        parts.append("sources: " + ", ".join(f"{s} {n}" for s, n in sources.most_common()))
    docs = Counter(unlike).most_common(TOP_DOCUMENTS)
    parts.append(
        f"documents ({len(unlike)} rows unlike the baseline): " + ", ".join(f"{d} {n}" for d, n in docs)
    )
    return printable("; ".join(parts), limit=400)


def baseline_info(conn: psycopg.Connection, model_id: str) -> tuple[dt.datetime | None, int]:
    row = conn.execute(query("drift_baseline_info"), {"model_id": model_id}).fetchone()
    return row[0], row[1]


def pin_baseline(
    conn: psycopg.Connection, model_id: str, per_source: int = ROWS_PER_SOURCE, *, replace: bool = True
) -> dict[str, int] | None:
    """Replace the model's baseline with a seeded sample of the current corpus vectors per source;
    with replace=False, only if none is pinned (else None: another run pinned it first)."""
    with conn.transaction():
        # Two first drift runs would both find no baseline and both insert one.
        xact_lock(conn, DRIFT_BASELINE_LOCK, model_id)
        if not replace and baseline_info(conn, model_id)[1]:
            return None
        conn.execute(query("delete_drift_baseline"), {"model_id": model_id})
        conn.execute(query("pin_drift_baseline"), {"model_id": model_id, "per_source": per_source})
        rows = conn.execute(query("drift_baseline_counts"), {"model_id": model_id}).fetchall()
    return dict(rows)


def current_corpus(conn: psycopg.Connection, model_id: str) -> dict[str, CorpusRows]:
    """A seeded sample of each source's current vectors with their documents, as many per source as the
    baseline keeps; read once per run and shared by the corpus and query tests."""
    return _corpus_rows(
        conn.execute(
            query("sample_corpus_vectors"), {"model_id": model_id, "per_source": ROWS_PER_SOURCE}
        ).fetchall()
    )


def corpus_drift(
    conn: psycopg.Connection,
    model_id: str,
    current: dict[str, CorpusRows],
    settings: DriftSettings,
    seed: int = 0,
) -> list[DriftRow]:
    """Each source's current vectors against the pinned baseline, and all sources together; a
    significant row names the sources and documents of the rows unlike the baseline."""
    baseline = _vectors(conn.execute(query("drift_baseline_vectors"), (model_id,)).fetchall())
    rows = []
    for source in sorted(set(baseline) | set(current)):
        now = current.get(source)
        result = _test(baseline.get(source), now.vectors if now else None, settings, seed)
        rows.append(
            DriftRow(
                SCOPE_CORPUS, source, result, new_content_sources(result, now.documents, False) if now else ""
            )
        )
    if baseline and current:
        documents = tuple(d for c in current.values() for d in c.documents)
        result = _test(
            np.vstack(list(baseline.values())),
            np.vstack([c.vectors for c in current.values()]),
            settings,
            seed,
        )
        rows.append(DriftRow(SCOPE_CORPUS, ALL_SOURCES, result, new_content_sources(result, documents, True)))
    return rows


def query_drift(
    conn: psycopg.Connection,
    day: dt.date,
    embedder: Embedder,
    model_id: str,
    corpus: dict[str, CorpusRows],
    settings: DriftSettings,
    seed: int = 0,
) -> list[DriftRow]:
    """The day's logged queries against the queries of the days before it, and against the corpus
    (no query text is copied into the results: the query log has its own retention)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    window = dt.timedelta(days=settings.query_window_days)
    limit = settings.sample_size
    today = _query_vectors(conn, start, start + dt.timedelta(days=1), embedder, model_id, limit)
    history = _query_vectors(conn, start - window, start, embedder, model_id, limit)
    corpus_all = np.vstack([c.vectors for c in corpus.values()]) if corpus else None
    return [
        DriftRow(
            SCOPE_QUERIES_HISTORY, ALL_SOURCES, _test(history, today, settings, seed, settings.min_queries)
        ),
        DriftRow(
            SCOPE_QUERIES_CORPUS, ALL_SOURCES, _test(corpus_all, today, settings, seed, settings.min_queries)
        ),
    ]


def _query_vectors(
    conn: psycopg.Connection,
    start: dt.datetime,
    end: dt.datetime,
    embedder: Embedder,
    model_id: str,
    limit: int,
) -> np.ndarray | None:
    # A seeded sample in SQL: only what the test uses is read (and embedded, if logged without a vector).
    rows = conn.execute(query("logged_queries"), {"start": start, "end": end, "limit": limit}).fetchall()
    if not rows:
        return None
    # Lexical queries are logged without a vector, others maybe with another model's: embed those now.
    stored = [vector if row_model == model_id else None for _text, row_model, vector in rows]
    return with_missing_embedded(stored, [text for text, _m, _v in rows], embedder)


def _test(
    baseline: np.ndarray | None,
    current: np.ndarray | None,
    settings: DriftSettings,
    seed: int,
    min_rows: int = 10,
) -> DriftResult:
    empty = np.empty((0, 1), dtype=np.float32)
    return drift_test(
        baseline if baseline is not None else empty,
        current if current is not None else empty,
        alpha=settings.alpha,
        min_share=settings.min_new_share,
        permutations=settings.permutations,
        sample_size=settings.sample_size,
        seed=seed,
        min_rows=min_rows,
    )


def store_drift(conn: psycopg.Connection, day: dt.date, rows: list[DriftRow]) -> None:
    """Replace the partition's drift rows in one transaction."""
    with conn.transaction():
        conn.execute(query("delete_drift_metrics"), {"partition": day})
        with conn.cursor() as cur:
            cur.executemany(
                query("insert_drift_metric"),
                [
                    {
                        "partition": day,
                        "scope": r.scope,
                        "subject": r.subject,
                        "p_value": None if np.isnan(r.result.p_value) else r.result.p_value,
                        # The MMD² column predates the new-content test; its `effect` column holds
                        # the estimated new-content share, and `reason` what moved.
                        "mmd2": None,
                        "effect": None if np.isnan(r.result.new_share) else r.result.new_share,
                        "n_baseline": r.result.n_baseline,
                        "n_current": r.result.n_current,
                        "significant": r.result.significant,
                        "alarm": r.alarm,
                        "reason": r.result.reason or r.new_content,
                    }
                    for r in rows
                ],
            )


def latest_drift(conn: psycopg.Connection) -> list[dict]:
    """The latest partition's drift rows, for `ragline status`: `effect` is the estimated share of
    new content, `reason` why a row was not tested, `new_content` where a significant row's new rows
    are, `alarming` whether the row's scope can raise the alarm at all."""
    cur = conn.execute(query("latest_drift"))
    names = [c.name for c in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for r in rows:
        r["partition"] = r["partition"].isoformat()
        r["alarming"] = r["scope"] in ALARMING_SCOPES  # False: a context row, which never alarms
    return rows


@dataclass(frozen=True)
class DriftRun:
    """One day's drift results, and the baseline they were measured against."""

    rows: list[DriftRow]
    baseline_pinned_at: dt.datetime | None
    baseline_rows: int
    pinned_now: bool


def measure_drift(
    conn: psycopg.Connection,
    day: dt.date,
    embedder: Embedder,
    settings: DriftSettings,
    log: Callable[[str], None] = lambda _msg: None,
) -> DriftRun:
    """The day's drift tests, stored: the corpus against its pinned baseline (the first run pins it;
    `ragline drift pin` re-pins after an accepted change) and the day's queries."""
    model_id = embedder.model_id
    pinned_at, rows = baseline_info(conn, model_id)
    pinned_now = False
    if rows == 0:
        pinned = pin_baseline(conn, model_id, replace=False)
        pinned_now = pinned is not None
        if pinned_now:
            log(f"pinned a drift baseline: {pinned}")
        pinned_at, rows = baseline_info(conn, model_id)
    current = current_corpus(conn, model_id)
    results = corpus_drift(conn, model_id, current, settings)
    results += query_drift(conn, day, embedder, model_id, current, settings)
    store_drift(conn, day, results)
    return DriftRun(results, pinned_at, rows, pinned_now)


def drift_outcomes(rows: list[DriftRow], settings: DriftSettings, day: dt.date) -> list[CheckOutcome]:
    """The two drift checks: no source's corpus and no day's queries alarmed (untested rows say why)."""
    outcomes = []
    for name, scope, where in (
        (
            CORPUS_HAS_NOT_DRIFTED,
            SCOPE_CORPUS,
            "new_content (which source, which documents hold the rows unlike the baseline); that source's "
            "recent raw_documents runs; if the change is intended, `ragline drift pin` re-pins the baseline",
        ),
        (
            QUERIES_HAVE_NOT_DRIFTED,
            SCOPE_QUERIES_HISTORY,
            f"ragline.query_log WHERE asked_at::date = '{day}'; add eval questions for the new topics",
        ),
    ):
        scoped = [r for r in rows if r.scope == scope]
        alarms = [f"{r.subject}: {r.summary()}" for r in scoped if r.alarm]
        skipped = [f"{r.subject}: {r.result.reason}" for r in scoped if r.result.reason]
        untested = None
        if len(skipped) == len(scoped):
            untested = "; ".join(skipped) or f"nothing to test in {scope}"
        outcomes.append(
            CheckOutcome(
                name,
                not alarms,
                {
                    "alarms": "; ".join(alarms) or "none",
                    "new_content": " | ".join(f"{r.subject}: {r.new_content}" for r in scoped if r.alarm)
                    or "none",
                    "skipped": "; ".join(skipped) or "none",
                    "alpha": settings.alpha,
                    "min_new_share": settings.min_new_share,
                    "where_to_look": where,
                },
                untested=untested,
            )
        )
    return outcomes
