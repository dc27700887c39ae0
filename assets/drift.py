"""drift_metrics: daily calibrated drift tests of the corpus and of the logged queries."""

import datetime as dt

import dagster as dg

from assets.checks import blocking_specs, check_results, severity
from assets.metering import metered
from assets.tables import markdown_table
from orchestration.resources import EmbedderResource, RaglineResource
from ragline import expectations
from ragline.monitoring.drift import drift_outcomes, measure_drift


def drift_metrics_asset(
    partitions: dg.TimeWindowPartitionsDefinition, automation: dg.AutomationCondition, blocking: bool = True
) -> dg.AssetsDefinition:
    @dg.asset(
        name="drift_metrics",
        partitions_def=partitions,
        deps=["search_index"],
        group_name="ragline",
        kinds={"python", "postgres"},
        description="Share of new content: corpus vs baseline per source; queries vs earlier days.",
        metadata={"tables": "ragline.drift_metrics, ragline.drift_baseline"},
        check_specs=blocking_specs(
            "drift_metrics",
            [expectations.CORPUS_HAS_NOT_DRIFTED, expectations.QUERIES_HAVE_NOT_DRIFTED],
            blocking,
        ),
        automation_condition=automation,
    )
    @metered
    def drift_metrics(
        context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource
    ):
        settings = ragline.settings()
        day = dt.date.fromisoformat(context.partition_key)
        model = embedder.embedder()
        with ragline.database().connection() as conn:
            drift = measure_drift(conn, day, model, settings.drift, context.log.info)
        results = drift.rows
        table = markdown_table(
            ["scope", "subject", "result", "n baseline", "n current", "alarm", "new content in"],
            [
                [
                    r.scope,
                    r.subject,
                    r.summary(),
                    r.result.n_baseline,
                    r.result.n_current,
                    "ALARM" if r.alarm else "",
                    r.new_content,
                ]
                for r in results
            ],
        )
        outcomes = drift_outcomes(results, settings.drift, day)
        for o in outcomes:
            if drift.pinned_now and o.name == expectations.CORPUS_HAS_NOT_DRIFTED and not o.untested:
                o.untested = "the baseline was pinned in this run: the corpus was compared with itself"
        numbers = {
            f"new_share/{r.scope}/{r.subject}": round(r.result.new_share, 4)
            for r in results
            if not r.result.reason
        }
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(results),
                "drift": dg.MetadataValue.md(table),
                "baseline_pinned_at": str(drift.baseline_pinned_at),
                "baseline_rows": drift.baseline_rows,
                "baseline_pinned_this_run": drift.pinned_now,
                **numbers,
            },
            check_results=check_results(outcomes, severity(settings.drift.severity), context.partition_key),
        )

    return drift_metrics
