"""search_index: the serving HNSW index over the published texts, and the model it serves."""

import dagster as dg

from assets.checks import blocking_specs, check_results
from assets.metering import metered
from orchestration.resources import EmbedderResource, RaglineResource
from ragline.expectations import HNSW_RECALL_AT_10
from ragline.index.embedding_ledger import stored_dim
from ragline.index.search_index import (
    build_indexes,
    hnsw_recall,
    publish_model,
    recall_outcome,
    recall_queries,
    serving_chunk_count,
    vacuum_lexical,
)
from ragline.storage import provenance


def search_index_asset(automation: dg.AutomationCondition) -> dg.AssetsDefinition:
    @dg.asset(
        name="search_index",
        deps=["serving_chunks"],
        group_name="ragline",
        kinds={"postgres", "pgvector"},
        description="HNSW over the published texts' vectors; a model is served once its recall check passes.",
        metadata={"table": "ragline.serving_vectors", "view": "ragline.serving_chunks"},
        check_specs=blocking_specs("search_index", [HNSW_RECALL_AT_10]),
        automation_condition=automation,
    )
    @metered
    def search_index(context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource):
        settings = ragline.settings().index
        model = embedder.embedder()
        with ragline.database().connection() as conn:
            dim = stored_dim(conn, model)
            stats = build_indexes(conn, model.model_id, dim, settings)
            if stats.hnsw_memory_refused:
                context.log.warning(
                    f"the server refused the HNSW build's memory: {stats.hnsw_memory_refused}; built with "
                    f"{stats.hnsw_memory_mb} MB (give PostgreSQL more shared memory, e.g. --shm-size)"
                )
            if stats.hnsw_spilled:
                context.log.warning(
                    f"the HNSW graph outgrew {stats.hnsw_memory_mb} MB and was finished on disk, more slowly "
                    f"({stats.hnsw_spilled}); raise index.build_memory_mb for a faster build"
                )
            vacuum_lexical(conn)
            kind, queries = recall_queries(
                conn,
                model.model_id,
                model.embed,
                sample=settings.recall_sample,
                min_real=settings.min_real_queries,
            )
            recall = hnsw_recall(
                conn, model.model_id, dim, queries, query_kind=kind, k=10, ef_search=settings.ef_search
            )
            outcome = recall_outcome(recall, stats, settings)
            dropped = list(stats.indexes_dropped)
            if outcome.passed:
                dropped += publish_model(conn, model.model_id, dim)
            else:
                context.log.error(f"{model.model_id} is not served: {outcome.metadata['verdict']}")
            serving = serving_chunk_count(conn)
            published = provenance.stored_version(conn, provenance.PUBLICATIONS)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": serving,
                "vectors": stats.vectors,
                "vectors_added": stats.vectors_added,
                "model_id": stats.model_id,
                "model_served": outcome.passed,
                "dim": str(stats.dim),  # text: a constant is not a trend to plot
                "hnsw_index": stats.hnsw_index,
                "hnsw_built": stats.hnsw_built,
                "hnsw_build_seconds": round(stats.hnsw_seconds, 3),
                "hnsw_build_memory_mb": stats.hnsw_memory_mb,
                "hnsw_graph_fit_in_memory": (
                    "no build" if not stats.hnsw_built else "no" if stats.hnsw_spilled else "yes"
                ),
                "indexes_dropped": ", ".join(dropped) or "none",
                "recall_at_10": round(recall.recall, 4),
                "recall_queries": recall.query_kind,
            },
            # What search serves: the sources' generations, the model and whether it is served.
            data_version=dg.DataVersion(
                provenance.combined_version(published, stats.model_id, stats.dim, outcome.passed)
            ),
            check_results=check_results([outcome]),
        )

    return search_index
