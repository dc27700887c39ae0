"""The answer pipeline built from ragline.yaml: retriever, model selector (router or single model),
guardrails, answer cache, and the cost ledger installed for the caller around every call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragline.answer.answering import Answer, answer, answer_stream
from ragline.config import ConfigError, RoutingSettings, Settings
from ragline.costs import Caller, postgres_sink
from ragline.endpoints import calls_recorded_by
from ragline.storage.db import Database
from ragline.types import CallRecord, ModelSelector

if TYPE_CHECKING:
    import pydantic

    from ragline.answer.cache import AnswerCache
    from ragline.guardrails import Guard
    from ragline.retrieval.search import Retriever

__all__ = ["Answerer", "build_answerer"]

Sink = Callable[[CallRecord], None]


@dataclass
class Answerer:
    """answer() and answer_stream() with the parts ragline.yaml configures, each call's model calls
    recorded in llm_calls as made by its caller."""

    settings: Settings
    db: Database
    retriever: Retriever
    models: ModelSelector
    guard: Guard | None = None
    cache: AnswerCache | None = None

    def answer(
        self,
        question: str,
        *,
        caller: Caller,
        output_schema: type[pydantic.BaseModel] | None = None,
        **overrides: Any,
    ) -> Answer:
        """The answer to a question (or an abstention), its model calls recorded for caller."""
        with calls_recorded_by(self.sink(caller)):
            return answer(question, output_schema=output_schema, **self.parts(), **overrides)

    def stream(
        self,
        question: str,
        *,
        caller: Caller,
        output_schema: type[pydantic.BaseModel] | None = None,
        **overrides: Any,
    ) -> Iterator[tuple[str, Any]]:
        """("token", text)* then ("answer", Answer), its model calls recorded for caller."""
        sink = self.sink(caller)
        steps = answer_stream(question, output_schema=output_schema, **self.parts(), **overrides)
        # The sink is installed around each step of the answer, never across a yield: the consumer
        # may resume this generator in another context (a server's thread pool) each time, and a
        # context variable set in one context cannot be reset in another.
        try:
            while True:
                with calls_recorded_by(sink):
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                yield item
        finally:
            with calls_recorded_by(sink):
                steps.close()  # a consumer that stops early closes the model's stream

    def sink(self, caller: Caller) -> Sink:
        """The call sink that stores each model call in llm_calls as made by caller."""
        return postgres_sink(self.db, caller, self.settings.prices)

    def parts(self) -> dict[str, Any]:
        """The keyword arguments of answer() and answer_stream() that this answerer supplies (for a
        caller that records model calls itself and so calls answer() directly)."""
        return {
            "settings": self.settings,
            "db": self.db,
            "retriever": self.retriever,
            "models": self.models,
            "guard": self.guard,
            "cache": self.cache,
        }


def build_answerer(
    settings: Settings,
    db: Database,
    *,
    retriever: Retriever | None = None,
    models: ModelSelector | None = None,
) -> Answerer:
    """The answer pipeline ragline.yaml describes (the retriever and model selector given or built
    from it); ConfigError when no chat model is configured."""
    models = models or model_selector(settings)
    if retriever is None:
        from ragline.index.embedding import build_embedder
        from ragline.retrieval.search import build_retriever

        embedder = build_embedder(settings.embedding, settings.embedding.api_key())
        retriever = build_retriever(settings, db, embedder)
    guard = None
    if settings.guardrails.enabled:
        from ragline.guardrails import Guard

        # (build_retriever redacts what the retriever itself sends: the LLM reranker's requests.)
        guard = Guard(settings.guardrails)
    cache = None
    if settings.cache.enabled:
        from ragline.answer.cache import AnswerCache

        cache = AnswerCache(settings.cache)
    return Answerer(settings, db, retriever, models, guard, cache)


def model_selector(settings: Settings) -> ModelSelector:
    """The router when a models: or routing: block is configured, else the llm: block's model."""
    if settings.models or settings.routing != RoutingSettings():
        from ragline.answer.routing import Router

        return Router(settings)
    from ragline.llm import SingleModel, chat_client
    from ragline.retrieval.context import tokenizer_for

    client = chat_client(settings.llm, tokenizer_for(settings.answer.tokenizer))
    if client is None:
        raise ConfigError(
            "no chat model is configured: add an llm: block (model, base_url, api_key_env) to "
            f"{settings.path}"
        )
    return SingleModel(client)
