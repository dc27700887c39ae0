"""The automation gate on upstream blocking checks, which lets a WARN result through.

Dagster 1.13's `all_deps_blocking_checks_passed()` waits until every upstream blocking check
*passed*: a failed result of any severity holds downstream automation, including a WARN result
of a check that could not test anything (assets/checks.py: the first-ever nDCG gate has no
previous partition). In a run, only an ERROR failure of a blocking check stops downstream steps
(dagster/_core/execution/plan/execute_step.py). This gate applies the same rule to automation:
a blocking check holds downstream only while its latest result is a failure with ERROR severity.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter


class CheckWarned(dg.AutomationCondition[dg.AssetCheckKey]):
    """True for a check (partition) whose latest result failed with WARN severity."""

    @property
    def name(self) -> str:
        return "check_warned"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:  # type: ignore[override]
        key = context.key
        storage = context.asset_graph_view.instance.event_log_storage
        candidates = context.candidate_subset
        if context.partitions_def is None:
            latest = storage.get_latest_asset_check_execution_by_key([key]).get(key)
            warned = candidates if _warned(latest) else context.get_empty_subset()
        else:
            keys = {
                pk
                for pk in candidates.expensively_compute_partition_keys()
                if _warned(
                    storage.get_latest_asset_check_execution_by_key(
                        [key], partition_filter=PartitionKeyFilter(key=pk)
                    ).get(key)
                )
            }
            warned = candidates.compute_intersection_with_partition_keys(keys)
        return dg.AutomationResult(context, true_subset=warned)


def _warned(record) -> bool:
    evaluation = record.event.asset_check_evaluation if record is not None and record.event else None
    return (
        evaluation is not None and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    )


# Every upstream blocking check passed, or failed only with a warning, or will run on this tick.
ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED = dg.AutomationCondition.all_deps_match(
    dg.AutomationCondition.all_checks_match(
        dg.AutomationCondition.check_passed() | CheckWarned() | dg.AutomationCondition.will_be_requested(),
        blocking_only=True,
    ).with_label("all_blocking_checks_passed_or_warned")
).with_label("all_deps_blocking_checks_not_failed")
