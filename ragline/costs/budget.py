"""The daily budget check of llm_costs: warn past costs.daily_budget.warn, fail past .fail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragline.costs.ledger import LLM_COSTS_WITHIN_DAILY_BUDGET
from ragline.expectations import CheckOutcome


def budget_outcome(
    total_usd: float, warn: float | None, fail: float | None, *, unpriced: Sequence[str]
) -> CheckOutcome:
    """The daily budget check: passed under `warn`; failed past `warn` (WARN) or past `fail`
    (ERROR, severity in metadata "level"); untested when no budget is configured."""
    metadata: dict[str, Any] = {
        "cost_usd": round(total_usd, 6),
        "warn_usd": warn,
        "fail_usd": fail,
        "level": "ok",
    }
    if unpriced:
        metadata["unpriced_models"] = ", ".join(unpriced)
    if warn is None and fail is None:
        return CheckOutcome(
            LLM_COSTS_WITHIN_DAILY_BUDGET,
            True,
            metadata,
            untested="no costs.daily_budget configured: the day's cost was not compared with anything",
        )
    if fail is not None and total_usd > fail:
        metadata["level"] = "error"
        return CheckOutcome(LLM_COSTS_WITHIN_DAILY_BUDGET, False, metadata)
    if warn is not None and total_usd > warn:
        metadata["level"] = "warn"
        return CheckOutcome(LLM_COSTS_WITHIN_DAILY_BUDGET, False, metadata)
    return CheckOutcome(LLM_COSTS_WITHIN_DAILY_BUDGET, True, metadata)
