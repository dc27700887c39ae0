"""A LlamaIndex retriever over a ragline index, so LlamaIndex query engines and agents can use it."""

from __future__ import annotations

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ragline.retrieval.search import Retriever
from ragline.types import Filters, Hit


def hit_to_node(hit: Hit) -> NodeWithScore:
    """A ragline hit as a LlamaIndex node: the chunk id as node id, citation fields as metadata."""
    node = TextNode(
        id_=hit.chunk_id,
        text=hit.text,
        metadata={
            "source": hit.source,
            "doc_id": hit.doc_id,
            "document": hit.document,
            "path": hit.path,
            "doc_version": hit.doc_version,
            "chunk_index": hit.chunk_index,
            "start_char": hit.start_char,
            "end_char": hit.end_char,
        },
        # Citation fields are for the application; keep them out of what the LLM reads.
        excluded_llm_metadata_keys=["doc_version", "chunk_index", "start_char", "end_char"],
        excluded_embed_metadata_keys=["doc_version", "chunk_index", "start_char", "end_char"],
    )
    if hit.start_char is not None:
        node.start_char_idx = hit.start_char
        node.end_char_idx = hit.end_char
    return NodeWithScore(node=node, score=hit.score)


class RaglineRetriever(BaseRetriever):
    """LlamaIndex `BaseRetriever` backed by ragline's dense, lexical or hybrid search."""

    def __init__(
        self,
        retriever: Retriever,
        *,
        k: int = 10,
        strategy: str | None = None,
        filters: Filters | None = None,
        mmr_lambda: float | None = None,
    ) -> None:
        super().__init__()
        self._ragline = retriever
        self._k = k
        self._strategy = strategy
        self._filters = filters
        self._mmr_lambda = mmr_lambda

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self._ragline.search(
            query_bundle.query_str,
            k=self._k,
            strategy=self._strategy,
            filters=self._filters,
            mmr_lambda=self._mmr_lambda,
        )
        return [hit_to_node(h) for h in result.hits]
