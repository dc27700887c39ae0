"""Answer evaluation: each answer variant answers each eval set, the judge and the similarity metrics
score every answer, the rows are stored per question, aggregated with intervals, compared between
variants (A/B, pointwise and pairwise) and against the baseline partition (the regression gate)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ragline.answer.answering import answer
from ragline.answer.citations import without_citations
from ragline.answer.pipeline import Answerer, build_answerer, model_selector
from ragline.config import (
    AnswerEvaluationSettings,
    AnswerVariantSettings,
    EvaluationSettings,
    RoutingSettings,
    Settings,
    VariantSettings,
    chat_models,
)
from ragline.evaluation.eval_sets import EvalQuestion, stored_questions
from ragline.evaluation.metrics import MeanInterval, bootstrap_ci, paired_bootstrap_nested
from ragline.evaluation.scoring import Comparison, baseline_partition, compare, question_hash, variant_config
from ragline.expectations import CheckOutcome
from ragline.llm import LLMError
from ragline.retrieval.search import build_retriever
from ragline.safe_text import printable
from ragline.storage.db import ANSWER_SCORES_LOCK, Database, query, xact_lock
from ragline.types import JUDGE_METRICS, SIMILARITY_METRICS, Embedder, RetrievalError

if TYPE_CHECKING:
    from ragline.evaluation.judge import Judge

ANSWER_SCORES_HAVE_NOT_REGRESSED = "answer_scores_have_not_regressed"
NO_CHAT_MODEL = "skipped: no chat model configured (llm: or models: block)"
PREFERENCE = "preference"
# Metrics that compare with the eval set's reference answer: not applicable to a question without one.
NEEDS_REFERENCE = frozenset({"context_precision", "context_recall", "correctness", *SIMILARITY_METRICS})
REASON_CHARS = 300


@dataclass
class MetricValue:
    """One metric of one answer: a judge metric with every sample, or a similarity value."""

    metric: str
    kind: str  # judge | similarity
    mean: float | None  # None: unmeasured
    low: float | None = None
    high: float | None = None
    spread: float | None = None
    samples: list[float | None] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    cached: int = 0

    @property
    def unmeasured(self) -> int:
        """Samples without a value (a similarity metric has one sample: its value)."""
        return sum(s is None for s in self.samples)


@dataclass
class QuestionAnswer:
    """What one answer variant answered to one question, the context it was given, its metrics."""

    question_id: str
    question_hash: str
    question: str
    reference: str | None
    answer: str  # '' when it abstained or failed
    abstained: bool
    answer_id: int | None
    context: list[dict[str, Any]]  # [{number, chunk_id, document, text}] as judged
    cached: bool = False
    failed: str = ""  # why no answer was made (the chat model failed): every metric unmeasured
    metrics: dict[str, MetricValue] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return pair_key(self.question_id, self.question_hash)

    @property
    def passages(self) -> list[str]:
        return [c["text"] for c in self.context]


@dataclass
class MetricScore:
    """A metric over the questions of one eval set: mean of the measured ones, interval over them."""

    metric: str
    kind: str
    questions: int
    measured: int
    unmeasured: int
    interval: MeanInterval | None
    samples: int = 0  # every sample of every question (a similarity metric: one per question)
    unmeasured_samples: int = 0  # of those, how many have no value (a failed or unparseable call)

    @property
    def mean(self) -> float | None:
        return self.interval.mean if self.interval else None


@dataclass
class MetricComparison:
    """A paired comparison of one metric (gate: against the baseline partition; A/B: the control)."""

    metric: str
    comparison: Comparison
    left_out: int = 0  # questions in common left out of the pairing: unmeasured on either side

    def row(self) -> dict[str, Any]:
        c = self.comparison
        return {
            **c.fields(metric=self.metric, means="mean_", bounds=""),
            "details": {"reason": c.reason, "left_out_unmeasured": self.left_out}
            if c.reason or self.left_out
            else {},
        }


@dataclass
class PairwiseComparison:
    """The judge's preference for the candidate's answers over the control's, both orders judged."""

    eval_set: str
    control: str
    candidate: str
    interval: MeanInterval | None  # over the questions with a measured preference
    details: dict[str, Any]

    @property
    def verdict(self) -> str:
        i = self.interval
        if i is None:
            return "not compared"
        if i.low > 0:
            return "candidate preferred"
        if i.high < 0:
            return "control preferred"
        return "no significant preference"

    def row(self) -> dict[str, Any]:
        i = self.interval
        return {
            "eval_set": self.eval_set,
            "baseline": self.control,
            "candidate": self.candidate,
            "metric": PREFERENCE,
            "questions": i.n if i else 0,
            "mean_baseline": None,
            "mean_candidate": None,
            "diff": i.mean if i else None,
            "low": i.low if i else None,
            "high": i.high if i else None,
            "verdict": self.verdict,
            "details": self.details,
        }


@dataclass
class AnswerDayScores:
    """One daily partition of answer_scores: per variant and eval set its metric scores, the gate's
    comparisons, the A/B comparisons, and what the judge did."""

    scores: list[tuple[str, str, MetricScore]] = field(default_factory=list)
    gates: list[MetricComparison] = field(default_factory=list)
    pointwise: list[MetricComparison] = field(default_factory=list)
    pairwise: list[PairwiseComparison] = field(default_factory=list)
    questions: int = 0
    judge_samples: int = 0
    cached_samples: int = 0
    answers_cached: int = 0
    answers_failed: int = 0
    skipped: str | None = None


def pair_key(question_id: str, question_hash: str) -> str:
    return f"{question_id}#{question_hash}"


def answer_question_hash(q: EvalQuestion) -> str:
    """Identifies a question with its judgements and its reference answer: a question whose
    reference changed is a new question to the answer gate and the A/B, never paired with the old."""
    return hashlib.sha256(json.dumps([question_hash(q), q.answer]).encode()).hexdigest()[:16]


def has_chat_model(settings: Settings) -> bool:
    return bool(chat_models(settings))


def evaluation_questions(
    conn: psycopg.Connection, settings: Settings
) -> list[tuple[str, list[EvalQuestion]]]:
    """The eval sets to answer, each with its questions (those with a reference answer; a set
    named in answer_evaluation.eval_sets without any is asked whole), first max_questions by id."""
    ae = settings.answer_evaluation
    names = list(ae.eval_sets) or [e.name for e in settings.eval_sets]
    out = []
    for name in names:
        questions = stored_questions(conn, name)
        referenced = [q for q in questions if q.answer]
        if referenced:
            questions = referenced
        elif not ae.eval_sets:
            continue  # by default only sets whose questions carry reference answers
        questions = sorted(questions, key=lambda q: q.question_id)[: ae.max_questions]
        if questions:
            out.append((name, questions))
    return out


def retrieval_variant(settings: Settings, variant: AnswerVariantSettings) -> VariantSettings | None:
    """The retrieval variant an answer variant names; None: the first configured (or the pipeline's)."""
    if variant.retrieval is None:
        return settings.variants[0] if settings.variants else None
    return next(v for v in settings.variants if v.name == variant.retrieval)


def variant_answerer(
    settings: Settings, db: Database, embedder: Embedder, variant: AnswerVariantSettings
) -> Answerer:
    """The answer pipeline of one answer variant: its retriever (queries not logged), its model (a
    models: entry without routing, or the default selector), the answer cache on (a rerun of the
    same configuration reproduces the same answers)."""
    settings = dataclasses.replace(settings, cache=dataclasses.replace(settings.cache, enabled=True))
    retriever = build_retriever(
        settings, db, embedder, variant=retrieval_variant(settings, variant), log_queries=False
    )
    if variant.model is not None:
        from ragline.answer.routing import Router

        # That one model, no escalation and no fallback: a variant measures one model.
        models = Router(dataclasses.replace(settings, routing=RoutingSettings(default=variant.model)))
    else:
        models = model_selector(settings)
    return build_answerer(settings, db, retriever=retriever, models=models)


def other_questions(questions: Sequence[EvalQuestion], seed: int) -> dict[str, str]:
    """The negative control's pairing: each question id -> another question of the set (seeded)."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    return {
        questions[i].question_id: questions[order[(n + 1) % len(order)]].question for n, i in enumerate(order)
    }


def answer_questions(
    answerer: Answerer,
    variant: AnswerVariantSettings,
    questions: Sequence[EvalQuestion],
    *,
    seed: int,
    log: Callable[[str], None],
) -> list[QuestionAnswer]:
    """Answer every question (with another question's context for the negative control) and read
    back the context each answer was given. The surrounding call sink records the model calls."""
    prompt = variant.prompt or answerer.settings.answer.prompt
    control = variant.context == "other_question"
    others = other_questions(questions, seed) if control else {}
    # The negative control never reads or writes the answer cache: a (semantic) hit would serve
    # another question's answer, and its own answers would land under real questions' keys.
    parts = answerer.parts() | {"cache": None if control else answerer.cache}
    out = []
    for q in questions:
        extra = {"search_text": others[q.question_id]} if q.question_id in others else {}
        try:
            a = answer(q.question, **parts, prompt=prompt, log=False, **extra)
        except (LLMError, RetrievalError) as exc:
            reason = printable(f"the answer failed: {exc}", REASON_CHARS)
            log(f"{variant.name}: question {printable(q.question_id, 80)}: {reason}")
            out.append(_answer_row(q, "", False, None, [], failed=reason))
            continue
        with answerer.db.connection() as conn:
            context = answer_context(conn, a.answer_id) if a.answer_id is not None else []
        text = "" if a.abstained else a.text
        out.append(_answer_row(q, text, a.abstained, a.answer_id, context, cached=a.cached))
    return out


def _answer_row(
    q: EvalQuestion,
    text: str,
    abstained: bool,
    answer_id: int | None,
    context: list[dict[str, Any]],
    *,
    cached: bool = False,
    failed: str = "",
) -> QuestionAnswer:
    return QuestionAnswer(
        q.question_id,
        answer_question_hash(q),
        q.question,
        q.answer,
        text,
        abstained,
        answer_id,
        context,
        cached=cached,
        failed=failed,
    )


def answer_context(conn: psycopg.Connection, answer_id: int) -> list[dict[str, Any]]:
    """The passages an answer was given, in prompt order: [{number, chunk_id, document, text}]."""
    rows = conn.cursor(row_factory=dict_row).execute(query("answer_context"), {"answer_id": answer_id})
    return [dict(r) for r in rows.fetchall()]


def judged(metric: str, j: Any) -> MetricValue:
    """A Judgement as stored: every sample, the reason of each unmeasured one."""
    return MetricValue(
        metric,
        "judge",
        j.mean,
        j.low,
        j.high,
        j.spread,
        list(j.samples),
        [printable(r, REASON_CHARS) for r in j.reasons],
        dict(j.details),
        j.cached,
    )


def judge_answer(judge: Judge, qa: QuestionAnswer, metrics: Sequence[str]) -> None:
    """The judge metrics of one answer (those needing a reference only where there is one)."""
    calls: dict[str, Callable[[], Any]] = {
        "faithfulness": lambda: judge.faithfulness(qa.question, qa.answer, qa.passages),
        "relevance": lambda: judge.relevance(qa.question, qa.answer),
        "context_precision": lambda: judge.context_precision(qa.question, qa.passages, qa.reference or ""),
        "context_recall": lambda: judge.context_recall(qa.passages, qa.reference or ""),
        "correctness": lambda: judge.correctness(qa.question, qa.answer, qa.reference or ""),
    }
    for metric in metrics:
        if metric not in JUDGE_METRICS or (metric in NEEDS_REFERENCE and not qa.reference):
            continue
        if qa.failed:
            qa.metrics[metric] = MetricValue(metric, "judge", None, samples=[None], reasons=[qa.failed])
            continue
        qa.metrics[metric] = judged(metric, calls[metric]())


def similarity_values(embedder: Embedder, qa: QuestionAnswer, metrics: Sequence[str]) -> None:
    """The similarity metrics of one answer against its reference (none without a reference)."""
    wanted = [m for m in metrics if m in SIMILARITY_METRICS]
    if not wanted or not qa.reference:
        return
    if qa.failed:
        for m in wanted:
            qa.metrics[m] = MetricValue(m, "similarity", None, samples=[None], reasons=[qa.failed])
        return
    from ragline.evaluation import similarity

    # A reference carries no [n] markers: left in, they would cost every cited answer its match.
    text = without_citations(qa.answer)
    if hasattr(embedder, "token_vectors"):
        values: dict[str, float | None] = dict(
            similarity.similarity_scores(embedder, embedder, text, qa.reference)  # type: ignore[arg-type]
        )
    else:  # a remote embedding model gives no contextual token vectors: no BERTScore-style score
        values = {
            "exact_match": similarity.exact_match(text, qa.reference),
            "token_f1": similarity.token_f1(text, qa.reference),
            "rouge_l": similarity.rouge_l(text, qa.reference),
            "embedding_cosine": similarity.embedding_cosine(embedder, [text], [qa.reference])[0],
        }
    for m in wanted:
        value = values.get(m)
        reason = "" if value is not None else "the embedding model gives no token vectors"
        qa.metrics[m] = MetricValue(
            m, "similarity", value, value, value, 0.0 if value is not None else None, [value], [reason]
        )


def aggregate(
    results: Sequence[QuestionAnswer], metrics: Sequence[str], evaluation: EvaluationSettings
) -> list[MetricScore]:
    """Per metric: the mean over the questions measured with its bootstrap interval over questions,
    and how many were not measured (never averaged in as 0)."""
    out = []
    for metric in metrics:
        present = [r.metrics[metric] for r in results if metric in r.metrics]
        values = [v.mean for v in present if v.mean is not None]
        interval = (
            bootstrap_ci(values, samples=evaluation.bootstrap_samples, confidence=evaluation.confidence)
            if values
            else None
        )
        kind = "judge" if metric in JUDGE_METRICS else "similarity"
        out.append(
            MetricScore(
                metric,
                kind,
                len(results),
                len(values),
                len(present) - len(values),
                interval,
                sum(len(v.samples) for v in present),
                sum(v.unmeasured for v in present),
            )
        )
    return out


def gate_settings(settings: Settings) -> EvaluationSettings:
    """The evaluation settings the answer gate compares with: answer_evaluation's min_effect and
    pinned baseline (else evaluation's), evaluation's bootstrap samples and confidence."""
    ae = settings.answer_evaluation
    return dataclasses.replace(
        settings.evaluation, min_effect=ae.min_effect, baseline=ae.baseline or settings.evaluation.baseline
    )


def per_question_metric(
    conn: psycopg.Connection, day: dt.date, variant: str, eval_set: str, metric: str
) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    """A metric's per-question mean (None: unmeasured) and measured samples, keyed by question id
    and question hash."""
    key = {"partition": day, "variant": variant, "eval_set": eval_set, "metric": metric}
    means: dict[str, float | None] = {}
    samples: dict[str, list[float]] = {}
    for q, h, mean, values in conn.execute(query("answer_question_metric"), key):
        means[pair_key(q, h)] = mean
        samples[pair_key(q, h)] = [v for v in values or [] if v is not None]
    return means, samples


def measured_samples(results: Sequence[QuestionAnswer], metric: str) -> dict[str, list[float]]:
    """Each question's measured samples of a metric (a similarity metric: its one value)."""
    return {
        r.key: [v for v in r.metrics[metric].samples if v is not None] for r in results if metric in r.metrics
    }


def paired(
    baseline: dict[str, float | None],
    candidate: dict[str, float | None],
    *,
    metric: str,
    labels: tuple[str, str],
    eval_set: str,
    settings: EvaluationSettings,
    min_questions: int = 1,
    samples: tuple[dict[str, list[float]], dict[str, list[float]]] | None = None,
) -> MetricComparison:
    """compare() over the questions both sides measured (the questions in common that either side
    left unmeasured are counted, not paired); fewer than min_questions pairs: not compared; a judge
    metric with its samples: the two-level bootstrap (questions, then each question's samples)."""
    shared = set(baseline) & set(candidate)
    left_out = sum(baseline[k] is None or candidate[k] is None for k in shared)
    measured_base = {k: v for k, v in baseline.items() if v is not None}
    measured_cand = {k: v for k, v in candidate.items() if v is not None}
    c = compare(measured_base, measured_cand, labels=labels, eval_set=eval_set, settings=settings)
    if c.result is None and shared:
        c.reason = f"no question measured on both sides ({left_out} in common unmeasured)"
    elif c.result is not None and c.result.n < min_questions:
        reason = (
            f"{c.result.n} questions paired, fewer than answer_evaluation.min_questions ({min_questions})"
        )
        c = Comparison(*labels, eval_set, None, reason)
    elif c.result is not None and samples is not None and metric in JUDGE_METRICS:
        keys = sorted(set(measured_base) & set(measured_cand))
        sb, sc = samples
        result = paired_bootstrap_nested(
            [sb.get(k) or [measured_base[k]] for k in keys],
            [sc.get(k) or [measured_cand[k]] for k in keys],
            samples=settings.bootstrap_samples,
            confidence=settings.confidence,
        )
        c = Comparison(*labels, eval_set, result, min_effect=settings.min_effect)
    return MetricComparison(metric, c, left_out)


def against_baseline(
    conn: psycopg.Connection,
    day: dt.date,
    variant: str,
    eval_set: str,
    results: Sequence[QuestionAnswer],
    settings: Settings,
) -> list[MetricComparison]:
    """The regression gate: each gate metric of a partition's answers (before they are stored)
    against its baseline partition's."""
    evaluation = gate_settings(settings)
    base = baseline_partition(conn, day, variant, eval_set, evaluation, "previous_answer_partition")
    out = []
    for metric in settings.answer_evaluation.gate_metrics:
        candidate = {r.key: r.metrics[metric].mean for r in results if metric in r.metrics}
        if base is None:
            c = Comparison("-", variant, eval_set, None, "first scored partition")
            out.append(MetricComparison(metric, c))
            continue
        means, samples = per_question_metric(conn, base, variant, eval_set, metric)
        out.append(
            paired(
                means,
                candidate,
                metric=metric,
                labels=(base.isoformat(), variant),
                eval_set=eval_set,
                settings=evaluation,
                min_questions=settings.answer_evaluation.min_questions,
                samples=(samples, measured_samples(results, metric)),
            )
        )
    return out


def answer_config(
    settings: Settings, variant: AnswerVariantSettings, answerer: Answerer, judge: Judge
) -> dict[str, Any]:
    """Everything that decides what an answer variant answers and how it is judged, stored beside
    its scores."""
    rv = retrieval_variant(settings, variant)
    return {
        "retrieval_variant": rv.name if rv else None,
        "retrieval": variant_config(rv, settings) if rv else dataclasses.asdict(settings.retrieval),
        "model": variant.model or "default",
        "served_model": getattr(answerer.models, "default", None) or _model_name(answerer),
        "prompt": variant.prompt or settings.answer.prompt,
        "context": variant.context,
        "answer": {
            "max_tokens": settings.answer.max_tokens,
            "temperature": settings.answer.temperature,
            "min_support": settings.answer.min_support,
            "context_tokens": settings.answer.context_tokens,
        },
        "judge": {
            "model": judge.model.model,
            "prompts": dict(judge.prompt_versions),
            "samples": judge.settings.samples,
            "temperature": judge.settings.temperature,
        },
    }


def _model_name(answerer: Answerer) -> str | None:
    model = getattr(answerer.models, "model", None)
    return getattr(model, "model", None)


def store_answers(
    conn: psycopg.Connection,
    day: dt.date,
    variant: str,
    eval_set: str,
    results: Sequence[QuestionAnswer],
    scores: Sequence[MetricScore],
    gates: Sequence[MetricComparison],
    config: dict[str, Any],
) -> None:
    """Replace one (partition, eval set, variant)'s answers, metric rows, scores and gate rows in one
    transaction: a rerun never duplicates, and a failure leaves the earlier rows (or none)."""
    key = {"partition": day, "eval_set": eval_set, "variant": variant}
    verdicts = {g.metric: g.comparison.passed for g in gates}
    with conn.transaction():
        # Two runs of the same partition (the schedule and automation) take turns here.
        xact_lock(conn, ANSWER_SCORES_LOCK, f"scores:{day}:{variant}:{eval_set}")
        conn.execute(query("delete_answer_results"), key)  # the metric rows go with them (cascade)
        conn.execute(query("delete_answer_scores"), key)
        conn.execute(
            query("delete_answer_comparisons"),
            {"partition": day, "eval_set": eval_set, "kinds": ["gate"], "candidate": variant},
        )
        with conn.cursor() as cur:
            cur.executemany(
                query("insert_answer_result"),
                [
                    {
                        **key,
                        "question_id": r.question_id,
                        "question_hash": r.question_hash,
                        "question": r.question,
                        "reference": r.reference,
                        "answer": r.answer,
                        "abstained": r.abstained,
                        "answer_id": r.answer_id,
                        "context_chunk_ids": [c["chunk_id"] for c in r.context],
                        "context": Jsonb(r.context),
                    }
                    for r in results
                ],
            )
            cur.executemany(
                query("insert_answer_metric_result"),
                [
                    {
                        **key,
                        "question_id": r.question_id,
                        "metric": m.metric,
                        "kind": m.kind,
                        "mean": m.mean,
                        "low": m.low,
                        "high": m.high,
                        "spread": m.spread,
                        "samples": Jsonb(m.samples),
                        "unmeasured": m.unmeasured,
                        "reasons": Jsonb(m.reasons),
                        "details": Jsonb(m.details),
                        "cached": m.cached,
                    }
                    for r in results
                    for m in r.metrics.values()
                ],
            )
            cur.executemany(
                query("insert_answer_score"),
                [
                    {
                        **key,
                        "metric": s.metric,
                        "kind": s.kind,
                        "questions": s.questions,
                        "measured": s.measured,
                        "unmeasured": s.unmeasured,
                        "mean": s.mean,
                        "low": s.interval.low if s.interval else None,
                        "high": s.interval.high if s.interval else None,
                        # The sample counts ride in config (no column for them in 0011).
                        "config": Jsonb(
                            {**config, "samples": {"total": s.samples, "unmeasured": s.unmeasured_samples}}
                        ),
                        "gate_passed": verdicts.get(s.metric),
                    }
                    for s in scores
                ],
            )
            _insert_comparisons(cur, day, "gate", [g.row() for g in gates])


def _insert_comparisons(cur: psycopg.Cursor, day: dt.date, kind: str, rows: Sequence[dict[str, Any]]) -> None:
    cur.executemany(
        query("insert_answer_comparison"),
        [{**r, "partition": day, "kind": kind, "details": Jsonb(r["details"])} for r in rows],
    )


def store_ab(
    conn: psycopg.Connection,
    day: dt.date,
    eval_set: str,
    pointwise: Sequence[MetricComparison],
    pairwise: Sequence[PairwiseComparison],
) -> None:
    """Replace one partition's A/B rows of an eval set in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        xact_lock(conn, ANSWER_SCORES_LOCK, f"ab:{day}:{eval_set}")
        cur.execute(
            query("delete_answer_comparisons"),
            {
                "partition": day,
                "eval_set": eval_set,
                "kinds": ["ab_pointwise", "ab_pairwise"],
                "candidate": None,
            },
        )
        _insert_comparisons(cur, day, "ab_pointwise", [c.row() for c in pointwise])
        _insert_comparisons(cur, day, "ab_pairwise", [p.row() for p in pairwise])


def pointwise_ab(
    eval_set: str,
    control: str,
    candidate: str,
    base: Sequence[QuestionAnswer],
    cand: Sequence[QuestionAnswer],
    metrics: Sequence[str],
    evaluation: EvaluationSettings,
    min_questions: int = 1,
) -> list[MetricComparison]:
    """Each metric of a variant against the control, paired bootstrap over the questions both measured."""
    return [
        paired(
            {r.key: r.metrics[m].mean for r in base if m in r.metrics},
            {r.key: r.metrics[m].mean for r in cand if m in r.metrics},
            metric=m,
            labels=(control, candidate),
            eval_set=eval_set,
            settings=evaluation,
            min_questions=min_questions,
            samples=(measured_samples(base, m), measured_samples(cand, m)),
        )
        for m in metrics
    ]


def pairwise_ab(
    judge: Judge,
    eval_set: str,
    control: str,
    candidate: str,
    base: Sequence[QuestionAnswer],
    cand: Sequence[QuestionAnswer],
    evaluation: EvaluationSettings,
) -> tuple[PairwiseComparison, int, int]:
    """The judge's preference per question (both orders; the control's context as the passages),
    its mean with a bootstrap interval; questions where either answer failed are counted (failed),
    not judged; also the samples judged and how many came from the cache."""
    theirs = {r.key: r for r in cand}
    means: list[float] = []
    unmeasured = consistent = measured_samples = samples = cached = ties = failed = 0
    biases: list[float] = []
    for a in base:
        b = theirs.get(a.key)
        if b is None:
            continue
        if a.failed or b.failed:
            failed += 1  # no answer to prefer: counted and shown, not judged
            continue
        p = judge.pairwise(a.question, a.answer, b.answer, a.passages)
        samples += len(p.samples)
        cached += p.cached
        measured_samples += sum(s is not None for s in p.samples)
        consistent += p.consistent
        if p.position_bias is not None:
            biases.append(p.position_bias)
        if p.mean is None:
            unmeasured += 1
            continue
        means.append(p.mean)
        ties += p.mean == 0
    interval = (
        bootstrap_ci(means, samples=evaluation.bootstrap_samples, confidence=evaluation.confidence)
        if means
        else None
    )
    details = {
        "failed": failed,
        "unmeasured": unmeasured,
        "ties": ties,
        "position_consistent_share": round(consistent / measured_samples, 4) if measured_samples else None,
        "position_bias": round(sum(biases) / len(biases), 4) if biases else None,
        "passages": "the control's context",
    }
    return PairwiseComparison(eval_set, control, candidate, interval, details), samples, cached


def score_answers(
    db: Database,
    settings: Settings,
    embedder: Embedder,
    judge: Judge,
    day: dt.date,
    log: Callable[[str], None] = lambda _msg: None,
) -> AnswerDayScores:
    """Answer every eval set with every answer variant, judge and score each answer, store the
    day's rows with their gate verdicts, then the A/B comparisons against the control."""
    ae: AnswerEvaluationSettings = settings.answer_evaluation
    evaluation = gate_settings(settings)
    out = AnswerDayScores()
    with db.connection() as conn:
        sets = evaluation_questions(conn, settings)
    answered: dict[tuple[str, str], list[QuestionAnswer]] = {}
    for variant in ae.variants:
        answerer = variant_answerer(settings, db, embedder, variant)
        config = answer_config(settings, variant, answerer, judge)
        for name, questions in sets:
            log(f"{variant.name} on {name}: answering {len(questions)} questions")
            results = answer_questions(answerer, variant, questions, seed=ae.seed, log=log)
            for n, qa in enumerate(results, start=1):
                judge_answer(judge, qa, ae.metrics)
                similarity_values(embedder, qa, ae.metrics)
                judged_samples = [m for m in qa.metrics.values() if m.kind == "judge"]
                out.judge_samples += sum(len(m.samples) for m in judged_samples)
                out.cached_samples += sum(m.cached for m in judged_samples)
                state = "failed" if qa.failed else "abstained" if qa.abstained else "answered"
                log(
                    f"{variant.name}/{name}: question {n}/{len(results)} {printable(qa.question_id, 80)} "
                    f"{state}{' (cached answer)' if qa.cached else ''}, judged"
                )
            out.questions += len(results)
            out.answers_cached += sum(r.cached for r in results)
            out.answers_failed += sum(bool(r.failed) for r in results)
            scores = aggregate(results, ae.metrics, evaluation)
            with db.connection() as conn:
                gates = against_baseline(conn, day, variant.name, name, results, settings)
                store_answers(conn, day, variant.name, name, results, scores, gates, config)
            out.scores += [(variant.name, name, s) for s in scores]
            out.gates += gates
            answered[(variant.name, name)] = results
    control = ae.control or ae.variants[0].name
    for name, _questions in sets:
        pointwise: list[MetricComparison] = []
        pairwise: list[PairwiseComparison] = []
        for variant in ae.variants:
            if variant.name == control:
                continue
            base, cand = answered[(control, name)], answered[(variant.name, name)]
            pointwise += pointwise_ab(
                name, control, variant.name, base, cand, ae.metrics, evaluation, ae.min_questions
            )
            if ae.pairwise:
                log(f"pairwise: {variant.name} against {control} on {name}")
                p, samples, cached = pairwise_ab(judge, name, control, variant.name, base, cand, evaluation)
                pairwise.append(p)
                out.judge_samples += samples
                out.cached_samples += cached
        with db.connection() as conn:
            store_ab(conn, day, name, pointwise, pairwise)
        out.pointwise += pointwise
        out.pairwise += pairwise
    return out


def answer_gate_outcome(
    gates: Sequence[MetricComparison],
    settings: Settings,
    day: dt.date,
    untested: str | None = None,
) -> CheckOutcome:
    """The answer regression gate over every variant, eval set and gate metric: fails when any of
    them dropped for real (the same rule as the retrieval gate); nothing compared is not tested."""
    dropped = [g for g in gates if g.comparison.regressed]
    compared = sum(g.comparison.result is not None for g in gates)
    not_compared = [g for g in gates if g.comparison.result is None]
    reasons = Counter(g.comparison.reason for g in not_compared)
    skipped = "; ".join(f"{reason} ({n} variant/set/metric)" for reason, n in reasons.items())
    if untested is None and not compared:
        untested = f"compared 0: {skipped or 'no answer variant and eval set were scored'}"
    blind = judge_not_compared(gates)
    if untested is None and blind and not dropped:
        # Similarity metrics alone cannot pass the gate when the judge measured nothing comparable.
        untested = f"judge metrics not compared: {blind}"
    evaluation = gate_settings(settings)
    return CheckOutcome(
        ANSWER_SCORES_HAVE_NOT_REGRESSED,
        not dropped,
        untested=untested,
        metadata={
            "compared": compared,
            "not_compared": skipped or "none",
            "regressions": ", ".join(
                f"{g.comparison.candidate}/{g.comparison.eval_set}/{g.metric}" for g in dropped
            )
            or "none",
            "unmeasured_left_out": sum(g.left_out for g in gates),
            "judge_not_compared": blind or "none",
            "gate_metrics": ", ".join(settings.answer_evaluation.gate_metrics),
            "confidence": evaluation.confidence,
            "min_effect": evaluation.min_effect,
            "where_to_look": (
                f"the gate table above; ragline.answer_comparisons WHERE partition = '{day}' AND kind = "
                "'gate'; ragline.answer_metric_results for each question's samples and reasons; the "
                "config column of ragline.answer_scores against the baseline day"
            ),
        },
    )


def judge_not_compared(gates: Sequence[MetricComparison]) -> str:
    """The gate's judge metrics that compared no question, by variant/set ('' when none)."""
    blind: dict[str, list[str]] = {}
    for g in gates:
        if g.metric in JUDGE_METRICS and g.comparison.result is None:
            where = f"{g.comparison.candidate}/{g.comparison.eval_set}"
            blind.setdefault(where, []).append(g.metric)
    return "; ".join(f"{', '.join(metrics)} on {where}" for where, metrics in blind.items())


def latest_answer_scores(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The latest partition's answer scores, each with its change since the previous partition and
    the gate's paired interval against its baseline partition."""
    rows = conn.cursor(row_factory=dict_row).execute(query("latest_answer_scores")).fetchall()
    out = []
    for r in rows:
        r = dict(r)
        r["delta"] = (
            r["mean"] - r["previous_mean"]
            if r["mean"] is not None and r["previous_mean"] is not None
            else None
        )
        r["partition"] = r["partition"].isoformat()
        r["previous"] = r["previous"].isoformat() if r["previous"] else None
        out.append(r)
    return out


def latest_answer_comparisons(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The latest partition's A/B rows (pointwise and pairwise) between answer variants."""
    rows = conn.cursor(row_factory=dict_row).execute(query("latest_answer_comparisons")).fetchall()
    return [{**r, "partition": r["partition"].isoformat()} for r in rows]


def judge_agreement_rows(conn: psycopg.Connection) -> list[str]:
    """Judge-vs-people and between-annotator agreement for status and the board: the latest day of
    ragline.annotation_agreement, one line per judge metric (none before anyone labelled)."""
    from ragline.evaluation.annotation import agreement_summary

    return agreement_summary(conn)
