"""Evaluation: eval sets, variants' corpora, daily retrieval scores with a regression gate, and A/B."""

import datetime as dt

import dagster as dg

from assets.checks import blocking_specs, check_results, gated_scores_asset, severity
from assets.metering import metered
from assets.tables import inline_table
from orchestration.executors import MODEL_POOL
from orchestration.resources import EmbedderResource, RaglineResource
from ragline import expectations
from ragline.evaluation.eval_sets import check_frames, load_sets, remove_unconfigured_sets
from ragline.evaluation.scoring import (
    Comparison,
    clear_comparisons,
    compare,
    gate_outcome,
    per_question_ndcg,
    score_partition,
    store_comparison,
)
from ragline.evaluation.variants import build_variant_corpus, drop_unconfigured_variants
from ragline.index.embedding import variant_embedder
from ragline.llm import chat_client
from ragline.safe_text import printable
from ragline.storage import provenance

EVAL_SET_CHECKS = (
    expectations.EVAL_QUESTIONS_ARE_UNIQUE,
    expectations.EVAL_REFERENCES_EXIST,
    expectations.EVAL_LINES_ARE_VALID,
)


def eval_set_asset(automation: dg.AutomationCondition) -> dg.AssetsDefinition:
    @dg.asset(
        name="eval_set",
        deps=["search_index"],
        group_name="ragline",
        kinds={"python", "postgres"},
        description="Questions of every configured eval set (golden, BEIR, synthetic) with relevant ids.",
        metadata={"table": "ragline.eval_questions"},
        check_specs=blocking_specs("eval_set", EVAL_SET_CHECKS),
        automation_condition=automation,
    )
    @metered
    def eval_set(context: dg.AssetExecutionContext, ragline: RaglineResource):
        settings = ragline.settings()
        with ragline.database().connection() as conn:
            sets = load_sets(conn, settings, chat_client(settings.llm), progress=context.log.info)
            removed = remove_unconfigured_sets(conn, [s.name for s in sets])
            questions, references = check_frames(conn, sets)
            version = provenance.stored_version(conn, provenance.EVAL_SETS)
        rejected = [(s.name, r.where, r.reason) for s in sets for r in s.rejected]
        for name, where, reason in rejected:
            context.log.warning(
                f"eval set {name}: {printable(where, 300)} rejected: {printable(reason, 300)}"
            )
        bad = [(s.name, r.where, r.reason) for s in sets for r in s.bad_lines]
        lines = sum(s.lines_read for s in sets)
        outcomes = expectations.check_eval_questions(questions, references, bad, lines=lines)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(len(s.questions) for s in sets),
                "sets": inline_table(
                    ["eval set", "kind", "questions (synthetic)", "rejected lines", "regenerated"],
                    [
                        [
                            s.name,
                            s.kind,
                            f"{len(s.questions)} ({sum(q.synthetic for q in s.questions)})",
                            len(s.rejected),
                            s.regenerated,
                        ]
                        for s in sets
                    ],
                ),
                "rejected": inline_table(["eval set", "where", "reason"], rejected) if rejected else "none",
                # Lines of eval set files that could not be used (what eval_set_lines_are_valid
                # counts), and chunks a synthetic set's generator wrote no usable question for.
                "rejected_lines": len(bad),
                "generator_rejects": len(rejected) - len(bad),
                "sets_removed": removed,
                "detail": "ragline.eval_questions; every rejected line is in this run's log",
            },
            data_version=dg.DataVersion(version),
            check_results=check_results(outcomes),
        )

    return eval_set


def variant_corpora_asset(
    automation: dg.AutomationCondition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name="variant_corpora",
        deps=["search_index"],
        group_name="ragline",
        kinds={"python", "postgres", "pgvector"},
        description="Chunks and vectors that evaluation variants with their own chunker or model need.",
        metadata={"table": "ragline.variant_chunks"},
        automation_condition=automation,
        pool=MODEL_POOL,
    )
    @metered
    def variant_corpora(
        context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource
    ):
        settings = ragline.settings()
        rows = []
        with ragline.database().connection() as conn:
            for variant in settings.variants:
                model = variant_embedder(variant, embedder.embedder())
                stats = build_variant_corpus(conn, settings, variant, model, progress=context.log.info)
                rows.append(
                    [
                        stats.variant,
                        stats.chunk_set,
                        stats.model_id,
                        stats.chunks,
                        stats.chunks_added,
                        stats.chunks_removed,
                        stats.texts_embedded,
                    ]
                )
            drop_unconfigured_variants(conn, [v.name for v in settings.variants])
            chunks = provenance.stored_version(conn, provenance.VARIANT_CHUNKS)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(r[3] for r in rows),
                "chunks_added": sum(r[4] for r in rows),
                "chunks_removed": sum(r[5] for r in rows),
                "texts_embedded": sum(r[6] for r in rows),
                "variants": inline_table(
                    ["variant", "model", "chunks", "added / removed", "texts embedded"],
                    [[r[0], r[2], r[3], f"{r[4]} / {r[5]}", r[6]] for r in rows],
                ),
                "detail": "ragline.variant_chunks (chunk_set per variant)",
            },
            # Each variant's chunks and the model of its vectors (not the counts of this run's work).
            data_version=dg.DataVersion(
                provenance.combined_version(chunks, *[(r[0], r[1], r[2], r[3]) for r in rows])
            ),
        )

    return variant_corpora


def retrieval_scores_asset(
    partitions: dg.TimeWindowPartitionsDefinition, automation: dg.AutomationCondition, blocking: bool = True
) -> dg.AssetsDefinition:
    @gated_scores_asset(
        "retrieval_scores",
        expectations.NDCG_HAS_NOT_REGRESSED,
        partitions=partitions,
        automation=automation,
        blocking=blocking,
        group="ragline",
        description="Per day, each variant's recall@k, precision@k, MRR, nDCG@10, hit rate and latency.",
        tables="ragline.retrieval_scores, ragline.retrieval_results (per question)",
    )
    @metered
    def retrieval_scores(
        context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource
    ):
        settings = ragline.settings()
        day = dt.date.fromisoformat(context.partition_key)
        scores = score_partition(ragline.database(), settings, embedder.embedder(), day, context.log.info)
        outcome = gate_outcome(scores.comparisons, settings.evaluation, day)
        outcome.metadata["comparisons"] = _comparison_table(scores.comparisons)
        outcome.metadata["failing_ids"] = _first_failures(scores.failures)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(s.questions for _v, _n, s in scores.summaries),
                "scores": _score_table(scores.summaries),
                "trend_ndcg_at_10": _trend_table(
                    scores.history, settings.evaluation.control or settings.variants[0].name
                ),
                "failed_questions": inline_table(
                    ["variant/set/question", "relevant", "retrieved instead"],
                    [["/".join(f[:3]), f[4], f[5]] for f in scores.failures],
                )
                if scores.failures
                else "none: every question retrieved a relevant id in the top k",
                "detail": (
                    f"ragline.retrieval_scores and ragline.retrieval_results WHERE partition = '{day}' "
                    "(every question; hit = 0 for the failed ones)"
                ),
                **{f"ndcg_at_10/{v}/{n}": round(s.ndcg, 4) for v, n, s in scores.summaries},
            },
            # The scores, not their latencies: a re-score that found the same ranks changes nothing
            # for the comparison downstream.
            data_version=dg.DataVersion(
                provenance.combined_version(
                    *[
                        (v, n, s.questions, round(s.ndcg, 6), round(s.recall, 6))
                        for v, n, s in scores.summaries
                    ]
                )
            ),
            check_results=check_results(
                [outcome], severity(settings.evaluation.severity), context.partition_key
            ),
        )

    return retrieval_scores


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _first_failures(failures: list[list[str]], n: int = 5) -> str:
    """The first questions that retrieved nothing relevant, as variant/set/question id."""
    return ", ".join("/".join(f[:3]) for f in failures[:n]) or "none"


def _comparison_table(comparisons: list[Comparison]) -> dg.TableMetadataValue:
    rows = [
        [
            f"{r['candidate']} / {r['eval_set']}",
            f"{r['baseline']} (n={r['questions']})",
            f"{_fmt(r['diff'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["questions"] else "-",
            r["verdict"] if r["questions"] else r["reason"],
        ]
        for r in (c.row() for c in comparisons)
    ]
    return inline_table(["variant / set", "against", "nDCG diff [CI]", "verdict"], rows)


def _score_table(summaries) -> dg.TableMetadataValue:
    # Three columns fit the asset page's metadata column; n, MRR and latency are in ragline.retrieval_scores.
    return inline_table(
        ["variant / set", "nDCG@10", "recall@k"],
        [[f"{v} / {n}", _fmt(s.ndcg), _fmt(s.recall)] for v, n, s in summaries],
    )


def _trend_table(history: list[dict], control: str) -> dg.TableMetadataValue:
    """The control variant's nDCG@10 over the last days scored (newest first); every variant's own
    series is plotted from the ndcg_at_10/VARIANT/SET values."""
    rows = sorted(
        ((h["partition"], h["eval_set"], h["ndcg"]) for h in history if h["variant"] == control), reverse=True
    )
    return inline_table(
        ["partition", f"{control} on", "nDCG@10"], [[d.isoformat(), e, n] for d, e, n in rows]
    )


def variant_comparison_asset(
    partitions: dg.TimeWindowPartitionsDefinition,
    automation: dg.AutomationCondition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name="variant_comparison",
        partitions_def=partitions,
        deps=["retrieval_scores"],
        group_name="ragline",
        kinds={"python", "postgres"},
        description="A/B: each variant against the control on the same questions, paired bootstrap CI.",
        metadata={"table": "ragline.variant_comparisons"},
        automation_condition=automation,
    )
    def variant_comparison(context: dg.AssetExecutionContext, ragline: RaglineResource):
        settings = ragline.settings()
        day = dt.date.fromisoformat(context.partition_key)
        control = settings.evaluation.control or settings.variants[0].name
        comparisons = []
        with ragline.database().connection() as conn:
            clear_comparisons(conn, day)
            for e in settings.eval_sets:
                base = per_question_ndcg(conn, day, control, e.name)
                for variant in settings.variants:
                    if variant.name == control:
                        continue
                    c = compare(
                        base,
                        per_question_ndcg(conn, day, variant.name, e.name),
                        labels=(control, variant.name),
                        eval_set=e.name,
                        settings=settings.evaluation,
                    )
                    store_comparison(conn, day, c)
                    comparisons.append(c)
        better = [c.candidate + "/" + c.eval_set for c in comparisons if c.verdict == "better"]
        worse = [c.candidate + "/" + c.eval_set for c in comparisons if c.verdict == "worse"]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(comparisons),
                "control": control,
                "comparison": _comparison_table(comparisons),
                "detail": f"ragline.variant_comparisons WHERE partition = '{day}'",
                "better_than_control": ", ".join(better) or "none",
                "worse_than_control": ", ".join(worse) or "none",
            }
        )

    return variant_comparison
