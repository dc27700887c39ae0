"""Automation and freshness: downstream assets follow upstream data only when its data version (a
content hash) changed, and only past passing blocking checks; a re-run that changed nothing triggers
nothing. Every asset says how stale it may get before asset health turns yellow, then red."""

import datetime as dt

import dagster as dg

from orchestration.check_gate import ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED
from ragline.config import AutomationSettings, FreshnessSettings

AC = dg.AutomationCondition

# The blocking-check clause below keeps bad data from flowing on; a check that could not test (a
# failed WARN result) does not hold it: see orchestration/check_gate.py.

# A dependency has a new data version since the last tick (a materialization that changed nothing
# keeps its version and does not count), in a run that did not also build this asset; or it is
# requested on this tick, so that a chain runs as one run.
DEPS_CHANGED = AC.any_deps_match(
    (AC.newly_updated() & AC.data_version_changed() & ~AC.executed_with_root_target()).with_label(
        "new_data_version"
    )
    | AC.will_be_requested()
).with_label("any_deps_changed")

# A spent DEPS_CHANGED is not requested again: if the run failed (an endpoint down), nothing would
# rebuild the asset until its upstream data changed again. A failed asset (partition) is retried
# once per cron tick: hourly, or on the quality cron for the heavy quality assets. A blocking check
# that fails does not count: its asset was materialized, and re-running would not change the data.
RETRY_CRON = "0 * * * *"


def retry_failed(cron: str, label: str) -> dg.AutomationCondition:
    return (AC.execution_failed() & AC.cron_tick_passed(cron).since_last_handled()).with_label(label)


RETRY_FAILED = retry_failed(RETRY_CRON, "failed_retry_hourly")

NEW_DATA_OR_RETRY = (
    DEPS_CHANGED.since_last_handled().with_label("deps_changed_since_last_handled") | RETRY_FAILED
).with_label("deps_changed_since_last_handled_or_failed_retry_hourly")


def _when(trigger: dg.AutomationCondition, label: str) -> dg.AutomationCondition:
    """`trigger`, on today's partition of a daily asset, with every dependency present and idle,
    the asset itself idle, and no upstream blocking check failed with ERROR."""
    return (
        AC.in_latest_time_window()
        & trigger
        & (~AC.any_deps_missing()).with_label("no_dep_missing")
        & (~AC.any_deps_in_progress()).with_label("no_dep_in_progress")
        & (~AC.in_progress()).with_label("not_in_progress")
        & ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED
    ).with_label(label)


# Unlike eager(): no newly_missing() (a new day's partition or a source added to ragline.yaml is
# built by the schedules and the file sensor, not by automation on its own), and an upstream run
# that changed nothing is no reason to run. On a daily-partitioned asset only today's partition.
FOLLOW_UPSTREAM = _when(NEW_DATA_OR_RETRY, "follow_changed_data")

# The shared index follows any source's publish. A source that is missing (its folder not mounted
# yet, its first run failed) does not hold it back for the others; and no blocking-check clause:
# serving_chunks only materializes past its source's checks, so it is the gate.
FOLLOW_PUBLISHED = (
    NEW_DATA_OR_RETRY
    & (~AC.any_deps_in_progress()).with_label("no_dep_in_progress")
    & (~AC.in_progress()).with_label("not_in_progress")
).with_label("follow_published")


def quality_condition(settings: AutomationSettings) -> dg.AutomationCondition:
    """For the heavy quality assets: on every upstream data change (on_change), or at most once per
    tick of the configured cron, after the first upstream data change since that tick."""
    cron = settings.quality_cron
    if cron is None:
        return FOLLOW_UPSTREAM
    trigger = (
        (
            AC.cron_tick_passed(cron).since_last_handled().with_label("cron_tick_since_last_handled")
            & DEPS_CHANGED.since(AC.cron_tick_passed(cron)).with_label("deps_changed_since_cron_tick")
        )
        | retry_failed(cron, "failed_retry_on_cron")
    ).with_label("changed_since_cron_tick_or_failed_retry_on_cron")
    return _when(trigger, f"changed_data_on_cron({cron})")


# A FreshnessPolicy is a time window on the last materialization: true only for the assets that are
# expected to run whatever changed (raw_documents, scanned daily; the daily quality assets). The
# others may rightly keep a weeks-old materialization of an unchanged corpus; their freshness is
# the is_materialized_and_fresh check (orchestration/health.py), which judges them by their inputs.
def freshness_policy(settings: FreshnessSettings) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=settings.fail_hours),
        warn_window=dt.timedelta(hours=settings.warn_hours),
    )


def with_freshness(asset: dg.AssetsDefinition, policy: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(freshness_policy=policy))
