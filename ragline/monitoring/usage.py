"""What the day cost in work that the database records: texts and tokens embedded, queries served.

LLM calls are not recorded in the database yet (ChatClient counts tokens per process only), so
there is no LLM token or cost figure to report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from ragline.storage.db import query

LLM_NOT_RECORDED = (
    "not recorded: ragline stores no LLM calls yet (token counts live only in the calling process)"
)


def usage_since(conn: psycopg.Connection, since: dt.datetime) -> dict[str, Any]:
    """Vectors added per model and queries logged since `since`; LLM use is not in the database."""
    embedded = [
        {"model_id": model_id, "texts": texts, "tokens": int(tokens)}
        for model_id, texts, tokens in conn.execute(query("embedded_tokens_since"), {"since": since})
    ]
    [queries] = conn.execute(query("queries_logged_since"), {"since": since}).fetchone()
    return {
        "since": since.isoformat(timespec="seconds"),
        "embedded": embedded,
        "queries_logged": queries,
        "llm": LLM_NOT_RECORDED,
    }
