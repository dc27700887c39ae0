"""The answer cache in Postgres: exact hits on the whole request, opt-in semantic hits on a paraphrase
over the same retrieved context; entries expire after a TTL and never outlive the data they were
built on (a publish, a rollback or a new serving model)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from ragline.config import CacheSettings
from ragline.storage.db import query


def _digest(value: Any) -> str:
    """sha256 hex of a value's canonical JSON (sorted keys, no spaces), so equal requests hash equal."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def exact_key(*, model: str, prompt_version: str, messages: list[dict], params: dict) -> str:
    """The exact cache key of a chat request: model, prompt version, messages and parameters."""
    return _digest({"model": model, "prompt_version": prompt_version, "messages": messages, "params": params})


def params_hash(params: dict) -> str:
    """The hash of a request's generation parameters (max_tokens, temperature, output schema, ...)."""
    return _digest(params)


def context_key(passages: Iterable[tuple[str, str]]) -> str:
    """The key of a retrieved context: sha256 of its (chunk_id, text_hash) pairs in prompt order."""
    return _digest([[chunk_id, text_hash] for chunk_id, text_hash in passages])


@dataclass
class SemanticKey:
    """What a paraphrase must share with a cached request, and the question's query vector."""

    model: str
    prompt_version: str
    params_hash: str
    context_key: str  # sha256 of the context's (chunk_id, text_hash) list in prompt order
    vector: np.ndarray  # the question's query vector (the local model's)


@dataclass
class CacheHit:
    payload: dict  # what answer() stored: text, citations, model, prompt version, ...
    kind: str  # "exact" | "semantic"
    similarity: float | None
    created_at: datetime


class AnswerCache:
    """Looks answers up and stores them in ragline.answer_cache (conn: a Database connection, with
    pgvector registered)."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings

    def lookup(
        self, conn: psycopg.Connection, *, exact: str, semantic: SemanticKey | None
    ) -> CacheHit | None:
        """The exact entry if alive, else (semantic on) the nearest paraphrase at or above the threshold."""
        s = self.settings
        if not s.enabled:
            return None
        row = conn.execute(
            query("cache_lookup_exact"), {"exact_key": exact, "ttl_seconds": s.ttl_seconds}
        ).fetchone()
        if row is not None:
            return CacheHit(row[0], "exact", None, row[1])
        if not s.semantic or semantic is None:
            return None
        row = conn.execute(
            query("cache_lookup_semantic"),
            {
                "vector": _vector(semantic.vector),
                "model": semantic.model,
                "prompt_version": semantic.prompt_version,
                "params_hash": semantic.params_hash,
                "context_key": semantic.context_key,
                "ttl_seconds": s.ttl_seconds,
                "threshold": s.semantic_threshold,
            },
        ).fetchone()
        if row is None:
            return None
        return CacheHit(row[0], "semantic", float(row[2]), row[1])

    def store(
        self,
        conn: psycopg.Connection,
        *,
        exact: str,
        semantic: SemanticKey | None,
        payload: dict,
        served: dict | None = None,
    ) -> None:
        """Store an answer (a live entry of the same key is kept: one row per request). The payload
        must hold the text before redacted values were restored: the key is of redacted messages,
        so another user's request may hit it. served: ragline.served_data's state when retrieval
        began (read before it); None stamps what is served now, which a publish during the answer
        makes wrong."""
        s = self.settings
        if not s.enabled:
            return
        # The vector is stored even with semantic off, so switching it on finds existing entries.
        with conn.transaction():
            conn.execute(
                query("cache_store"),
                {
                    "exact_key": exact,
                    "model": semantic.model if semantic else None,
                    "prompt_version": semantic.prompt_version if semantic else None,
                    "params_hash": semantic.params_hash if semantic else None,
                    "context_key": semantic.context_key if semantic else None,
                    "vector": _vector(semantic.vector) if semantic else None,
                    "payload": Jsonb(payload),
                    "served": Jsonb(served) if served is not None else None,
                    "ttl_seconds": s.ttl_seconds,
                },
            )
            if s.max_entries is not None:
                conn.execute(query("cache_trim"), {"max_entries": s.max_entries})

    def purge(self, conn: psycopg.Connection) -> int:
        """Delete expired rows and rows built on data no longer served; the number deleted."""
        cur = conn.execute(query("cache_purge"), {"ttl_seconds": self.settings.ttl_seconds})
        return cur.rowcount


def _vector(vector: np.ndarray | Sequence[float]) -> np.ndarray:
    """A finite float32 vector, one-dimensional, as pgvector takes it."""
    out = np.asarray(vector, dtype=np.float32).reshape(-1)
    if out.size == 0 or not np.isfinite(out).all():
        raise ValueError("a semantic cache key needs a non-empty, finite query vector")
    return out
