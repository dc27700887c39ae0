"""API keys of the HTTP API: created once and shown once, stored as a sha256 hash, each with an
optional rate limit and token budget; and the record of every request the API answered."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ragline.config import ConfigError
from ragline.safe_text import printable, scrub
from ragline.storage.db import query

KEY_PREFIX = "rl_"
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEY_SHAPE = re.compile(r"^rl_[A-Za-z0-9_-]{43}$")


def key_hash(key: str) -> str:
    """The stored form of a key: sha256 hex. The key is 32 random bytes (256 bits), so there is
    nothing to guess and a slow password hash would only slow every request down."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key_id: int
    name: str
    key: str  # shown once, never stored


@dataclass(frozen=True)
class ApiKey:
    """A key as a request presents it: who it is, and what it may still spend."""

    key_id: int
    name: str
    revoked: bool
    rate_per_minute: int | None
    token_budget: int | None
    tokens_used: int

    @property
    def budget_left(self) -> int | None:
        return None if self.token_budget is None else max(self.token_budget - self.tokens_used, 0)


def create_key(
    conn: psycopg.Connection,
    name: str,
    *,
    rate_per_minute: int | None = None,
    token_budget: int | None = None,
) -> CreatedKey:
    """A new random key under a unique name; the returned key text exists nowhere else."""
    if not isinstance(name, str) or not _KEY_NAME.match(name):
        raise ConfigError(f"a key name is 1-63 letters, digits, '_', '.' or '-', got '{printable(name, 80)}'")
    for what, value in (("--rate-per-minute", rate_per_minute), ("--token-budget", token_budget)):
        if value is not None and value < 1:
            raise ConfigError(f"{what} must be at least 1")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        row = conn.execute(
            query("api_key_insert"),
            {
                "name": name,
                "key_hash": key_hash(key),
                "key_prefix": key[:8],
                "rate_per_minute": rate_per_minute,
                "token_budget": token_budget,
            },
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ConfigError(f"a key named {name!r} exists already; revoke it or pick another name") from None
    return CreatedKey(int(row[0]), name, key)


def list_keys(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every key's name, limits, state and spending; never the key."""
    cur = conn.execute(query("api_keys_list"))
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def revoke_key(conn: psycopg.Connection, name: str) -> bool:
    """Revoke a key by name (it then answers 403); False if no key has that name."""
    return conn.execute(query("api_key_revoke"), {"name": name}).fetchone() is not None


def lookup_key(conn: psycopg.Connection, key: str) -> ApiKey | None:
    """The stored key a request presents, or None for an unknown (or malformed) one."""
    if not _KEY_SHAPE.match(key):
        return None
    row = conn.execute(query("api_key_lookup"), {"key_hash": key_hash(key)}, prepare=True).fetchone()
    return None if row is None else ApiKey(*row[:5], tokens_used=int(row[5]))


def take_rate(conn: psycopg.Connection, key: ApiKey) -> float:
    """Book one request against the key's rate: 0 when it may pass, else seconds to wait.

    The generic cell rate algorithm: a burst of rate_per_minute requests, then one every
    60/rate_per_minute seconds; exact across worker processes (one atomic statement)."""
    if key.rate_per_minute is None:
        return 0.0
    interval = dt.timedelta(seconds=60 / key.rate_per_minute)
    tolerance = dt.timedelta(seconds=60) - interval
    row = conn.execute(
        query("api_rate_take"),
        {"key_id": key.key_id, "interval": interval, "tolerance": tolerance},
        prepare=True,
    ).fetchone()
    return 0.0 if row is None else max(float(row[0]), 0.0)


@dataclass
class RequestRecord:
    """What one request did, filled in while it runs and logged to ragline.api_requests at its end.
    A route that calls models (the answer routes) adds their names, tokens, cost and cache flag."""

    method: str
    route: str
    key_id: int | None = None
    models: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    cached: bool = False
    error: str | None = None
    # A streamed response's in-band status (its error event's), logged and counted instead of the
    # 200 its headers went out with.
    status: int | None = None


def log_request(conn: psycopg.Connection, record: RequestRecord, *, status: int, latency_ms: float) -> None:
    """One row of ragline.api_requests; the error is scrubbed of credentials and kept to one line."""
    error = printable(scrub(record.error), 500) if record.error else None
    conn.execute(
        query("api_request_insert"),
        {
            "key_id": record.key_id,
            "method": record.method[:16],
            "route": printable(record.route, 200),
            "status": status,
            "latency_ms": latency_ms,
            "models": record.models,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "cost": record.cost,
            "cached": record.cached,
            "error": error,
        },
        prepare=True,
    )
