"""Garbage collection: remove what no retained generation references, and say what was freed."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ragline.index.publishing import publish_lock
from ragline.storage.db import query


@dataclass
class GcStats:
    rows: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def collect_garbage(conn: psycopg.Connection, *, dry_run: bool = False) -> GcStats:
    """Delete generations that are neither served nor kept for rollback; chunks, variant chunks,
    document versions and ledger vectors that nothing retained or pending references. Texts that
    leave the chunks leave the BM25 postings with them (they are maintained per served text).

    One transaction under the publish lock, so a publish never sees half of it. `dry_run` counts
    and rolls back. Bytes are the rows' stored sizes; the disk space comes back after VACUUM.
    """
    stats = GcStats(dry_run=dry_run)
    with conn.transaction(force_rollback=dry_run):
        publish_lock(conn)
        for name in ("gc_collect", "gc_collect_versions_and_vectors"):
            for kind, rows, size in conn.execute(query(name)).fetchall():
                stats.rows[kind] = rows
                stats.bytes[kind] = int(size)
    return stats


def format_gc(stats: GcStats) -> str:
    verb = "would free" if stats.dry_run else "freed"
    lines = [
        f"{kind:<18} {stats.rows[kind]:>8} rows  {stats.bytes[kind] / 1024:>10.1f} KiB" for kind in stats.rows
    ]
    lines.append(f"{verb} {stats.total_rows} rows, {stats.total_bytes / 1024:.1f} KiB in all")
    return "\n".join(lines)
