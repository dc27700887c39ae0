"""serving_chunks: each source's published generation, moved in one transaction past its checks."""

import dagster as dg

from assets.checks import blocking_specs, check_results
from orchestration.resources import EmbedderResource, RaglineResource
from ragline.index.publishing import PUBLISHED_DOCUMENTS_ARE_SEARCHABLE, check_searchable, publish_source
from ragline.ingest.chunking import Chunker
from ragline.types import PublishError


def serving_chunks_asset(
    partitions: dg.PartitionsDefinition, automation: dg.AutomationCondition
) -> dg.AssetsDefinition:
    @dg.asset(
        name="serving_chunks",
        partitions_def=partitions,
        deps=["embeddings"],
        group_name="ragline",
        kinds={"postgres"},
        description="What search serves for the source: the generation published after its checks passed.",
        metadata={"table": "ragline.published_generations", "view": "ragline.serving_chunks"},
        check_specs=blocking_specs(
            "serving_chunks", [PUBLISHED_DOCUMENTS_ARE_SEARCHABLE], partitions_def=partitions
        ),
        automation_condition=automation,
    )
    def serving_chunks(
        context: dg.AssetExecutionContext, ragline: RaglineResource, embedder: EmbedderResource
    ):
        source = ragline.settings().source(context.partition_key)
        model = embedder.embedder()
        chunker = Chunker(source.chunking, model.tokenizer)
        with ragline.database().connection() as conn:
            try:
                result = publish_source(
                    conn, source.name, chunker=chunker.id, model_id=model.model_id, limits=source.mass_change
                )
            except PublishError as exc:
                raise dg.Failure(str(exc), metadata={"partition": source.name}) from exc
            outcome = check_searchable(conn, source.name)
        change = result.change
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.chunks,
                "generation": result.generation,
                "previous_generation": result.previous if result.previous is not None else "none",
                "published_now": result.published,
                "documents": result.documents,
                "publish_ms": round(1000 * result.seconds, 1),
                "texts_indexed": result.texts_indexed,
                "texts_unindexed": result.texts_unindexed,
                "vectors_added": result.vectors_added,
                "vectors_removed": result.vectors_removed,
                "documents_deleted": change.deleted if change else 0,
                "documents_replaced": change.replaced if change else 0,
                "documents_added": change.added if change else 0,
            },
            # The generation is the data: a no-op publish keeps the data version, and downstream
            # automation can tell.
            data_version=dg.DataVersion(f"{source.name}:{result.generation}"),
            check_results=check_results([outcome], partition=context.partition_key),
        )

    return serving_chunks
