"""Rerankers: reorder a query's candidate chunks with a second, more expensive look at each one.

- "maxsim": offline late interaction (ColBERT-style MaxSim) over the local MiniLM's token vectors:
  each query token is matched to its most similar passage token. It needs no extra model files,
  which matters because no PyPI package ships a cross-encoder model for offline use.
- "llm": pointwise 0-10 grading by any OpenAI-compatible chat model (ragline.llm.LLMReranker).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ragline.config import LLMSettings
from ragline.index.embedding import LocalMiniLM
from ragline.types import Embedder, Hit, Reranker, RetrievalError


class MaxSimReranker:
    """Late-interaction rescoring: the mean over query tokens of the best cosine to any passage token."""

    name = "maxsim"

    def __init__(self, model: LocalMiniLM) -> None:
        self.model = model

    def rerank(self, query: str, hits: Sequence[Hit], top_n: int | None = None) -> list[Hit]:
        if not hits:
            return []
        q = self.model.token_vectors([query])[0]
        passages = self.model.token_vectors([h.text for h in hits])
        scores = [float((q @ p.T).max(axis=1).mean()) if len(p) and len(q) else 0.0 for p in passages]
        # Stable on ties: the first-stage order decides between equal scores.
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
        out = [replace(hits[i], score=scores[i]) for i in order]
        return out[:top_n] if top_n else out


def build_reranker(
    name: str | None,
    embedder: Embedder | None,
    llm: LLMSettings,
    redact: Callable[[str], str] | None = None,
) -> Reranker | None:
    """The reranker a retrieval setting names, or None; redact: applied to what the llm reranker
    sends (query and passages), as the guardrails redact it."""
    if name is None:
        return None
    if name == "maxsim":
        model = embedder if isinstance(embedder, LocalMiniLM) else LocalMiniLM()
        return MaxSimReranker(model)
    if name == "llm":
        if not llm.configured:
            raise RetrievalError("the llm reranker needs an llm block (model, base_url) in ragline.yaml")
        from ragline.llm import LLMReranker, chat_client

        client = chat_client(llm)
        assert client is not None
        return LLMReranker(client, redact=redact)
    raise RetrievalError(f"unknown reranker {name!r}")
