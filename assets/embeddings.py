"""embeddings: a vector per distinct chunk text and model, never computed twice."""

import dagster as dg

from assets.checks import blocking_specs, check_results
from assets.metering import metered
from orchestration.executors import MODEL_POOL
from orchestration.resources import EmbedderResource, RaglineResource
from ragline import expectations
from ragline.index.embedding_ledger import embed_pending
from ragline.index.progress import controlling_terminal
from ragline.storage import provenance

CHECKS = (
    expectations.EMBEDDING_DIMENSIONS_MATCH_EMBEDDER,
    expectations.EMBEDDINGS_ARE_FINITE_UNIT_VECTORS,
    expectations.EVERY_CURRENT_CHUNK_IS_EMBEDDED,
)


def embeddings_asset(
    partitions: dg.PartitionsDefinition, automation: dg.AutomationCondition
) -> dg.AssetsDefinition:
    @dg.asset(
        name="embeddings",
        partitions_def=partitions,
        deps=["chunks"],
        group_name="ragline",
        kinds={"python", "postgres", "pgvector"},
        description="Vectors of the source's chunk texts, in a ledger keyed by (text hash, model).",
        metadata={"table": "ragline.embeddings"},
        check_specs=blocking_specs("embeddings", CHECKS, partitions_def=partitions),
        automation_condition=automation,
        pool=MODEL_POOL,  # model steps share the cores (dagster.yaml limits the pool)
    )
    @metered
    def embeddings(context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource):
        model = embedder.embedder()
        with ragline.database().connection() as conn:
            stats = embed_pending(
                conn,
                context.partition_key,
                model,
                progress=context.log.info,  # a line per batch in the run log, with the ETA
                terminal=controlling_terminal(),  # a bar when run from a terminal (ragline materialize)
            )
            outcomes = expectations.check_embeddings(conn, context.partition_key, model)
            version = provenance.stored_version(
                conn, provenance.EMBEDDINGS, source=context.partition_key, model_id=model.model_id
            )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.chunks,
                "model_id": stats.model_id,
                "chunks_embedded": stats.texts_embedded,
                "chunks_reused": stats.chunks_reused,
                "tokens": stats.tokens_embedded,
                "seconds": round(stats.seconds, 3),
                "model_seconds": round(stats.model_seconds, 3),
                "chunks_per_second": round(stats.chunks_per_second, 1),
            },
            data_version=dg.DataVersion(version),
            check_results=check_results(outcomes, partition=context.partition_key),
        )

    return embeddings
