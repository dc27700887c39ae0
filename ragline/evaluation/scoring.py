"""Retrieval evaluation: run an eval set through a retriever, score every question, store the rows,
and compare partitions (regression gate) and variants (A/B) with paired bootstrap intervals."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ragline.config import EvaluationSettings, Settings, VariantSettings
from ragline.evaluation.eval_sets import EvalQuestion, stored_questions
from ragline.evaluation.metrics import BootstrapResult, QueryScores, paired_bootstrap, percentile, score_query
from ragline.expectations import NDCG_HAS_NOT_REGRESSED, CheckOutcome
from ragline.retrieval.search import Retriever, build_retriever
from ragline.storage.db import Database, query
from ragline.types import Embedder, Hit


@dataclass
class QuestionResult:
    question_id: str
    scores: QueryScores
    latency_ms: float
    retrieved: list[dict[str, Any]]  # what came back, best first: id scored on, chunk, score
    question_hash: str  # of the question's text and judgements: see question_hash()


def question_hash(q: EvalQuestion) -> str:
    """Identifies a question's text and judgements: only identical questions are compared."""
    return hashlib.sha256(json.dumps([q.question, sorted(q.relevant.items())]).encode()).hexdigest()[:16]


# Document-level questions fetch this many chunks per document wanted, so that the metrics see k
# distinct documents even when a document has several matching chunks (small chunkers do).
CHUNKS_PER_DOCUMENT = 5
NDCG_AT = 10


@dataclass
class Summary:
    questions: int
    k: int
    recall: float
    precision: float
    mrr: float
    ndcg: float
    hit_rate: float
    latency_p50_ms: float
    latency_p95_ms: float


def ranked_ids(hits: Sequence[Hit], document_level: bool) -> list[tuple[str, float]]:
    """Hits as (id, score) best first: documents (first occurrence) or chunks. Scores that do not
    fall with rank (MMR, some rerankers) are replaced by rank so that tie handling stays correct."""
    ids = [h.document if document_level else h.chunk_id for h in hits]
    scores = [h.score for h in hits]
    if any(b > a for a, b in zip(scores, scores[1:], strict=False)):
        scores = [-float(i) for i in range(len(hits))]
    seen: set[str] = set()
    out = []
    for i, s in zip(ids, scores, strict=True):
        if i not in seen:
            seen.add(i)
            out.append((i, s))
    return out


def evaluate(
    retriever: Retriever,
    questions: Sequence[EvalQuestion],
    *,
    k: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[QuestionResult]:
    """Ask every question (not logged as user queries) and score what came back."""
    out = []
    for n, q in enumerate(questions, start=1):
        # Ids with a ':' are documents ("<source>:<doc_id>"); chunk ids are hex digests.
        document_level = all(":" in rid for rid in q.relevant)
        depth = max(k, NDCG_AT)  # nDCG is always @10; the other metrics are @k
        result = retriever.search(
            q.question, k=depth * CHUNKS_PER_DOCUMENT if document_level else depth, log=False
        )
        ranked = ranked_ids(result.hits, document_level)[:depth]
        out.append(
            QuestionResult(
                q.question_id,
                score_query(ranked, q.relevant, k=k, ndcg_k=NDCG_AT),
                result.latency_ms,
                [
                    {
                        "id": h.document if document_level else h.chunk_id,
                        "chunk_id": h.chunk_id,
                        "score": h.score,
                    }
                    for h in result.hits
                ],
                question_hash(q),
            )
        )
        if progress:
            progress(n, len(questions))
    return out


def summarize(results: Sequence[QuestionResult], k: int) -> Summary:
    n = len(results)

    def mean(attr: str) -> float:
        return sum(getattr(r.scores, attr) for r in results) / n if n else float("nan")

    latencies = [r.latency_ms for r in results]
    return Summary(
        questions=n,
        k=k,
        recall=mean("recall"),
        precision=mean("precision"),
        mrr=mean("mrr"),
        ndcg=mean("ndcg"),
        hit_rate=mean("hit"),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
    )


def store_scores(
    conn: psycopg.Connection,
    partition: dt.date,
    variant: str,
    eval_set: str,
    results: Sequence[QuestionResult],
    summary: Summary,
    config: dict[str, Any],
    gate: Comparison,
) -> None:
    """Replace one (partition, variant, eval set)'s per-question rows, summary and gate verdict in one
    transaction: a rerun of a partition is idempotent, and a failure leaves the day's earlier rows (or
    none), never scores without a verdict that later days would take as their baseline."""
    key = {"partition": partition, "variant": variant, "eval_set": eval_set}
    with conn.transaction():
        # Two runs of the same partition (the schedule and automation) take turns here.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"scores:{partition}:{variant}:{eval_set}",)
        )
        conn.execute(query("delete_retrieval_scores"), key)
        with conn.cursor() as cur:
            cur.executemany(
                query("insert_retrieval_result"),
                [
                    {
                        **key,
                        "question_id": r.question_id,
                        **asdict(r.scores),
                        "latency_ms": r.latency_ms,
                        "retrieved": Jsonb(r.retrieved),
                        "question_hash": r.question_hash,
                    }
                    for r in results
                ],
            )
        conn.execute(
            query("insert_retrieval_score"),
            {**key, **asdict(summary), "config": Jsonb(config), "gate_passed": gate.passed},
        )


def _pair_key(question_id: str, question_hash: str) -> str:
    return f"{question_id}#{question_hash}"


def per_question_ndcg(
    conn: psycopg.Connection, partition: dt.date, variant: str, eval_set: str
) -> dict[str, float]:
    """Per-question nDCG@10 keyed by question id and question hash (so edited questions don't pair)."""
    key = {"partition": partition, "variant": variant, "eval_set": eval_set}
    return {_pair_key(qid, h): ndcg for qid, h, ndcg in conn.execute(query("question_ndcg"), key)}


def baseline_partition(
    conn: psycopg.Connection,
    partition: dt.date,
    variant: str,
    eval_set: str,
    settings: EvaluationSettings,
    previous: str = "previous_scored_partition",
) -> dt.date | None:
    """The pinned baseline partition if configured (and earlier), else the latest earlier partition
    whose gate did not fail (the `previous` query): after a real drop, later days keep comparing
    with the last good day."""
    if settings.baseline:
        pinned = dt.date.fromisoformat(settings.baseline)
        return pinned if pinned < partition else None
    key = {"partition": partition, "variant": variant, "eval_set": eval_set}
    row = conn.execute(query(previous), key).fetchone()
    return row[0] if row else None


@dataclass
class Comparison:
    """A paired comparison on the questions both sides answered."""

    baseline: str  # what is compared against: a partition date or a control variant
    candidate: str
    eval_set: str
    result: BootstrapResult | None  # None when there is nothing to pair
    reason: str = ""
    min_effect: float = 0.0  # a significant change smaller than this is reported, not acted on

    @property
    def regressed(self) -> bool:
        """A real drop: the whole interval below zero and the mean drop at least min_effect."""
        r = self.result
        return r is not None and r.significant_drop and -r.mean_diff >= self.min_effect

    @property
    def passed(self) -> bool | None:
        """The gate's verdict as stored: None when there was nothing to compare with."""
        return None if self.result is None else not self.regressed

    @property
    def verdict(self) -> str:
        r = self.result
        if r is None:
            return "not compared"
        if self.regressed:
            return "worse"
        if r.significant_gain and r.mean_diff >= self.min_effect:
            return "better"
        if r.significant_drop or r.significant_gain:
            return "significant but below min_effect"
        return "no significant difference"

    def fields(
        self, *, metric: str | None = None, means: str = "ndcg_", bounds: str = "ci_"
    ) -> dict[str, Any]:
        """What was compared, the means, difference and interval (keys `<means>baseline`, `<bounds>low`...),
        and the verdict: the shared part of a stored comparison row."""
        r = self.result
        return {
            "eval_set": self.eval_set,
            "baseline": self.baseline,
            "candidate": self.candidate,
            **({} if metric is None else {"metric": metric}),
            "questions": r.n if r else 0,
            f"{means}baseline": r.mean_baseline if r else None,
            f"{means}candidate": r.mean_candidate if r else None,
            "diff": r.mean_diff if r else None,
            f"{bounds}low": r.low if r else None,
            f"{bounds}high": r.high if r else None,
            "verdict": self.verdict,
        }

    def row(self) -> dict[str, Any]:
        """The retrieval gate's row: nDCG means, ci_low/ci_high and the reason."""
        return {**self.fields(), "reason": self.reason}


def compare(
    baseline: dict[str, float],
    candidate: dict[str, float],
    *,
    labels: tuple[str, str],
    eval_set: str,
    settings: EvaluationSettings,
) -> Comparison:
    """Paired bootstrap CI of the mean per-question nDCG@10 difference (candidate - baseline)."""
    shared = sorted(set(baseline) & set(candidate))
    if not shared:
        return Comparison(*labels, eval_set, None, "no questions in common")
    result = paired_bootstrap(
        [baseline[q] for q in shared],
        [candidate[q] for q in shared],
        samples=settings.bootstrap_samples,
        confidence=settings.confidence,
    )
    return Comparison(*labels, eval_set, result, min_effect=settings.min_effect)


def against_baseline(
    conn: psycopg.Connection,
    partition: dt.date,
    variant: str,
    eval_set: str,
    results: Sequence[QuestionResult],
    settings: EvaluationSettings,
) -> Comparison:
    """The regression gate: a partition's results (before they are stored) against its baseline's."""
    base = baseline_partition(conn, partition, variant, eval_set, settings)
    if base is None:
        return Comparison("-", variant, eval_set, None, "first scored partition")
    return compare(
        per_question_ndcg(conn, base, variant, eval_set),
        {_pair_key(r.question_id, r.question_hash): r.scores.ndcg for r in results},
        labels=(base.isoformat(), variant),
        eval_set=eval_set,
        settings=settings,
    )


def clear_comparisons(conn: psycopg.Connection, partition: dt.date) -> None:
    conn.execute(query("delete_variant_comparisons"), {"partition": partition})


def store_comparison(conn: psycopg.Connection, partition: dt.date, c: Comparison) -> None:
    if c.result is None:
        return
    r = c.result
    conn.execute(
        query("upsert_variant_comparison"),
        {
            "partition": partition,
            "eval_set": c.eval_set,
            "control": c.baseline,
            "variant": c.candidate,
            "questions": r.n,
            "ndcg_control": r.mean_baseline,
            "ndcg_variant": r.mean_candidate,
            "diff": r.mean_diff,
            "low": r.low,
            "high": r.high,
            "verdict": c.verdict,
        },
    )


def trend(conn: psycopg.Connection, days: int = 14) -> list[dict[str, Any]]:
    """nDCG@10 per partition, variant and eval set over the last `days` partitions scored."""
    rows = conn.execute(query("retrieval_trend"), {"days": days}).fetchall()
    return [
        {"partition": r[0], "variant": r[1], "eval_set": r[2], "ndcg": r[3], "recall": r[4]} for r in rows
    ]


def failed_questions(
    conn: psycopg.Connection, partition: dt.date, variant: str, eval_set: str, limit: int = 10
) -> list[dict[str, Any]]:
    """Questions whose relevant ids were not retrieved at all, with what came back instead."""
    rows = conn.execute(
        query("failed_questions"),
        {"partition": partition, "variant": variant, "eval_set": eval_set, "limit": limit},
    ).fetchall()
    return [
        {
            "question_id": r[0],
            "question": r[1],
            "relevant": list(r[2]),
            "retrieved": [x["id"] for x in r[3][:3]],
        }
        for r in rows
    ]


def latest_scores(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The latest partition's scores, each with its nDCG@10 change since the previous partition."""
    cur = conn.execute(query("latest_scores"))
    names = [c.name for c in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(names, row, strict=True))
        r["ndcg_delta"] = r["ndcg"] - r["previous_ndcg"] if r["previous_ndcg"] is not None else None
        r["partition"] = r["partition"].isoformat()
        r["previous"] = r["previous"].isoformat() if r["previous"] else None
        out.append(r)
    return out


def latest_comparisons(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The latest partition's A/B rows: each variant against the control, with the interval."""
    rows = conn.cursor(row_factory=dict_row).execute(query("latest_variant_comparisons")).fetchall()
    return [{**r, "partition": r["partition"].isoformat()} for r in rows]


def latest_gates(
    conn: psycopg.Connection, scores: Sequence[dict[str, Any]], settings: EvaluationSettings
) -> list[dict[str, Any]]:
    """The regression gate of each latest score row (from latest_scores), recomputed from the stored
    per-question results: the same baseline partition, pairs and seeded bootstrap as at scoring."""
    out = []
    for s in scores:
        day = dt.date.fromisoformat(s["partition"])
        base = baseline_partition(conn, day, s["variant"], s["eval_set"], settings)
        if base is None:
            comparison = Comparison("-", s["variant"], s["eval_set"], None, "first scored partition")
        else:
            comparison = compare(
                per_question_ndcg(conn, base, s["variant"], s["eval_set"]),
                per_question_ndcg(conn, day, s["variant"], s["eval_set"]),
                labels=(base.isoformat(), s["variant"]),
                eval_set=s["eval_set"],
                settings=settings,
            )
        out.append(comparison.row())
    return out


def variant_config(variant: VariantSettings, settings: Settings) -> dict[str, Any]:
    """Everything that decides what a variant retrieves, stored beside its scores."""
    return {
        "retrieval": asdict(variant.retrieval),
        "chunk_set": variant.chunk_set,
        "chunking": asdict(variant.chunking) if variant.chunking else "each source's own",
        "embedding": asdict(variant.embedding or settings.embedding),
        "k": settings.evaluation.k,
        "ef_search": settings.index.ef_search,
    }


@dataclass
class DayScores:
    """One daily partition scored: per variant and eval set, its summary and its gate comparison,
    the questions that retrieved nothing relevant, and the nDCG@10 trend."""

    summaries: list[tuple[str, str, Summary]]
    comparisons: list[Comparison]
    failures: list[list[str]]
    history: list[dict[str, Any]]


def score_partition(
    db: Database,
    settings: Settings,
    embedder: Embedder,
    day: dt.date,
    log: Callable[[str], None] = lambda _msg: None,
) -> DayScores:
    """Ask every variant every stored question, store the day's scores with their gate verdicts, and
    collect what the asset reports. Evaluation runs are never logged as user queries."""
    k = settings.evaluation.k
    out = DayScores([], [], [], [])
    with db.connection() as conn:
        sets = {e.name: stored_questions(conn, e.name) for e in settings.eval_sets}
        for variant in settings.variants:
            retriever = build_retriever(settings, db, embedder, variant=variant, log_queries=False)
            for name, questions in sets.items():
                if not questions:
                    continue
                log(f"{variant.name} on {name}: {len(questions)} questions")
                results = evaluate(retriever, questions, k=k)
                summary = summarize(results, k)
                comparison = against_baseline(conn, day, variant.name, name, results, settings.evaluation)
                config = variant_config(variant, settings)
                store_scores(conn, day, variant.name, name, results, summary, config, comparison)
                out.summaries.append((variant.name, name, summary))
                out.comparisons.append(comparison)
                out.failures += [
                    [
                        variant.name,
                        name,
                        f["question_id"],
                        f["question"][:80],
                        ", ".join(f["relevant"]),
                        ", ".join(f["retrieved"]),
                    ]
                    for f in failed_questions(conn, day, variant.name, name, limit=5)
                ]
        out.history = trend(conn)
    return out


def gate_outcome(
    comparisons: Sequence[Comparison], settings: EvaluationSettings, day: dt.date
) -> CheckOutcome:
    """The regression gate over every variant and eval set: fails when any of them regressed."""
    dropped = [c for c in comparisons if c.regressed]
    compared = sum(c.result is not None for c in comparisons)
    not_compared = [c for c in comparisons if c.result is None]
    skipped = "; ".join(f"{c.candidate}/{c.eval_set}: {c.reason}" for c in not_compared)
    if len(not_compared) > 1:  # one line for on-call, not one clause per variant and set
        reasons = Counter(c.reason for c in not_compared)
        skipped = "; ".join(f"{reason} ({n} variant/set pairs)" for reason, n in reasons.items())
    return CheckOutcome(
        NDCG_HAS_NOT_REGRESSED,
        not dropped,
        untested=None if compared else f"compared 0: {skipped or 'no variant and eval set were scored'}",
        metadata={
            "compared": compared,
            "not_compared": skipped or "none",
            "regressions": ", ".join(f"{c.candidate}/{c.eval_set}" for c in dropped) or "none",
            "confidence": settings.confidence,
            "min_effect": settings.min_effect,
            "where_to_look": (
                "the comparisons table above; failed_questions on this materialization; "
                f"ragline.retrieval_results WHERE partition = '{day}' AND hit = 0; the config column of "
                "ragline.retrieval_scores against the baseline day"
            ),
        },
    )
