"""Cost lineage: every model call in llm_calls with its caller, prices, and roll-ups."""

from ragline.costs.ledger import (
    LLM_COSTS_WITHIN_DAILY_BUDGET,
    ROLLUPS,
    Caller,
    CallTotals,
    CostRow,
    PostgresSink,
    day_bounds,
    postgres_sink,
    price,
    rollup,
)

__all__ = [
    "LLM_COSTS_WITHIN_DAILY_BUDGET",
    "ROLLUPS",
    "CallTotals",
    "Caller",
    "CostRow",
    "PostgresSink",
    "day_bounds",
    "postgres_sink",
    "price",
    "rollup",
]
