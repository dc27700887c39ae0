"""chunks: live documents split with llama-index-core, sized in the embedding model's tokens."""

import dagster as dg

from assets.checks import blocking_specs, check_results
from orchestration.resources import EmbedderResource, RaglineResource
from ragline import expectations
from ragline.ingest.chunk_store import rechunk_source
from ragline.ingest.chunking import Chunker
from ragline.storage import provenance

CHECKS = (
    expectations.CHUNK_SPANS_COVER_DOCUMENT,
    expectations.DUPLICATE_CHUNK_SHARE_WITHIN_LIMIT,
    expectations.CHUNK_TOKENS_WITHIN_BOUNDS,
    expectations.EVERY_LIVE_DOCUMENT_HAS_CHUNKS,
)


def chunks_asset(
    partitions: dg.PartitionsDefinition, automation: dg.AutomationCondition
) -> dg.AssetsDefinition:
    @dg.asset(
        name="chunks",
        partitions_def=partitions,
        deps=["raw_documents"],
        group_name="ragline",
        kinds={"python", "postgres"},
        description="Current chunks of live documents; ids are deterministic, re-runs idempotent.",
        metadata={"table": "ragline.chunks"},
        check_specs=blocking_specs("chunks", CHECKS, partitions_def=partitions),
        automation_condition=automation,
    )
    def chunks(context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource):
        source = ragline.settings().source(context.partition_key)
        model = embedder.embedder()
        if source.chunking.chunk_size > model.max_tokens - 2:
            raise dg.Failure(
                f"{source.name}: chunk_size {source.chunking.chunk_size} is over what "
                f"{model.model_id} reads ({model.max_tokens - 2} tokens); lower it in ragline.yaml"
            )
        chunker = Chunker(source.chunking, model.tokenizer)
        with ragline.database().connection() as conn:
            stats = rechunk_source(conn, source.name, chunker)
            outcomes = expectations.check_chunks(conn, source.name, source.chunking)
            version = provenance.stored_version(conn, provenance.CHUNKS, source=source.name)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.current_chunks,
                "documents_chunked": stats.documents_chunked,
                "documents_quarantined": stats.documents_quarantined,
                "chunks_added": stats.chunks_added,
                "chunks_removed": stats.chunks_removed,
                "live_documents": stats.live_documents,
                "tokens_min": stats.tokens_min,
                "tokens_mean": round(stats.tokens_mean, 1),
                "tokens_max": stats.tokens_max,
                "chunker": chunker.id,
            },
            data_version=dg.DataVersion(version),
            check_results=check_results(outcomes, partition=context.partition_key),
        )

    return chunks
