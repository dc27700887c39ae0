"""Automation and freshness: downstream assets follow upstream data, but only past passing blocking
checks; every asset says how stale it may get before asset health turns yellow, then red."""

import datetime as dt

import dagster as dg

from orchestration.check_gate import ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED
from ragline.config import FreshnessSettings

# eager(): run when any upstream partition updates (or a partition is newly missing), never
# while upstream is missing or in progress. The blocking-check clause keeps bad data from flowing on.
# On a daily-partitioned asset, eager() targets only the latest (today's) partition.
# A check that could not test (a failed WARN result) does not hold it: see orchestration/check_gate.py.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager() & ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED

# The shared index follows any source's publish. Unlike eager(), a source that is missing (its folder
# not mounted yet, its first run failed) does not hold it back for the others; and no blocking-check
# clause: serving_chunks only materializes past its source's checks, so it is the gate.
FOLLOW_PUBLISHED = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("follow_published")


def freshness_policy(settings: FreshnessSettings) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=settings.fail_hours),
        warn_window=dt.timedelta(hours=settings.warn_hours),
    )


def with_freshness(asset: dg.AssetsDefinition, policy: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(freshness_policy=policy))
