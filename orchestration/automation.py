"""Automation and freshness: downstream assets follow upstream data, but only past passing blocking
checks; every asset says how stale it may get before asset health turns yellow, then red."""

import datetime as dt

import dagster as dg

from ragline.config import FreshnessSettings

# eager(): run when any upstream partition updates (or a partition is newly missing), never
# while upstream is missing or in progress. The blocking-check clause keeps bad data from flowing on.
# On a daily-partitioned asset, eager() targets only the latest (today's) partition.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def freshness_policy(settings: FreshnessSettings) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=settings.fail_hours),
        warn_window=dt.timedelta(hours=settings.warn_hours),
    )


def with_freshness(asset: dg.AssetsDefinition, policy: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(freshness_policy=policy))
