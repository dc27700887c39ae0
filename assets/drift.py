"""drift_metrics: daily calibrated drift tests of the corpus and of the logged queries."""

import datetime as dt

import dagster as dg

from assets.checks import blocking_specs, check_results, severity
from assets.tables import markdown_table
from orchestration.resources import EmbedderResource, RaglineResource
from ragline import quality
from ragline.monitoring import (
    SCOPE_CORPUS,
    SCOPE_QUERIES_HISTORY,
    baseline_info,
    corpus_drift,
    current_corpus,
    pin_baseline,
    query_drift,
    store_drift,
)


def drift_metrics_asset(
    partitions: dg.TimeWindowPartitionsDefinition, automation: dg.AutomationCondition, blocking: bool = True
) -> dg.AssetsDefinition:
    @dg.asset(
        name="drift_metrics",
        partitions_def=partitions,
        deps=["search_index"],
        group_name="monitoring",
        kinds={"python", "postgres"},
        description="MMD permutation tests: corpus vs pinned baseline per source; queries vs earlier days.",
        metadata={"tables": "ragline.drift_metrics, ragline.drift_baseline"},
        check_specs=blocking_specs(
            "drift_metrics", [quality.CORPUS_HAS_NOT_DRIFTED, quality.QUERIES_HAVE_NOT_DRIFTED], blocking
        ),
        automation_condition=automation,
    )
    def drift_metrics(
        context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource
    ):
        settings = ragline.settings()
        day = dt.date.fromisoformat(context.partition_key)
        model = embedder.embedder()
        with ragline.database().connection() as conn:
            pinned_at, rows = baseline_info(conn, model.model_id)
            pinned_now = rows == 0
            if pinned_now:
                # The first run pins the baseline; `ragline drift pin` re-pins after an accepted change.
                counts = pin_baseline(conn, model.model_id)
                context.log.info(f"pinned a drift baseline: {counts}")
                pinned_at, rows = baseline_info(conn, model.model_id)
            current = current_corpus(conn, model.model_id)
            results = corpus_drift(conn, model.model_id, current, settings.drift)
            results += query_drift(conn, day, model, model.model_id, current, settings.drift)
            store_drift(conn, day, results)
        table = markdown_table(
            ["scope", "subject", "p value", "effect", "n baseline", "n current", "alarm", "note"],
            [
                [
                    r.scope,
                    r.subject,
                    "-" if r.result.reason else f"{r.result.p_value:.4f}",
                    "-" if r.result.reason else f"{r.result.effect:.4f}",
                    r.result.n_baseline,
                    r.result.n_current,
                    "ALARM" if r.alarm else "",
                    r.result.reason,
                ]
                for r in results
            ],
        )
        outcomes = []
        for name, scope, where in (
            (
                quality.CORPUS_HAS_NOT_DRIFTED,
                SCOPE_CORPUS,
                "the drift table on this materialization (which source, its effect); the source's recent "
                "raw_documents runs; if the change is intended, `ragline drift pin` re-pins the baseline",
            ),
            (
                quality.QUERIES_HAVE_NOT_DRIFTED,
                SCOPE_QUERIES_HISTORY,
                f"ragline.query_log WHERE asked_at::date = '{day}'; add eval questions for the new topics",
            ),
        ):
            scoped = [r for r in results if r.scope == scope]
            alarms = [r.subject for r in scoped if r.alarm]
            skipped = [f"{r.subject}: {r.result.reason}" for r in scoped if r.result.reason]
            outcomes.append(
                quality.CheckOutcome(
                    name,
                    not alarms,
                    {
                        "alarms": ", ".join(alarms) or "none",
                        "not_tested": "; ".join(skipped) or "none",
                        "alpha": settings.drift.alpha,
                        "min_effect": settings.drift.min_effect,
                        "where_to_look": where,
                    },
                )
            )
        numbers = {
            f"effect/{r.scope}/{r.subject}": round(r.result.effect, 4) for r in results if not r.result.reason
        }
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(results),
                "drift": dg.MetadataValue.md(table),
                "baseline_pinned_at": str(pinned_at),
                "baseline_rows": rows,
                "baseline_pinned_this_run": pinned_now,
                **numbers,
            },
            check_results=check_results(outcomes, severity(settings.drift.severity)),
        )

    return drift_metrics
