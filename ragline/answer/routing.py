"""Model routing: a default (cheap) chat model, escalation rules on the request's features, a
fallback chain on errors with a circuit breaker per endpoint, and the reason for every decision in
the completion's `route` and in each call's ledger record."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ragline.config import (
    OPENAI_API_URL,
    CircuitSettings,
    ConfigError,
    EscalationRule,
    ModelSettings,
    RoutingSettings,
    Settings,
    chat_models,
)
from ragline.endpoints import calls_recorded_by, endpoint_host, report_call
from ragline.llm import LLMError, LLMUnavailable
from ragline.safe_text import printable
from ragline.types import CallRecord, ChatModel, Completion, RouteFeatures

REASON_CHARS = 200  # of a failure, inside a route


def connect_chat_client(model: ModelSettings) -> ChatModel:
    """The ChatClient of one models: entry, its key read from the variable configured for it."""
    from ragline.llm import ChatClient

    return ChatClient(
        base_url=model.base_url,
        model=model.model,
        api_key=model.api_key(),
        timeout_seconds=model.timeout_seconds,
        max_retries=model.max_retries,
    )


@dataclass
class _Circuit:
    failures: int = 0  # in a row
    opened_at: float | None = None
    trial: bool = False  # half-open: one call is trying the endpoint again


class CircuitBreaker:
    """Per endpoint: open after N failures in a row (calls skip it), half-open after the cooldown
    (one call tries it: success closes it, failure opens it again). Every call allowed through
    must end in succeeded(), failed() or abandoned(), or a trial would hold the circuit open."""

    def __init__(self, settings: CircuitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def state(self, endpoint: str) -> str:
        """closed | open | half-open, as a call would find it now."""
        with self._lock:
            c = self._circuits.get(endpoint)
            if c is None or c.opened_at is None:
                return "closed"
            cooled = self._clock() - c.opened_at >= self.settings.cooldown_seconds
            return "half-open" if cooled and not c.trial else "open"

    def allow(self, endpoint: str) -> bool:
        """May a call go to this endpoint now? (A half-open circuit lets one trial call through.)"""
        with self._lock:
            c = self._circuits.setdefault(endpoint, _Circuit())
            if c.opened_at is None:
                return True
            if c.trial or self._clock() - c.opened_at < self.settings.cooldown_seconds:
                return False
            c.trial = True
            return True

    def succeeded(self, endpoint: str) -> None:
        with self._lock:
            self._circuits[endpoint] = _Circuit()

    def failed(self, endpoint: str) -> None:
        with self._lock:
            c = self._circuits.setdefault(endpoint, _Circuit())
            c.failures += 1
            if c.trial or c.failures >= self.settings.failures:
                c.opened_at = self._clock()
            c.trial = False

    def abandoned(self, endpoint: str) -> None:
        """A call ended without an outcome (interrupted, cancelled): a trial counts as failed."""
        with self._lock:
            c = self._circuits.get(endpoint)
            trial = c is not None and c.trial
        if trial:
            self.failed(endpoint)

    def settle(self, endpoint: str, exc: BaseException | None) -> None:
        """The outcome of one allowed call: None or a refusal (a plain LLMError such as a 4xx: the
        endpoint answered) closes the circuit; LLMUnavailable or any other Exception (a malformed
        reply) is a failure; an interruption (KeyboardInterrupt, GeneratorExit) ends a trial only."""
        if exc is None or (isinstance(exc, LLMError) and not isinstance(exc, LLMUnavailable)):
            self.succeeded(endpoint)
        elif isinstance(exc, Exception):
            self.failed(endpoint)
        else:
            self.abandoned(endpoint)


def rule_match(rule: EscalationRule, features: RouteFeatures) -> str | None:
    """Why the rule escalates these features ("retrieval_margin 0.0100 < 0.05"), or None."""
    why = []
    if rule.retrieval_margin_below is not None:
        margin = features.retrieval_margin
        if margin is None or not margin < rule.retrieval_margin_below:
            return None
        why.append(f"retrieval_margin {margin:.4f} < {rule.retrieval_margin_below:g}")
    if rule.question_tokens_above is not None:
        if not features.question_tokens > rule.question_tokens_above:
            return None
        why.append(f"question_tokens {features.question_tokens} > {rule.question_tokens_above}")
    if rule.output is not None:
        if features.output != rule.output:
            return None
        why.append(f"output {features.output}")
    return ", ".join(why)


class Router:
    """Implements ModelSelector over the models: block (or the llm: block as the single model)."""

    def __init__(
        self,
        settings: Settings,
        *,
        connect: Callable[[ModelSettings], ChatModel] = connect_chat_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        models = chat_models(settings)
        if not models:
            raise ConfigError("no chat model is configured: add a models: block or an llm: block")
        self.models = {m.name: m for m in models}
        self.routing: RoutingSettings = settings.routing
        self.default = self.routing.default or models[0].name
        self.breaker = CircuitBreaker(self.routing.circuit, clock)
        self._connect = connect
        self._clients: dict[str, ChatModel] = {}
        self._lock = threading.Lock()

    def decide(self, features: RouteFeatures) -> tuple[str, str]:
        """The model for these features and why: the first escalation rule that matches, unless
        the caller's budget is below routing.min_budget_tokens; else the default."""
        floor = self.routing.min_budget_tokens
        for rule in self.routing.escalate:
            why = rule_match(rule, features)
            if why is None or rule.model == self.default:
                continue
            left = features.budget_left_tokens
            if floor is not None and left is not None and left < floor:
                return self.default, (
                    f"default {self.default}: not escalated to {rule.model} ({why}): "
                    f"budget_left_tokens {left} < {floor}"
                )
            return rule.model, f"escalated to {rule.model}: {why}"
        return self.default, f"default {self.default}: no escalation rule matched"

    def select(self, features: RouteFeatures) -> RoutedModel:
        name, reason = self.decide(features)
        chain = [name, *(n for n in self.routing.fallback if n != name)]
        return RoutedModel(self, chain, reason)

    def client(self, name: str) -> ChatModel:
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self._connect(self.models[name])
            return self._clients[name]

    def endpoint(self, name: str) -> str:
        """The circuit's key: the endpoint's host[:port] (models on one server share it)."""
        return endpoint_host(self.models[name].base_url or OPENAI_API_URL)


class RoutedModel:
    """The chosen model with its fallback chain: a ChatModel whose completions say why in `route`."""

    def __init__(self, router: Router, chain: list[str], reason: str) -> None:
        self.router = router
        self.chain = chain
        self.reason = reason
        self.model = router.models[chain[0]].model
        # The answer's context must fit whichever model of the chain ends up answering.
        self.context_window = min(router.models[name].context_tokens for name in chain)

    def _route(self, name: str, notes: list[str]) -> str:
        if not notes:
            return self.reason
        return f"fallback to {name}: {'; '.join(notes)} (chosen: {self.reason})"

    def _skipped(self, name: str, notes: list[str]) -> bool:
        """True (noted) when the endpoint's circuit is open and the call must not be made."""
        if self.router.breaker.allow(self.router.endpoint(name)):
            return False
        notes.append(f"{name} unavailable (circuit open)")
        return True

    def _exhausted(self, notes: list[str]) -> LLMError:
        """Every model failed or was skipped: the decision is recorded, and the error names each."""
        if all(n.endswith("(circuit open)") for n in notes):
            # No call was made, so no call record carries the decision: record it on its own.
            first = self.chain[0]
            report_call(
                CallRecord(
                    kind="chat",
                    model=self.router.models[first].model,
                    endpoint=self.router.endpoint(first),
                    prompt_tokens=0,
                    completion_tokens=0,
                    latency_ms=0.0,
                    ok=False,
                    error="not called: every model's circuit is open",
                    route=f"{'; '.join(notes)} (chosen: {self.reason})",
                )
            )
        return LLMError("no chat model answered: " + "; ".join(notes))

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        notes: list[str] = []
        for name in self.chain:
            if self._skipped(name, notes):
                continue
            route = self._route(name, notes)
            calls: list[CallRecord] = []
            outcome: BaseException | None = None
            try:
                with calls_recorded_by(calls.append):
                    completion = self.router.client(name).chat(
                        messages,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        response_format=response_format,
                        # Only when asked: a ChatModel without seed support still serves the rest.
                        **({"seed": seed} if seed is not None else {}),
                    )
            except BaseException as exc:
                outcome = exc
                if not isinstance(exc, LLMError):
                    raise
                notes.append(f"{name} failed: {printable(str(exc), REASON_CHARS)}")
                continue
            finally:
                # Whatever ended the call (a malformed reply, an interrupt too), the circuit learns it.
                self.router.breaker.settle(self.router.endpoint(name), outcome)
                _forward(calls, route)
            return dataclasses.replace(completion, route=route)
        raise self._exhausted(notes)

    def stream(
        self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str | Completion]:
        """Falls back only before the first text delta: once text went out, a failure is raised."""
        notes: list[str] = []
        for name in self.chain:
            if self._skipped(name, notes):
                continue
            route = self._route(name, notes)
            emitted = False
            calls: list[CallRecord] = []
            parts: Iterator[str | Completion] | None = None
            outcome: BaseException | None = None
            try:
                # The sink is installed around each step only, never across a yield: a generator
                # resumed in another context (a server's thread pool) must not carry it, nor reset it.
                with calls_recorded_by(calls.append):
                    parts = iter(
                        self.router.client(name).stream(
                            messages, max_tokens=max_tokens, temperature=temperature
                        )
                    )
                while True:
                    try:
                        with calls_recorded_by(calls.append):
                            part = next(parts)
                    except StopIteration:
                        break
                    finally:
                        _forward(calls, route)
                    if not emitted:
                        self.router.breaker.settle(self.router.endpoint(name), None)  # it answers
                        emitted = True
                    yield dataclasses.replace(part, route=route) if isinstance(part, Completion) else part
                return
            except BaseException as exc:
                outcome = exc
                if emitted or not isinstance(exc, LLMError):
                    raise
                notes.append(f"{name} failed: {printable(str(exc), REASON_CHARS)}")
            finally:
                if not emitted or isinstance(outcome, LLMUnavailable):
                    # Before the first delta the call's outcome settles the circuit, whatever it
                    # was (a consumer closing the stream, a malformed chunk); a stream broken off
                    # later is a failure of the endpoint too.
                    self.router.breaker.settle(self.router.endpoint(name), outcome)
                close = getattr(parts, "close", None)
                if close is not None:
                    with calls_recorded_by(calls.append):
                        close()
                _forward(calls, route)
        raise self._exhausted(notes)


def _forward(calls: list[CallRecord], route: str) -> None:
    """The records captured around one model's call, to the caller's sink with the decision."""
    while calls:
        report_call(dataclasses.replace(calls.pop(0), route=route))
