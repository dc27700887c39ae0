"""Human evaluation: the daily queue of answers for people to label, with agreement and calibration."""

import datetime as dt
from collections import Counter

import dagster as dg

from assets.tables import inline_table
from orchestration.resources import RaglineResource
from ragline.evaluation.annotation import (
    REASONS,
    agreement,
    calibration,
    select_queue,
    status_counts,
    store_queue,
)


def annotation_queue_asset(
    partitions: dg.TimeWindowPartitionsDefinition, automation: dg.AutomationCondition
) -> dg.AssetsDefinition:
    @dg.asset(
        name="annotation_queue",
        partitions_def=partitions,
        deps=["answer_scores"],
        group_name="quality",
        kinds={"python", "postgres"},
        description="Answers for people to label (low judge confidence, judge-similarity disagreement, "
        "random control), and the agreement of their labels with each other and the judge.",
        metadata={"tables": "ragline.annotation_items, ragline.human_labels, ragline.annotation_agreement"},
        automation_condition=automation,
    )
    def annotation_queue(context: dg.AssetExecutionContext, ragline: RaglineResource):
        day = dt.date.fromisoformat(context.partition_key)
        with ragline.database().connection() as conn:
            stored = store_queue(conn, select_queue(conn, day, ragline.settings().annotation))
            counts = status_counts(conn)
            rows = agreement(conn, day)
        reasons = Counter(reason for _id, item in stored for reason in item.reasons)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(stored),
                "queued": len(stored),
                "queued_by_reason": inline_table(["reason", "items"], [[r, reasons[r]] for r in REASONS]),
                **{f"items_{status}": n for status, n in counts.items()},
                "agreement": inline_table(
                    ["label", "between annotators", "value", "n"],
                    [[r.label, r.statistic, r.value, r.n] for r in rows if r.scope == "annotators"],
                ),
                "calibration": inline_table(
                    ["judge metric", "n", "bin match", "kappa", "Spearman"],
                    [[c.metric, c.n, c.bin_match, c.kappa, c.spearman] for c in calibration(rows)],
                ),
                "detail": f"ragline.annotation_agreement WHERE partition = '{day}'; label at /annotate "
                "(ragline serve) or with `ragline label`",
            }
        )

    return annotation_queue
