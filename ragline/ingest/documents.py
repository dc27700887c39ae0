"""Store a source's scan: new and changed documents get a version, vanished ones are marked deleted."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ragline.ingest.sources import ScanResult
from ragline.safe_text import printable
from ragline.storage.db import SOURCE_LOCK, query, xact_lock
from ragline.types import DatabaseError


@dataclass
class IngestStats:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    restored: int = 0
    deleted: int = 0
    quarantined: int = 0
    live_documents: int = 0
    files_seen: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return self.new + self.changed + self.restored + self.deleted


# New and changed documents are written this many at a time, as the scan loads them: a source's
# whole text is never held in memory at once.
WRITE_BATCH = 256


def store_scan(conn: psycopg.Connection, source: str, scan: ScanResult) -> IngestStats:
    """Apply one scan of a source in a single transaction; re-applying the same scan is a no-op.

    The scan's documents are read once, as they come (`stream_source` loads them file by file
    while this writes them), so rejections are counted only after the last.
    A document whose file is quarantined in this scan keeps its last good version: a file
    that turns corrupt is not taken as deleted.
    """
    stats = IngestStats()
    # The documents are closed however the store ends: a streamed scan's PDF worker stops with it.
    with conn.transaction(), _reading(scan.documents) as documents:
        # One writer per source: two runs of a partition would otherwise both take version N+1.
        xact_lock(conn, SOURCE_LOCK, source)
        existing = {row[0]: row[1:] for row in conn.execute(query("documents_of_source"), {"source": source})}
        # Documents the chunks stage found no chunk in stay out until their content changes.
        unchunkable = {row[0] for row in conn.execute(query("unchunkable_documents"), {"source": source})}
        still_unchunkable: list[str] = []
        seen: set[str] = set()
        writes: list[dict] = []  # new and changed documents, written in two pipelined statements
        for doc in documents:
            seen.add(doc.doc_id)
            digest = doc.content_hash
            row = existing.get(doc.doc_id)
            if row is None:
                version = 1
                stats.new += 1
            else:
                version, old_hash, status, _path = row
                # A hash from before the line number left JSON Lines metadata is the same content.
                if old_hash in (digest, doc.legacy_hash):
                    if old_hash != digest:
                        conn.execute(
                            query("rehash_document"),
                            {"source": source, "doc_id": doc.doc_id, "content_hash": digest},
                        )
                    if status == "live":
                        stats.unchanged += 1
                    elif doc.doc_id in unchunkable:
                        still_unchunkable.append(doc.doc_id)
                        stats.unchanged += 1
                    else:
                        conn.execute(query("restore_document"), {"source": source, "doc_id": doc.doc_id})
                        stats.restored += 1
                    continue
                version += 1
                stats.changed += 1
            writes.append(
                {
                    "source": source,
                    "doc_id": doc.doc_id,
                    "path": doc.path,
                    "version": version,
                    "content_hash": digest,
                    "text": doc.text,
                    "metadata": Jsonb(doc.metadata),
                    "char_count": len(doc.text),
                }
            )
            if len(writes) >= WRITE_BATCH:
                _write_versions(conn, writes)
                writes.clear()
        _write_versions(conn, writes)
        stats.files_seen = scan.files_seen
        stats.quarantined = len(scan.rejections)
        for r in scan.rejections:
            stats.quarantine_reasons[r.reason] = stats.quarantine_reasons.get(r.reason, 0) + 1
        # A quarantined file keeps all its documents; a bad line keeps only the record it still names
        # (or, when it names none, the file's records: any of them may be the one that broke).
        protected_files = {r.file for r in scan.rejections if r.protects_file}
        protected_ids = {r.doc_id for r in scan.rejections if r.doc_id is not None}
        vanished = [
            doc_id
            for doc_id, (_v, _h, status, path) in existing.items()
            if status == "live"
            and doc_id not in seen
            and doc_id not in protected_ids
            and path not in protected_files
        ]
        if vanished:
            conn.execute(query("mark_documents_deleted"), {"source": source, "doc_ids": vanished})
        stats.deleted = len(vanished)
        with conn.cursor() as cur:
            cur.executemany(
                query("upsert_quarantine"),
                [
                    {
                        "source": source,
                        "path": r.path,
                        "reason": r.reason,
                        "detail": r.detail,
                        "size_bytes": r.size_bytes,
                    }
                    for r in scan.rejections
                ],
            )
        conn.execute(
            query("clear_resolved_quarantine"),
            {"source": source, "paths": [r.path for r in scan.rejections] + still_unchunkable},
        )
        stats.live_documents = conn.execute(query("count_live_documents"), {"source": source}).fetchone()[0]
    return stats


@contextmanager
def _reading(items: Iterable[Any]) -> Iterator[Iterator[Any]]:
    """An iterator over `items`, closed on exit if it is a generator (even when not read through)."""
    iterator = iter(items)
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _write_versions(conn: psycopg.Connection, writes: list[dict]) -> None:
    """Point each document at its new version and store the version's text: one pipelined
    executemany per statement instead of two round trips per document. A version already stored
    with another text is refused."""
    if not writes:
        return
    with conn.cursor() as cur:
        cur.executemany(query("upsert_document"), writes)
        cur.executemany(query("insert_document_version"), writes, returning=True)
        for params, _ in zip(writes, cur.results(), strict=True):
            stored = cur.fetchone()
            digest = params["content_hash"]
            if stored is None or stored[0] != digest:
                raise DatabaseError(
                    f"{params['source']}:{printable(params['doc_id'])} version {params['version']} is "
                    f"already stored with another text (hash {stored[0][:12] if stored else 'unknown'}, "
                    f"this scan {digest[:12]}); nothing of this scan was written"
                )
