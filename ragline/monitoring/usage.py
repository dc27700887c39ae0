"""What the day cost in work that the database records: texts and tokens embedded, queries served,
and every model call of the cost ledger (llm_calls) with its tokens and USD."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from ragline.costs import rollup
from ragline.storage.db import query


def usage_since(conn: psycopg.Connection, since: dt.datetime) -> dict[str, Any]:
    """Vectors added per model, queries logged, and model calls (chat and embedding) since `since`."""
    embedded = [
        {"model_id": model_id, "texts": texts, "tokens": int(tokens)}
        for model_id, texts, tokens in conn.execute(query("embedded_tokens_since"), {"since": since})
    ]
    [queries] = conn.execute(query("queries_logged_since"), {"since": since}).fetchone()
    models = rollup(conn, "model", since)
    return {
        "since": since.isoformat(timespec="seconds"),
        "embedded": embedded,
        "queries_logged": queries,
        "llm": {
            "calls": sum(r.calls for r in models),
            "failed": sum(r.failed for r in models),
            "prompt_tokens": sum(r.prompt_tokens for r in models),
            "completion_tokens": sum(r.completion_tokens for r in models),
            "cost_usd": round(sum(r.cost_usd for r in models), 6),
            "unpriced_models": sorted({m for r in models for m in r.unpriced_models}),
            "by_model": [r.as_dict() for r in models],
        },
    }
