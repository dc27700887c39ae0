"""search_index: HNSW and full-text indexes over the served vectors, with a measured recall."""

import dagster as dg

from assets.checks import blocking_specs, check_results
from orchestration.resources import EmbedderResource, RaglineResource
from ragline.embedding_ledger import stored_dim
from ragline.quality import HNSW_RECALL_AT_10, CheckOutcome
from ragline.search_index import build_indexes, hnsw_recall, vacuum_lexical


def search_index_asset(automation: dg.AutomationCondition) -> dg.AssetsDefinition:
    @dg.asset(
        name="search_index",
        deps=["embeddings"],
        group_name="serving",
        kinds={"postgres", "pgvector"},
        description="HNSW (cosine) and GIN full-text indexes; the serving view's model.",
        metadata={"table": "ragline.embeddings", "view": "ragline.serving_chunks"},
        check_specs=blocking_specs("search_index", [HNSW_RECALL_AT_10]),
        automation_condition=automation,
    )
    def search_index(ragline: RaglineResource, embedder: EmbedderResource):
        settings = ragline.settings().index
        model = embedder.embedder()
        with ragline.database().connection() as conn:
            dim = stored_dim(conn, model)
            stats = build_indexes(conn, model.model_id, dim, settings)
            vacuum_lexical(conn)
            recall = hnsw_recall(
                conn,
                model.model_id,
                dim,
                sample=settings.recall_sample,
                k=10,
                ef_search=settings.ef_search,
            )
            serving = conn.execute("SELECT count(*) FROM ragline.serving_chunks").fetchone()[0]
        passed = recall.index_used and recall.recall >= settings.min_recall
        outcome = CheckOutcome(
            HNSW_RECALL_AT_10,
            passed,
            {
                "recall_at_10": round(recall.recall, 4),
                "min_recall": settings.min_recall,
                "queries": recall.queries,
                "ef_search": recall.ef_search,
                "index_used": recall.index_used,
                "hnsw_ms_per_query": round(recall.approx_ms_per_query, 3),
                "exact_ms_per_query": round(recall.exact_ms_per_query, 3),
            },
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": serving,
                "vectors": stats.vectors,
                "model_id": stats.model_id,
                "dim": stats.dim,
                "hnsw_index": stats.hnsw_index,
                "hnsw_built": stats.hnsw_built,
                "hnsw_build_seconds": round(stats.hnsw_seconds, 3),
                "gin_built": stats.gin_built,
                "gin_build_seconds": round(stats.gin_seconds, 3),
                "recall_at_10": round(recall.recall, 4),
            },
            check_results=check_results([outcome]),
        )

    return search_index
