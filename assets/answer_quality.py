"""Answer quality: daily answer scores per eval set and answer variant, judged with intervals, the
A/B between answer variants, and the blocking regression gate on the answer metrics."""

import datetime as dt

import dagster as dg

from assets.checks import check_results, gated_scores_asset, severity
from assets.metering import metered
from orchestration.resources import EmbedderResource, RaglineResource
from ragline.evaluation.answer_scoring import (
    ANSWER_SCORES_HAVE_NOT_REGRESSED,
    NO_CHAT_MODEL,
    AnswerDayScores,
    answer_gate_outcome,
    has_chat_model,
    score_answers,
)
from ragline.monitoring.board import ab_verdict, unmeasured_summary
from ragline.storage import provenance


def answer_scores_asset(
    partitions: dg.TimeWindowPartitionsDefinition, automation: dg.AutomationCondition, blocking: bool = True
) -> dg.AssetsDefinition:
    @gated_scores_asset(
        "answer_scores",
        ANSWER_SCORES_HAVE_NOT_REGRESSED,
        partitions=partitions,
        automation=automation,
        blocking=blocking,
        group="quality",
        description="Per day, each answer variant's judged and similarity metrics with intervals, A/B, gate.",
        tables="ragline.answer_scores, answer_results, answer_metric_results, answer_comparisons",
    )
    @metered
    def answer_scores(
        context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource
    ):
        settings = ragline.settings()
        day = dt.date.fromisoformat(context.partition_key)
        level = severity(settings.answer_evaluation.severity)
        if not has_chat_model(settings):
            context.log.warning(NO_CHAT_MODEL)
            outcome = answer_gate_outcome([], settings, day, untested=NO_CHAT_MODEL)
            return dg.MaterializeResult(
                metadata={"dagster/row_count": 0, "skipped": NO_CHAT_MODEL},
                data_version=dg.DataVersion(provenance.combined_version("skipped")),
                check_results=check_results([outcome], level, context.partition_key),
            )
        from ragline.evaluation.judge import build_judge

        db = ragline.database()
        judge = build_judge(settings, db)  # redacts what it sends when guardrails are on
        scores = score_answers(db, settings, embedder.embedder(), judge, day, context.log.info)
        outcome = answer_gate_outcome(scores.gates, settings, day)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": scores.questions,
                "scores": dg.MetadataValue.md(score_markdown(scores)),
                "ab": dg.MetadataValue.md(ab_markdown(scores)),
                "gate": dg.MetadataValue.md(gate_markdown(scores)),
                "judge_samples": scores.judge_samples,
                "judge_samples_cached": scores.cached_samples,
                "answers_cached": scores.answers_cached,
                "answers_failed": scores.answers_failed,
                "unmeasured": sum(s.unmeasured for _v, _n, s in scores.scores),
                "unmeasured_samples": sum(s.unmeasured_samples for _v, _n, s in scores.scores),
                "detail": f"ragline.answer_results, answer_metric_results WHERE partition = '{day}'",
            },
            data_version=dg.DataVersion(
                provenance.combined_version(
                    *[(v, n, s.metric, s.measured, round(s.mean or 0.0, 6)) for v, n, s in scores.scores]
                )
            ),
            check_results=check_results([outcome], level, context.partition_key),
        )

    return answer_scores


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def score_markdown(scores: AnswerDayScores) -> str:
    """Every metric per variant and eval set: mean [interval], measured, unmeasured samples/questions."""
    return _md(
        ["variant / set", "metric", "mean [interval]", "measured", "unmeasured"],
        [
            [
                f"{v} / {n}",
                s.metric,
                f"{_f(s.mean)} [{_f(s.interval.low)}, {_f(s.interval.high)}]" if s.interval else "—",
                str(s.measured),
                unmeasured_summary(
                    s.questions, s.unmeasured, {"total": s.samples, "unmeasured": s.unmeasured_samples}
                ),
            ]
            for v, n, s in scores.scores
        ],
    )


def ab_markdown(scores: AnswerDayScores) -> str:
    """Pointwise (per metric) and pairwise (the judge's preference) against the control."""
    rows = [
        [
            f"{r['candidate']} vs {r['baseline']} / {r['eval_set']}",
            r["metric"],
            str(r["questions"]),
            f"{_f(r['diff'], 4)} [{_f(r['low'], 4)}, {_f(r['high'], 4)}]",
            ab_verdict(r),
        ]
        for r in [c.row() for c in scores.pointwise] + [p.row() for p in scores.pairwise]
    ]
    return (
        _md(["candidate vs control / set", "metric", "n", "diff [interval]", "verdict"], rows)
        if rows
        else ("one answer variant: no A/B")
    )


def gate_markdown(scores: AnswerDayScores) -> str:
    """Each gate metric against the baseline partition, with the unmeasured questions left out."""
    rows = [
        [
            f"{r['candidate']} / {r['eval_set']}",
            r["metric"],
            f"{r['baseline']} (n={r['questions']})",
            f"{_f(r['diff'], 4)} [{_f(r['low'], 4)}, {_f(r['high'], 4)}]" if r["questions"] else "—",
            r["verdict"] if r["questions"] else r["details"].get("reason", "not compared"),
            str(g.left_out),
        ]
        for g in scores.gates
        for r in [g.row()]
    ]
    return _md(["variant / set", "metric", "against", "diff [interval]", "verdict", "left out"], rows)
