"""Write-audit-publish: each source's pipeline builds beside what is served, and a source is
published (its pointer moved to a new generation of document versions) in one transaction, after
its blocking checks have passed. The previous generation is kept for rollback."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from ragline.config import MassChangeSettings
from ragline.expectations import CheckOutcome, frame, run_suite
from ragline.storage.db import query
from ragline.types import PublishError

# Check names: what holds when the check passes.
SOURCE_CHANGE_WITHIN_LIMIT = "source_change_within_limit"
PUBLISHED_DOCUMENTS_ARE_SEARCHABLE = "published_documents_are_searchable"

# Every publish and rollback takes this lock: the served text sets are shared by all sources.
_PUBLISH_LOCK = 7_246_313


def publish_lock(conn: psycopg.Connection) -> None:
    """Serialise publishes, rollbacks and garbage collection (inside the caller's transaction)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PUBLISH_LOCK,))


@dataclass(frozen=True)
class SourceChange:
    """How a source's live documents differ from its published generation."""

    published: int
    deleted: int
    replaced: int
    added: int

    @property
    def changed(self) -> int:
        return self.deleted + self.replaced

    @property
    def share(self) -> float:
        """The share of published documents that would be deleted or replaced."""
        return self.changed / self.published if self.published else 0.0


@dataclass(frozen=True)
class ChangeVerdict:
    change: SourceChange
    allowed: bool
    approved: bool
    reason: str


def source_change(conn: psycopg.Connection, source: str) -> SourceChange:
    return SourceChange(*conn.execute(query("source_change"), {"source": source}).fetchone())


def judge_change(conn: psycopg.Connection, source: str, limits: MassChangeSettings) -> ChangeVerdict:
    """A change that deletes or replaces more than max_fraction of the published documents (and at
    least min_documents of them) is refused unless it was accepted with `ragline publish
    --accept-change`."""
    change = source_change(conn, source)
    approved = conn.execute(query("change_approved"), {"source": source}).fetchone()[0]
    too_big = change.share > limits.max_fraction and change.changed >= limits.min_documents
    if not too_big:
        reason = f"{change.changed} of {change.published} published documents deleted or replaced"
        return ChangeVerdict(change, True, approved, reason)
    reason = (
        f"{change.deleted} deleted and {change.replaced} replaced of {change.published} published documents "
        f"({change.share:.0%} > {limits.max_fraction:.0%})"
    )
    if approved:
        return ChangeVerdict(change, True, True, reason + "; accepted with ragline publish --accept-change")
    return ChangeVerdict(
        change,
        False,
        False,
        reason
        + f"; if this is intended, run `ragline publish --accept-change {source}` and rerun the source",
    )


@dataclass
class PublishResult:
    source: str
    generation: int | None
    previous: int | None
    published: bool  # False: the published generation already is the live documents
    documents: int = 0
    chunks: int = 0
    texts_indexed: int = 0
    texts_unindexed: int = 0
    vectors_added: int = 0
    vectors_removed: int = 0
    seconds: float = 0.0
    change: SourceChange | None = None


@dataclass(frozen=True)
class Publication:
    source: str
    generation: int
    previous: int | None
    published_at: object
    held_since: object
    documents: int
    chunks: int
    model_id: str


def publication(conn: psycopg.Connection, source: str) -> Publication | None:
    row = conn.execute(query("publication_of_source"), {"source": source}).fetchone()
    return Publication(*row) if row else None


def publish_source(
    conn: psycopg.Connection,
    source: str,
    *,
    chunker: str,
    model_id: str,
    limits: MassChangeSettings,
) -> PublishResult:
    """Serve the source's live documents at their current versions, split by `chunker`, with
    vectors of `model_id`: in one transaction, or not at all.

    Refuses a source held after a rollback, a mass change that was not accepted, and documents
    without chunks or vectors. Publishing what is already served is a no-op.
    """
    started = time.perf_counter()
    with conn.transaction():
        publish_lock(conn)
        current = publication(conn, source)
        if current is not None and current.held_since is not None:
            raise PublishError(
                f"{source} is held at generation {current.generation} since a rollback at "
                f"{current.held_since}; run `ragline publish --release {source}` to publish again"
            )
        verdict = judge_change(conn, source, limits)
        if not verdict.allowed:
            raise PublishError(f"{source}: mass change refused: {verdict.reason}")
        gaps = conn.execute(
            query("publication_gaps"),
            {"source": source, "chunker": chunker, "model_id": model_id, "limit": 5},
        ).fetchall()
        if gaps:
            listed = "; ".join(f"{doc_id}: {problem}" for doc_id, problem in gaps)
            raise PublishError(f"{source}: documents not ready to serve ({listed}); nothing was published")
        params = {"source": source, "chunker": chunker}
        unchanged = current is not None and conn.execute(query("publication_unchanged"), params).fetchone()[0]
        if unchanged:
            return PublishResult(
                source,
                current.generation,
                current.previous,
                False,
                current.documents,
                current.chunks,
                seconds=time.perf_counter() - started,
                change=verdict.change,
            )
        generation = conn.execute(query("next_generation"), {"source": source}).fetchone()[0]
        conn.execute(query("insert_generation"), {**params, "generation": generation, "model_id": model_id})
        result = _move_pointer(conn, source, current, generation, model_id)
        conn.execute(query("consume_change_approval"), {"source": source})
    result.change = verdict.change
    result.seconds = time.perf_counter() - started
    return result


def _move_pointer(
    conn: psycopg.Connection, source: str, current: Publication | None, generation: int, model_id: str
) -> PublishResult:
    """Point the source at `generation` and bring the served text and vector sets in step."""
    conn.execute(query("move_publication_pointer"), {"source": source, "generation": generation})
    serving = conn.execute(query("serving_model")).fetchone()
    models = sorted({model_id, *(serving[:1] if serving else ())})
    indexed, vectors = conn.execute(
        query("index_generation_texts"), {"source": source, "generation": generation, "models": models}
    ).fetchone()
    unindexed = vectors_removed = 0
    if current is not None:
        unindexed, vectors_removed = conn.execute(
            query("unindex_generation_texts"), {"source": source, "generation": current.generation}
        ).fetchone()
    now = publication(conn, source)
    assert now is not None
    return PublishResult(
        source,
        generation,
        current.generation if current else None,
        True,
        now.documents,
        now.chunks,
        texts_indexed=indexed,
        texts_unindexed=unindexed,
        vectors_added=vectors,
        vectors_removed=vectors_removed,
    )


def rollback(conn: psycopg.Connection, source: str) -> PublishResult:
    """Serve the source's previous generation again and hold the source there: automated publishes
    wait until `release`. The generation rolled back from becomes the previous one."""
    started = time.perf_counter()
    with conn.transaction():
        publish_lock(conn)
        current = publication(conn, source)
        if current is None:
            raise PublishError(f"{source} has never been published; there is nothing to roll back to")
        if current.previous is None:
            raise PublishError(
                f"{source} has no previous generation to roll back to (generation {current.generation})"
            )
        model_id = conn.execute(
            query("generation_model"), {"source": source, "generation": current.previous}
        ).fetchone()[0]
        result = _move_pointer(conn, source, current, current.previous, model_id)
        conn.execute(query("hold_source"), {"source": source})
    result.seconds = time.perf_counter() - started
    return result


def release(conn: psycopg.Connection, source: str) -> bool:
    """Let automated publishes of a held source go on; True if it was held."""
    return conn.execute(query("release_source"), {"source": source}).rowcount > 0


def accept_change(conn: psycopg.Connection, source: str) -> None:
    """Accept the next publish of the source even if it is a mass change (used up by that publish)."""
    conn.execute(query("approve_change"), {"source": source})


def check_change(conn: psycopg.Connection, source: str, limits: MassChangeSettings) -> CheckOutcome:
    """The mass-change guard as a blocking check on raw_documents: a refused change stops the
    source's chunks, embeddings and publish, and the served generation stays as it is."""
    verdict = judge_change(conn, source, limits)
    c = verdict.change
    return CheckOutcome(
        SOURCE_CHANGE_WITHIN_LIMIT,
        verdict.allowed,
        {
            "partition": source,
            "published_documents": c.published,
            "deleted": c.deleted,
            "replaced": c.replaced,
            "added": c.added,
            "changed_share": round(c.share, 4),
            "max_fraction": limits.max_fraction,
            "accepted": verdict.approved,
            "verdict": verdict.reason,
        },
    )


def check_searchable(conn: psycopg.Connection, source: str) -> CheckOutcome:
    """Every published document of the source can be found: a chunk of it is in the BM25 set and
    has a vector under the serving model."""
    import great_expectations.expectations as gxe

    df = frame(conn, "published_searchability", {"source": source})
    expectations = [gxe.ExpectColumnValuesToBeInSet(column="lexical", value_set=[True])]
    if df["dense"].notna().any() or df.empty:
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column="dense", value_set=[True]))
    [outcome] = run_suite(df, {PUBLISHED_DOCUMENTS_ARE_SEARCHABLE: expectations})
    outcome.metadata["partition"] = source
    outcome.metadata["not_in_bm25"] = ", ".join(df.loc[~df["lexical"].astype(bool), "doc_id"][:5]) or "none"
    outcome.metadata["without_serving_vector"] = (
        ", ".join(df.loc[df["dense"].eq(False), "doc_id"][:5]) or "none"
    )
    return outcome
