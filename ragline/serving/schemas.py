"""The HTTP API's request and response bodies (pydantic), which also make its OpenAPI schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragline.retrieval.context import TOKENIZERS
from ragline.retrieval.search import check_storable

Strategy = Literal["dense", "lexical", "hybrid"]
Tokenizer = Literal[TOKENIZERS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    """Unknown fields are an error (a misspelt option must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        check_storable(data, "body")
        return data


class SearchRequest(_Strict):
    query: str = Field(min_length=1, description="the question or keywords; limit: serve.max_query_chars")
    k: int = Field(10, ge=1, description="chunks to return; at most serve.max_k")
    strategy: Strategy | None = Field(None, description="default: retrieval.strategy of ragline.yaml")
    sources: list[str] = Field(default_factory=list, description="only these sources")
    where: dict[str, Any] = Field(
        default_factory=dict, description="document or chunk metadata that must match (JSON containment)"
    )
    mmr: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description="MMR lambda, 0 to 1")
    rerank: bool | None = Field(None, description="default: rerank if retrieval.rerank is configured")
    log: bool = Field(True, description="record the query in ragline.query_log")


class ContextRequest(SearchRequest):
    k: int = Field(20, ge=1, description="chunks to retrieve; at most serve.max_k")
    budget: int = Field(2000, ge=1, description="tokens of the target model; at most serve.max_budget")
    tokenizer: Tokenizer = "cl100k_base"  # type: ignore[valid-type]
    neighbours: bool = False
    order: Literal["long_context", "rank"] = "long_context"


class SearchHit(BaseModel):
    rank: int
    score: float
    chunk_id: str
    document: str
    path: str
    start_char: int | None
    end_char: int | None
    text: str


class SearchResponse(BaseModel):
    query: str
    strategy: str
    latency_ms: float
    timings_ms: dict[str, float]
    query_id: int | None
    hits: list[SearchHit]


class AnswerCitation(BaseModel):
    """A numbered passage: the chunk and where in its document it is."""

    number: int
    chunk_id: str
    document: str
    path: str
    start_char: int | None
    end_char: int | None


class ContextCitation(AnswerCitation):
    tokens: int
    neighbour_of: str | None


class ContextResponse(BaseModel):
    query: str
    budget: int
    tokens: int
    tokenizer: str
    dropped: dict[str, int]
    context: str
    citations: list[ContextCitation]


class ErrorResponse(BaseModel):
    detail: str


class Health(BaseModel):
    ready: bool
    database: bool
    published_sources: int
    reason: str | None = None


# --- The answer routes (ragline/serving/answers.py), built on ragline.answer.pipeline.Answerer ---


class AnswerRequest(SearchRequest):
    """POST /v1/answer: stream=true answers as server-sent events (token*, citations, answer, done)."""

    question: str = Field(min_length=1, description="limit: serve.max_query_chars")
    query: str = Field("", description="unused; the question is the query")  # type: ignore[assignment]
    stream: bool = False
    max_tokens: int | None = Field(
        None, ge=1, description="of the answer; default and maximum: answer.max_tokens of ragline.yaml"
    )
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)


class AnswerResponse(BaseModel):
    """An answer (or abstention) with the passages it cites and what it took to make."""

    question: str
    text: str
    citations: list[AnswerCitation]
    abstained: bool
    reason: str | None
    prompt: str
    model: str | None
    route: str | None = Field(description="why this model answered; endpoint addresses left out")
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    timings_ms: dict[str, float]
    guardrails: dict[str, Any]
    answer_id: int | None
    data: dict[str, Any] | None = None
    support: float | None = None
    replaced: bool = Field(False, description="stream: the output checks changed the streamed text")
    finish_reason: str | None = Field(
        None, description="why the model stopped: 'stop', or 'length' (cut at max_tokens); None if not called"
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields (name, ...) ragline ignores

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions, OpenAI-compatible: the last user message is the question."""

    model_config = ConfigDict(extra="ignore")  # OpenAI's optional parameters are accepted and ignored

    model: str = Field(description="'ragline'")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = Field(None, description="{include_usage: true}: a usage chunk")
    max_tokens: int | None = Field(None, ge=1, description="at most answer.max_tokens (more is cut)")
    max_completion_tokens: int | None = Field(None, ge=1, description="as max_tokens")
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class OpenAIErrorResponse(BaseModel):
    """An error of /v1/chat/completions, in OpenAI's shape."""

    error: OpenAIError
