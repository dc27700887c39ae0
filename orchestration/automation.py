"""Automation: downstream assets follow upstream data, but only past passing blocking checks."""

import dagster as dg

# eager(): run when any upstream partition updates (or a partition is newly missing), never
# while upstream is missing or in progress. The blocking-check clause keeps bad data from flowing on.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
