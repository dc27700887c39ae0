"""The chunks and embeddings checks fail on data that breaks them, and pass on good data.

A module fixture runs the pipeline once over three sources: `docs` (good), `odd` (with a file
of zero-width characters, quarantined) and `boiler` (files that share most of their text).
Another runs it with an OpenAI-compatible endpoint (tests/openai_server.py) that returns 64 of
MiniLM's 384 dimensions, so its vectors are not unit length. Tests that corrupt the stored data do
it in a transaction they roll back, then call the check function again.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from pgvector.psycopg import register_vector

from assets.chunks import CHECKS as CHUNK_CHECKS
from assets.embeddings import CHECKS as EMBEDDING_CHECKS
from ragline import expectations
from ragline.config import ConfigError, EmbeddingSettings, Settings
from ragline.index.embedding import LOCAL_MODEL_ID, OpenAICompatibleEmbedder
from tests.conftest import (
    EXAMPLES,
    checks,
    drop_database,
    fresh_database,
    local_embedder,
    run,
    write_project,
)
from tests.openai_server import EmbeddingsServer

HANDBOOK = ["handbook/paid-time-off.md", "handbook/meeting-norms.md", "handbook/benefits.md"]
ZERO_WIDTH = "\u200b\u200c\u200d\u2060" * 3
BOILERPLATE = """
## Confidentiality

This page is internal to Tidewater Analytics. Do not share it with customers, vendors or
anyone outside the company without written approval from the legal team.

## Retention

Team pages are reviewed every quarter and archived after two years without changes. Archived
pages stay searchable in the wiki but are no longer kept up to date by their owners.

## Questions

Ask in the #people-ops channel, or write to people-ops@tidewater.example, and someone from the
team will answer within two working days.
"""
TEAMS = {
    "payments": "The payments team owns invoicing, refunds and the billing API.",
    "search": "The search team owns the query service, ranking and the index builders.",
    "mobile": "The mobile team ships the iOS and Android apps every second Tuesday.",
    "platform": "The platform team runs Kubernetes, the CI runners and the on-call rota.",
}


@pytest.fixture(scope="module")
def local_run(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("quality")
    for rel in HANDBOOK:
        (root / "docs").mkdir(exist_ok=True)
        shutil.copy(EXAMPLES / rel, root / "docs" / Path(rel).name)
    (root / "odd").mkdir()
    shutil.copy(EXAMPLES / "handbook/security-basics.md", root / "odd" / "security-basics.md")
    (root / "odd" / "zero-width.md").write_text(ZERO_WIDTH, encoding="utf-8")
    (root / "boiler").mkdir()
    for team, intro in TEAMS.items():
        (root / "boiler" / f"{team}.md").write_text(f"# Team {team}\n\n{intro}\n{BOILERPLATE}")
    markdown = {"strategy": "markdown"}
    sources = [{"name": n, "root": n, "chunking": markdown} for n in ("docs", "odd", "boiler")]
    with data_plane_run(server_url, write_project(root, sources)) as done:
        yield done


@contextmanager
def data_plane_run(server_url: str, settings: Settings) -> Iterator[dict[str, Any]]:
    """The data plane and index run once into a fresh database, which is dropped afterwards."""
    name, url = fresh_database(server_url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        results = run(settings, quality=False)
    try:
        yield {"url": url, "settings": settings, "results": results}
    finally:
        drop_database(server_url, name)


@contextmanager
def rolled_back(url: str) -> Iterator[psycopg.Connection]:
    """A connection whose changes are undone: the module's database stays as the run left it."""
    with psycopg.connect(url) as conn:
        register_vector(conn)
        try:
            yield conn
        finally:
            conn.rollback()


def outcome(outcomes: list[expectations.CheckOutcome], name: str) -> expectations.CheckOutcome:
    [found] = [o for o in outcomes if o.name == name]
    return found


def chunk_check(
    local_run, conn, name: str, source: str = "docs", **chunking: Any
) -> expectations.CheckOutcome:
    settings = dataclasses.replace(local_run["settings"].source(source).chunking, **chunking)
    return outcome(expectations.check_chunks(conn, source, settings), name)


def test_good_data_passes_every_chunk_and_embedding_check(local_run):
    evaluations = checks(local_run["results"]["source docs"])
    expected = {f"chunks.{n}" for n in CHUNK_CHECKS} | {f"embeddings.{n}" for n in EMBEDDING_CHECKS}
    assert expected <= set(evaluations)
    assert all(evaluations.values())
    with rolled_back(local_run["url"]) as conn:
        spans = chunk_check(local_run, conn, expectations.CHUNK_SPANS_COVER_DOCUMENT)
        duplicates = chunk_check(local_run, conn, expectations.DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT)
    assert spans.metadata["uncovered_chars"] == 0 and spans.metadata["misplaced_chunks"] == 0
    assert duplicates.metadata["duplicate_share"] == 0.0


def test_chunk_span_faults_ignore_whitespace_gaps_and_count_the_rest():
    text = "Alpha beta.\n\n\u00a0\u3000Gamma delta.  Epsilon"
    gamma = text.index("Gamma")
    good = [("a", 0, 11, "Alpha beta."), ("b", gamma, gamma + 12, "Gamma delta."), ("c", 6, 11, "beta.")]
    assert expectations.chunk_span_faults(text, good) == ([], len("Epsilon"))
    assert expectations.chunk_span_faults(text, [*good, ("d", len(text) - 7, len(text), "Epsilon")]) == (
        [],
        0,
    )
    wrong = [("a", 1, 12, "Alpha beta."), ("b", None, None, "Gamma delta."), ("c", 40, 90, "x")]
    assert expectations.chunk_span_faults(text, wrong) == (
        ["a", "b", "c"],
        len("Alphabeta.Gammadelta.Epsilon"),
    )


@pytest.mark.parametrize(
    "corruption",
    [
        "UPDATE ragline.chunks SET start_char = start_char + 1, end_char = end_char + 1 WHERE chunk_id = %s",
        "UPDATE ragline.chunks SET text = text || ' (edited)' WHERE chunk_id = %s",
        "UPDATE ragline.chunks SET start_char = NULL, end_char = NULL WHERE chunk_id = %s",
    ],
    ids=["shifted span", "rewritten text", "no span"],
)
def test_chunk_spans_fail_when_a_chunk_is_not_its_documents_text_at_its_span(local_run, corruption):
    with rolled_back(local_run["url"]) as conn:
        assert chunk_check(local_run, conn, expectations.CHUNK_SPANS_COVER_DOCUMENT).passed
        chunk_id, doc_id = conn.execute(
            "SELECT chunk_id, doc_id FROM ragline.chunks WHERE source = 'docs' AND chunk_index = 2 "
            "ORDER BY doc_id LIMIT 1"
        ).fetchone()
        conn.execute(corruption, (chunk_id,))
        failed = chunk_check(local_run, conn, expectations.CHUNK_SPANS_COVER_DOCUMENT)
    assert not failed.passed
    assert failed.metadata["misplaced_chunks"] == 1
    assert failed.metadata["misplaced_chunk_ids"] == chunk_id
    assert failed.metadata["failing_doc_ids"] == doc_id


def test_chunk_spans_fail_when_part_of_a_document_is_in_no_chunk(local_run):
    with rolled_back(local_run["url"]) as conn:
        assert chunk_check(local_run, conn, expectations.CHUNK_SPANS_COVER_DOCUMENT).passed
        # A middle chunk that overlaps no other chunk: without it, its text is in no chunk.
        chunk_id, doc_id, text = conn.execute(
            "SELECT c.chunk_id, c.doc_id, c.text FROM ragline.chunks c WHERE c.source = 'docs' "
            "AND c.chunk_index > 0 AND NOT EXISTS (SELECT 1 FROM ragline.chunks o WHERE o.doc_id = c.doc_id "
            "AND o.chunk_id <> c.chunk_id AND o.start_char < c.end_char AND o.end_char > c.start_char) "
            "AND EXISTS (SELECT 1 FROM ragline.chunks n WHERE n.doc_id = c.doc_id "
            "AND n.chunk_index = c.chunk_index + 1) ORDER BY c.doc_id, c.chunk_index LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM ragline.chunks WHERE chunk_id = %s", (chunk_id,))
        failed = chunk_check(local_run, conn, expectations.CHUNK_SPANS_COVER_DOCUMENT)
    assert not failed.passed
    assert failed.metadata["uncovered_chars"] == len("".join(text.split())) > 0
    assert failed.metadata["failing_doc_ids"] == doc_id
    assert failed.metadata["misplaced_chunks"] == 0


def test_boilerplate_copied_across_files_fails_the_duplicate_share(local_run):
    result = local_run["results"]["source boiler"]
    evaluations = checks(result)
    assert evaluations.pop(f"chunks.{expectations.DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT}") is False
    assert all(evaluations.values())  # the other chunk checks pass: this one alone catches it
    assert not result.success  # blocking: embeddings did not run
    assert not result.asset_materializations_for_node("embeddings")
    with rolled_back(local_run["url"]) as conn:
        failed = chunk_check(local_run, conn, expectations.DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT, "boiler")
        # One own section and three shared ones per file: 12 of the 16 chunks repeat another.
        assert failed.metadata["duplicate_share"] == 0.75 and failed.metadata["repeated_texts"] == 3
        assert failed.metadata["most_repeated"].startswith("4 chunks: '## ")
        # The limit decides: the same chunks pass at 0.75 and fail just under it.
        limit = expectations.DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT
        assert chunk_check(local_run, conn, limit, "boiler", max_duplicate_share=0.75).passed
        assert not chunk_check(local_run, conn, limit, "boiler", max_duplicate_share=0.74).passed


def test_max_duplicate_share_is_validated_and_changing_it_rechunks_nothing(tmp_path):
    sources = [{"name": "docs", "root": "docs", "chunking": {"max_duplicate_share": 0.9}}]
    settings = write_project(tmp_path, sources)
    chunking = settings.source("docs").chunking
    assert chunking.max_duplicate_share == 0.9
    assert chunking.fingerprint() == dataclasses.replace(chunking, max_duplicate_share=0.5).fingerprint()
    sources[0]["chunking"]["max_duplicate_share"] = 1.5
    with pytest.raises(ConfigError, match="max_duplicate_share"):
        write_project(tmp_path, sources)


def test_a_file_of_zero_width_characters_is_quarantined_and_the_token_bounds_catch_an_empty_chunk(
    local_run,
):
    """Issue 8: a file that yields no chunk is quarantined at load, not a failed check that blocks
    its source. The bounds check itself still fails on a chunk of no tokens."""
    result = local_run["results"]["source odd"]
    assert result.success and all(checks(result).values())
    with rolled_back(local_run["url"]) as conn:
        reason = conn.execute(
            "SELECT reason FROM ragline.quarantine WHERE source = 'odd' AND path = 'zero-width.md'"
        ).fetchone()
        served = conn.execute(
            "SELECT DISTINCT doc_id FROM ragline.corpus_chunks WHERE source = 'odd' AND chunk_set = 'default'"
        ).fetchall()
        assert reason == ("empty_file",) and served == [("security-basics.md",)]
        [chunk_id] = conn.execute(
            "UPDATE ragline.chunks SET token_count = 0 WHERE chunk_id = "
            "(SELECT min(chunk_id) FROM ragline.chunks WHERE source = 'odd') RETURNING chunk_id"
        ).fetchone()
        failed = chunk_check(local_run, conn, expectations.CHUNK_TOKENS_WITHIN_BOUNDS, "odd")
    assert not failed.passed and failed.metadata["failing_chunk_ids"] == chunk_id


def test_a_document_version_without_chunks_fails_every_live_document_has_chunks(local_run):
    with rolled_back(local_run["url"]) as conn:
        assert chunk_check(local_run, conn, expectations.EVERY_LIVE_DOCUMENT_HAS_CHUNKS).passed
        # A new version stored by raw_documents that the chunker has not chunked: the old
        # version's chunks are no longer current.
        conn.execute(
            "INSERT INTO ragline.document_versions (source, doc_id, version, content_hash, text, char_count) "
            "SELECT source, doc_id, version + 1, 'edited', text || ' Edited.', char_count + 8 "
            "FROM ragline.document_versions WHERE source = 'docs' AND doc_id = 'benefits.md'"
        )
        conn.execute(
            "UPDATE ragline.documents SET version = version + 1 "
            "WHERE source = 'docs' AND doc_id = 'benefits.md'"
        )
        failed = chunk_check(local_run, conn, expectations.EVERY_LIVE_DOCUMENT_HAS_CHUNKS)
        spans = chunk_check(local_run, conn, expectations.CHUNK_SPANS_COVER_DOCUMENT)
    assert not failed.passed and failed.metadata["failing_doc_ids"] == "benefits.md"
    assert not spans.passed and spans.metadata["failing_doc_ids"] == "benefits.md"


def embedding_check(conn, name: str, embedder=None, source: str = "docs") -> expectations.CheckOutcome:
    return outcome(expectations.check_embeddings(conn, source, embedder or local_embedder()), name)


def first_chunk(conn) -> tuple[str, str, str]:
    return conn.execute(
        "SELECT chunk_id, text, text_hash FROM ragline.chunks WHERE source = 'docs' ORDER BY chunk_id LIMIT 1"
    ).fetchone()


def test_a_vector_gone_from_the_ledger_fails_every_current_chunk_is_embedded(local_run):
    with rolled_back(local_run["url"]) as conn:
        assert embedding_check(conn, expectations.EVERY_CURRENT_CHUNK_IS_EMBEDDED).passed
        chunk_id, _text, text_hash = first_chunk(conn)
        conn.execute("DELETE FROM ragline.embeddings WHERE text_hash = %s", (text_hash,))
        failed = embedding_check(conn, expectations.EVERY_CURRENT_CHUNK_IS_EMBEDDED)
    assert not failed.passed and failed.metadata["failing_chunk_ids"] == chunk_id


def test_a_zero_vector_in_the_ledger_fails_the_unit_vector_check(local_run):
    with rolled_back(local_run["url"]) as conn:
        assert embedding_check(conn, expectations.EMBEDDINGS_ARE_FINITE_UNIT_VECTORS).passed
        chunk_id, _text, text_hash = first_chunk(conn)
        conn.execute(
            "UPDATE ragline.embeddings SET embedding = %s WHERE text_hash = %s AND model_id = %s",
            (Vector(np.zeros(384, dtype=np.float32)), text_hash, LOCAL_MODEL_ID),
        )
        failed = embedding_check(conn, expectations.EMBEDDINGS_ARE_FINITE_UNIT_VECTORS)
    assert not failed.passed and failed.metadata["failing_chunk_ids"] == chunk_id


@pytest.fixture(scope="module")
def remote_run(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("remote")
    (root / "docs").mkdir()
    (root / "docs" / "a.md").write_text("# Alerts\n\nRoute P1 alerts to the on-call phone.\n")
    (root / "docs" / "b.md").write_text("# Billing\n\nInvoices are sent on the first of the month.\n")
    with EmbeddingsServer(local_embedder(), dim_override=64) as server:
        embedding = {"provider": "openai", "model": "tei-minilm", "base_url": server.base_url}
        settings = write_project(root, [{"name": "docs", "root": "docs"}], embedding=embedding)
        with data_plane_run(server_url, settings) as done:
            yield {**done, "server": server}


def remote_embedder(server: EmbeddingsServer) -> OpenAICompatibleEmbedder:
    """A new client, as a new process would have: it knows no dimension until it asks."""
    settings = EmbeddingSettings(provider="openai", model="tei-minilm", base_url=server.base_url)
    return OpenAICompatibleEmbedder(settings, api_key=None, sleep=lambda _s: None)


def test_an_unnormalised_vector_from_an_endpoint_fails_the_unit_vector_check(remote_run):
    assert all(checks(remote_run["results"]["source docs"]).values())
    with rolled_back(remote_run["url"]) as conn:
        chunk_id, text, text_hash = first_chunk(conn)
        # What the endpoint returns: MiniLM cut to 64 dimensions, far from unit length.
        raw = local_embedder().embed([text])[0, :64]
        assert abs(np.linalg.norm(raw) - 1) > 0.1
        # ragline normalised what it stored, so the check passes on the stored rows...
        check = expectations.EMBEDDINGS_ARE_FINITE_UNIT_VECTORS
        assert embedding_check(conn, check, remote_embedder(remote_run["server"])).passed
        # ...and fails on a row written as the endpoint returned it (an older writer that did not).
        conn.execute(
            "UPDATE ragline.embeddings SET embedding = %s WHERE text_hash = %s AND model_id = %s",
            (Vector(raw), text_hash, remote_embedder(remote_run["server"]).model_id),
        )
        failed = embedding_check(conn, check, remote_embedder(remote_run["server"]))
    assert not failed.passed and failed.metadata["failing_chunk_ids"] == chunk_id


def test_the_dimension_check_asks_the_embedder_not_the_ledger(remote_run):
    server = remote_run["server"]
    check = expectations.EMBEDDING_DIMENSIONS_MATCH_EMBEDDER
    with rolled_back(remote_run["url"]) as conn:
        chunk_ids = [r[0] for r in conn.execute("SELECT chunk_id FROM ragline.chunks ORDER BY chunk_id")]
        asked = len(server.requests)
        passed = embedding_check(conn, check, remote_embedder(server))
        assert [r["input"] for r in server.requests[asked:]] == [["dimension probe"]]
        # The endpoint now serves 32 dimensions under the same model name; the ledger holds 64.
        server.dim_override = 32
        try:
            failed = embedding_check(conn, check, remote_embedder(server))
        finally:
            server.dim_override = 64
    assert passed.passed and passed.metadata["embedder_dim"] == 64
    assert not failed.passed and failed.metadata["embedder_dim"] == 32
    assert failed.metadata["failing_chunk_ids"] == ", ".join(chunk_ids)
