"""The demo corpus end to end through Dagster, against the embedded Postgres and the local model."""

from __future__ import annotations

import psycopg
import pytest

from ragline.config import load_settings
from tests.conftest import (
    REPO,
    checks,
    counts,
    drop_database,
    fresh_database,
    local_embedder,
    metadata,
    run,
)

EXPECTED_DOCUMENTS = {"handbook": 12, "product_docs": 12, "support": 10, "policies": 4}


@pytest.fixture(scope="module")
def demo(server_url):
    """The repository's ragline.yaml over examples/, materialized twice in a fresh database."""
    name, url = fresh_database(server_url)
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", url)
    settings = load_settings(REPO / "ragline.yaml")
    embedder = local_embedder()
    calls_before = embedder.calls
    first = run(settings)
    after_first = counts(url)
    calls_first = embedder.calls - calls_before
    second = run(settings)
    after_second = counts(url)
    calls_second = embedder.calls - calls_before - calls_first
    yield {
        "url": url,
        "settings": settings,
        "first": first,
        "second": second,
        "after_first": after_first,
        "after_second": after_second,
        "calls_first": calls_first,
        "calls_second": calls_second,
    }
    mp.undo()
    drop_database(server_url, name)


def test_every_run_and_check_passes(demo):
    for what, result in demo["first"].items():
        assert result.success, what
        evaluations = checks(result)
        assert evaluations, f"{what} ran no checks"
        assert all(evaluations.values()), (what, evaluations)
    index_checks = checks(demo["first"]["search index"])
    assert index_checks == {"search_index.hnsw_recall_at_10_meets_threshold": True}


def test_expected_row_counts(demo):
    url = demo["url"]
    with psycopg.connect(url) as conn:
        per_source = dict(
            conn.execute(
                "SELECT source, count(*) FROM ragline.documents WHERE status = 'live' GROUP BY source"
            )
        )
        distinct_texts = conn.execute("SELECT count(DISTINCT text_hash) FROM ragline.chunks").fetchone()[0]
        formats = dict(
            conn.execute("SELECT metadata->>'format', count(*) FROM ragline.document_versions GROUP BY 1")
        )
    assert per_source == EXPECTED_DOCUMENTS
    assert formats == {"markdown": 19, "html": 3, "text": 3, "jsonl": 10, "pdf": 3}
    c = demo["after_first"]
    assert c["documents"] == c["document_versions"] == sum(EXPECTED_DOCUMENTS.values())
    assert c["quarantine"] == 0
    assert c["chunks"] > 300
    assert c["embeddings"] == distinct_texts == demo["calls_first"]
    assert c["serving_chunks"] == c["chunks"]
    for source, n in EXPECTED_DOCUMENTS.items():
        result = demo["first"][f"source {source}"]
        assert metadata(result, "raw_documents")["new"] == n
        chunk_meta = metadata(result, "chunks")
        assert chunk_meta["live_documents"] == n
        assert chunk_meta["tokens_max"] <= demo["settings"].source(source).chunking.chunk_size
    index_meta = metadata(demo["first"]["search index"], "search_index")
    assert index_meta["hnsw_built"] is True and index_meta["gin_built"] is True
    assert index_meta["recall_at_10"] >= 0.95


def test_second_run_is_a_no_op(demo):
    assert demo["after_second"] == demo["after_first"]
    assert demo["calls_second"] == 0
    for source in EXPECTED_DOCUMENTS:
        result = demo["second"][f"source {source}"]
        docs = metadata(result, "raw_documents")
        assert (docs["new"], docs["changed"], docs["deleted"]) == (0, 0, 0)
        assert metadata(result, "chunks")["chunks_added"] == 0
        emb = metadata(result, "embeddings")
        assert emb["chunks_embedded"] == 0
        assert emb["chunks_reused"] == emb["dagster/row_count"] > 0
    index_meta = metadata(demo["second"]["search index"], "search_index")
    assert index_meta["hnsw_built"] is False and index_meta["gin_built"] is False


def test_embedding_metadata_reports_work(demo):
    meta = metadata(demo["first"]["source handbook"], "embeddings")
    assert meta["chunks_embedded"] > 0
    assert meta["tokens"] > meta["chunks_embedded"]
    assert 0 < meta["model_seconds"] <= meta["seconds"]
    assert meta["model_id"] == "all-MiniLM-L6-v2-onnx-int8"
