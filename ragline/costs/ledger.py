"""The cost ledger: each model call's record priced and stored in llm_calls with its caller, and the
roll-ups of those rows by asset, model, caller or day."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ragline.config import ModelPrice
from ragline.safe_text import printable
from ragline.storage.db import Database, query
from ragline.types import CallRecord

log = logging.getLogger(__name__)

CALLER_KINDS = ("asset", "cli", "api")
ROLLUPS = ("asset", "model", "caller", "day")
LOCAL_ENDPOINT = "local"  # the in-process embedding model: free unless prices: names it
LLM_COSTS_WITHIN_DAILY_BUDGET = "llm_costs_within_daily_budget"
ERROR_CHARS = 300


@dataclass(frozen=True)
class Caller:
    """Who spent the tokens: an asset run (key, partition, run id), the CLI, or an API key."""

    kind: str  # "asset" | "cli" | "api"
    asset_key: str | None = None
    partition: str | None = None
    run_id: str | None = None
    api_key_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in CALLER_KINDS:
            raise ValueError(f"a caller's kind is one of {CALLER_KINDS}, not {self.kind!r}")


def price(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    *,
    prices: Sequence[ModelPrice] = (),
    endpoint: str | None = None,
) -> float | None:
    """USD for one call by the prices: block; the local model is free unless priced; None: no price."""
    for p in prices:
        if p.model == model:
            return (prompt_tokens * p.input_per_1m + completion_tokens * p.output_per_1m) / 1_000_000
    return 0.0 if endpoint == LOCAL_ENDPOINT else None


@dataclass
class CallTotals:
    """What the calls recorded by one sink added up to (a materialization's metadata)."""

    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_models: set[str] = field(default_factory=set)
    unrecorded: int = 0  # records the database refused (logged; the call itself went on)

    def metadata(self) -> dict[str, Any]:
        """llm_tokens_in/out, llm_cost_usd and model_calls, and which models had no price."""
        out: dict[str, Any] = {
            "llm_tokens_in": self.prompt_tokens,
            "llm_tokens_out": self.completion_tokens,
            "llm_cost_usd": round(self.cost_usd, 6),
            "model_calls": self.calls,
        }
        if self.unpriced_models:
            out["llm_unpriced_models"] = ", ".join(sorted(self.unpriced_models))
        if self.unrecorded:
            out["llm_calls_not_recorded"] = self.unrecorded
        return out


class PostgresSink:
    """A call sink (install it with ragline.endpoints.calls_recorded_by) writing each record to
    llm_calls on a connection of the database's side pool, committed at once: a caller's
    transaction that rolls back does not erase calls that were made and paid for."""

    def __init__(self, db: Database, caller: Caller, prices: Sequence[ModelPrice] = ()) -> None:
        self.db = db
        self.caller = caller
        self.prices = tuple(prices)
        self.totals = CallTotals()
        self._lock = threading.Lock()  # calls are reported from the embedding pool's threads too

    def __call__(self, record: CallRecord) -> None:
        cost = price(
            record.model,
            record.prompt_tokens,
            record.completion_tokens,
            prices=self.prices,
            endpoint=record.endpoint,
        )
        row = {
            "kind": record.kind,
            "model": record.model,
            "endpoint": record.endpoint,
            "prompt_tokens": max(0, record.prompt_tokens),
            "completion_tokens": max(0, record.completion_tokens),
            "texts": max(0, record.texts),
            "cached": record.cached,
            "ok": record.ok,
            "error": printable(record.error, ERROR_CHARS) if record.error else None,
            "latency_ms": record.latency_ms,
            "cost_usd": cost,
            "price_known": cost is not None,
            "route": printable(record.route, ERROR_CHARS) if record.route else None,
            "caller_kind": self.caller.kind,
            "asset_key": self.caller.asset_key,
            "partition_key": self.caller.partition,
            "run_id": self.caller.run_id,
            "api_key_id": self.caller.api_key_id,
        }
        with self._lock:
            t = self.totals
            t.calls += 1
            t.failed += not record.ok
            t.prompt_tokens += row["prompt_tokens"]
            t.completion_tokens += row["completion_tokens"]
            if cost is None:
                t.unpriced_models.add(record.model)
            else:
                t.cost_usd += cost
        try:
            # Not the main pool: the call may be made inside a search that holds its connections.
            with self.db.side_connection() as conn:
                conn.execute(query("record_llm_call"), row)
        except Exception:
            with self._lock:
                self.totals.unrecorded += 1
            raise  # report_call logs it; the call itself is not failed by its ledger


def postgres_sink(db: Database, caller: Caller, prices: Sequence[ModelPrice] = ()) -> PostgresSink:
    """The sink that stores every reported call in llm_calls as made by `caller`."""
    return PostgresSink(db, caller, prices)


@dataclass(frozen=True)
class CostRow:
    """One group of a roll-up: its label, calls, tokens and cost (of the priced calls)."""

    label: str
    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    unpriced_models: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "calls": self.calls,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "unpriced_models": list(self.unpriced_models),
        }


def rollup(conn: Any, by: str, since: dt.datetime, until: dt.datetime | None = None) -> list[CostRow]:
    """The calls made in [since, until) grouped by asset, model, caller or day, costliest first."""
    if by not in ROLLUPS:
        raise ValueError(f"roll up by one of {ROLLUPS}, not {by!r}")
    until = until or dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    rows = conn.execute(query("llm_cost_rollup"), {"by": by, "since": since, "until": until})
    return [
        CostRow(label, calls, failed, int(p), int(c), float(cost), tuple(sorted(unpriced)))
        for label, calls, failed, p, c, cost, unpriced in rows
    ]


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A UTC day as [start, end) timestamps."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)
