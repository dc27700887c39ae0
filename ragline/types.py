"""Types shared by ragline's planes: retrieved hits and filters, the embedder, tokenizer and
reranker protocols, the errors each plane raises and the answer metric names. Imports nothing
else of ragline."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

# Answer-quality metric names as stored in ragline.answer_metric_results and answer_scores.
JUDGE_METRICS = ("faithfulness", "relevance", "context_precision", "context_recall", "correctness")
SIMILARITY_METRICS = ("exact_match", "token_f1", "rouge_l", "embedding_cosine", "bertscore_f1")


class DatabaseError(RuntimeError):
    """The database cannot be reached or is not fit for ragline (no pgvector, changed migrations)."""


class SourceError(RuntimeError):
    """A whole source cannot be read (its root folder is missing): nothing is changed."""


class PublishError(RuntimeError):
    """A source cannot be published as it is (held after a rollback, a mass change, missing vectors)."""


class EmbeddingError(RuntimeError):
    """The embedder failed or returned unusable vectors."""


class ModelTokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]: ...

    def prefix_end(self, text: str, max_tokens: int) -> int:
        """The character offset where the first max_tokens tokens of text end."""
        ...


class Embedder(Protocol):
    model_id: str
    max_tokens: int
    tokenizer: ModelTokenizer

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class RetrievalError(RuntimeError):
    """The query cannot be answered as asked (no index for the model, bad filter, empty query)."""


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, with where it came from (for citations) and its score."""

    chunk_id: str
    source: str
    doc_id: str
    path: str
    doc_version: int
    chunk_index: int
    text: str
    text_hash: str
    token_count: int
    start_char: int | None
    end_char: int | None
    score: float
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def document(self) -> str:
        """The document id used by evaluation sets: "<source>:<doc_id>"."""
        return f"{self.source}:{self.doc_id}"

    @property
    def citation(self) -> str:
        """Where the text is: the document (file path, or file#record for JSONL) and its span."""
        span = f" chars {self.start_char}-{self.end_char}" if self.start_char is not None else ""
        return f"{self.source}/{self.doc_id}{span}"


@dataclass(frozen=True)
class Filters:
    """Restrict a search to some sources, documents, or document metadata values (all must hold)."""

    sources: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    metadata: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        sources: Sequence[str] = (),
        doc_ids: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
    ) -> Filters:
        return cls(tuple(sources), tuple(doc_ids), tuple(sorted((metadata or {}).items())))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sources:
            out["sources"] = list(self.sources)
        if self.doc_ids:
            out["doc_ids"] = list(self.doc_ids)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


class Reranker(Protocol):
    """Reorders candidate hits for a query; returns at most top_n of them with new scores."""

    name: str

    def rerank(self, query: str, hits: Sequence[Hit], top_n: int | None = None) -> list[Hit]: ...


@dataclass
class SearchResult:
    query: str
    strategy: str
    hits: list[Hit]
    latency_ms: float
    query_id: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    vector: np.ndarray | None = None  # the query's vector, when the strategy embedded it


# --- The answer plane: chat models, their completions, and the record of every model call. ---


@dataclass(frozen=True)
class Completion:
    """One chat model call's result: the text, and what it cost in tokens and time."""

    text: str
    model: str
    endpoint: str  # host[:port] of the endpoint's base URL; never credentials
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str | None = None
    cached: bool = False  # served from ragline's response cache: 0 tokens spent
    route: str | None = None  # why this model was chosen (the router's decision), if routed


class ChatModel(Protocol):
    """A chat model behind an OpenAI-compatible endpoint (or a router over several)."""

    model: str

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion: ...

    def stream(
        self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str | Completion]:
        """Text deltas as they arrive, then exactly one final Completion (the whole text, usage)."""
        ...


@dataclass(frozen=True)
class RouteFeatures:
    """What a routing policy may look at to pick a model for one request."""

    question_tokens: int = 0
    retrieval_margin: float | None = None  # top score minus the runner-up's, when retrieval ran
    top_score: float | None = None
    output: str = "text"  # "text" or "json"
    budget_left_tokens: int | None = None  # the caller's remaining token budget, if it has one


class ModelSelector(Protocol):
    """Picks the chat model for one request (a router, or always the same model)."""

    def select(self, features: RouteFeatures) -> ChatModel: ...


@dataclass(frozen=True)
class CallRecord:
    """One model call as the cost ledger (llm_calls) stores it: never a key, never the prompt."""

    kind: str  # "chat" or "embedding"
    model: str
    endpoint: str  # host[:port] ("local" for the in-process embedding model)
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ok: bool = True
    error: str | None = None  # scrubbed, one line
    cached: bool = False
    route: str | None = None
    texts: int = 0  # inputs of an embedding call
