"""The automation gate on upstream blocking checks, which lets a WARN result through.

Dagster 1.13's `all_deps_blocking_checks_passed()` waits until every upstream blocking check
*passed*: a failed result of any severity holds downstream automation, including a WARN result
of a check that could not test anything (assets/checks.py: the first-ever nDCG gate has no
previous partition). In a run, only an ERROR failure of a blocking check stops downstream steps
(dagster/_core/execution/plan/execute_step.py). This gate applies the same rule to automation:
a blocking check holds downstream only while its latest result is not a pass or a warning.

It is a custom condition, so the automation sensor evaluates it in the code server
(`use_user_code_server=True` in orchestration/definitions.py); the daemon only sees its snapshot.

Runs that name their assets (`ragline materialize`, the daily quality schedule) apply the same rule
with `held_assets`: they leave out the assets downstream of a blocking check that failed at ERROR.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus


class BlockingChecksNotFailed(dg.AutomationCondition[dg.AssetKey]):
    """True for an asset (partition) whose blocking checks' latest results passed or only warned."""

    @property
    def name(self) -> str:
        return "blocking_checks_passed_or_warned"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:  # type: ignore[override]
        graph = context.asset_graph
        storage = context.asset_graph_view.instance.event_log_storage
        ok = context.candidate_subset
        for check in sorted(graph.get(context.key).check_keys, key=lambda k: k.name):
            node = graph.get(check)
            if not node.blocking:
                continue
            if node.partitions_def is None or context.partitions_def is None:
                latest = storage.get_latest_asset_check_execution_by_key([check]).get(check)
                if not _passed_or_warned(latest):
                    ok = context.get_empty_subset()
            else:
                # A partitioned check (one result per source): judge each candidate partition.
                ok = ok.compute_intersection_with_partition_keys(
                    {
                        pk
                        for pk in ok.expensively_compute_partition_keys()
                        if _passed_or_warned(
                            storage.get_latest_asset_check_execution_by_key(
                                [check], partition_filter=PartitionKeyFilter(key=pk)
                            ).get(check)
                        )
                    }
                )
        return dg.AutomationResult(context, true_subset=ok)


def _passed_or_warned(record) -> bool:
    evaluation = record.event.asset_check_evaluation if record is not None and record.event else None
    if evaluation is None:
        return False  # never ran, or still running: wait, as Dagster's own gate does
    return evaluation.passed or evaluation.severity == dg.AssetCheckSeverity.WARN


def held_assets(
    instance: dg.DagsterInstance, graph: BaseAssetGraph, keys: Iterable[dg.AssetKey]
) -> dict[dg.AssetKey, tuple[str, ...]]:
    """The keys (of one job, in the given order) held by an upstream blocking check whose latest
    evaluation failed at ERROR, each with those checks' names ("eval_set.eval_questions_are_unique")."""
    keys = list(keys)
    selected = set(keys)
    failed: dict[dg.AssetKey, tuple[str, ...]] = {}  # upstream asset -> its failed blocking checks

    def failed_checks(upstream: dg.AssetKey) -> tuple[str, ...]:
        if upstream not in failed:
            node = graph.get(upstream)
            # Per-source (partitioned) upstream assets are left out: a source whose checks fail is not
            # published (serving_chunks), so the index the quality assets read keeps its last good data.
            checks = () if node.partitions_def is not None else sorted(node.check_keys, key=lambda k: k.name)
            failed[upstream] = tuple(
                f"{upstream.to_user_string()}.{check.name}"
                for check in checks
                if graph.get(check).blocking and _failed_with_error(instance, check)
            )
        return failed[upstream]

    held: dict[dg.AssetKey, tuple[str, ...]] = {}
    for key in keys:
        # An asset of the job itself is judged by its own run (a blocking failure there stops its
        # downstream steps); only what the job does not build can hold it.
        upstream = graph.get_ancestor_asset_keys(key) - selected
        reasons = sorted({name for u in upstream for name in failed_checks(u)})
        if reasons:
            held[key] = tuple(reasons)
    return held


def _failed_with_error(instance: dg.DagsterInstance, check: dg.AssetCheckKey) -> bool:
    """The check's latest evaluation failed at ERROR (`_passed_or_warned`'s rule); never evaluated: no."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        check,
        limit=1,
        status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED},
    )
    evaluation = records[0].event.asset_check_evaluation if records and records[0].event else None
    return (
        evaluation is not None
        and not evaluation.passed
        and evaluation.severity == dg.AssetCheckSeverity.ERROR
    )


# On a quality run that left assets out (the schedule's or `ragline materialize`'s): the held assets.
HELD_TAG = "ragline/held"


def held_tag(held: Mapping[dg.AssetKey, tuple[str, ...]]) -> str:
    """HELD_TAG's value: the held assets, comma-separated."""
    return ",".join(k.to_user_string() for k in held)


def held_summary(held: Mapping[dg.AssetKey, tuple[str, ...]]) -> str:
    """One line: the held assets grouped by the checks that hold them, e.g. "a, b (eval_set.x failed)"."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for key, reasons in held.items():
        groups.setdefault(reasons, []).append(key.to_user_string())
    return "; ".join(f"{', '.join(names)} ({', '.join(checks)} failed)" for checks, names in groups.items())


# Every upstream asset's blocking checks passed or only warned, or it runs on this tick (then a
# blocking ERROR failure stops its downstream steps inside that run).
ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED = dg.AutomationCondition.all_deps_match(
    BlockingChecksNotFailed() | dg.AutomationCondition.will_be_requested()
).with_label("all_deps_blocking_checks_not_failed")


def automation_sensor(name: str, **kwargs: Any) -> dg.AutomationConditionSensorDefinition:
    """The automation sensor, evaluated in the code server: the daemon cannot run a custom
    condition such as BlockingChecksNotFailed (it only has its snapshot)."""
    with warnings.catch_warnings():
        # use_user_code_server is a 1.13 beta parameter; it is the documented way to run custom conditions.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.AutomationConditionSensorDefinition(name, use_user_code_server=True, **kwargs)
