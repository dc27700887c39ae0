"""Remote embedding endpoints at scale: requests in flight, Retry-After, 413 splits, token limits.

Against tests/openai_server.py, a real HTTP server on loopback computing MiniLM vectors."""

from __future__ import annotations

import datetime as dt
import email.utils

import numpy as np
import pytest

from ragline.config import EmbeddingSettings
from ragline.index.embedding import OpenAICompatibleEmbedder, TiktokenTokenizer
from ragline.types import EmbeddingError
from tests.conftest import local_embedder
from tests.openai_server import EmbeddingsServer

TEXTS = [f"runbook {i}: page the on-call engineer when the queue backs up" for i in range(12)]


def client(
    server: EmbeddingsServer, sleeps: list[float] | None = None, **settings
) -> OpenAICompatibleEmbedder:
    config = EmbeddingSettings(provider="openai", model="minilm", base_url=server.base_url, **settings)
    return OpenAICompatibleEmbedder(
        config, api_key=None, sleep=(sleeps.append if sleeps is not None else lambda _s: None)
    )


def test_several_requests_in_flight_but_no_more_than_configured():
    # The server holds each request until 3 are open: a client sending one at a time sees 1.
    with EmbeddingsServer(local_embedder(), hold_until_in_flight=3) as server:
        vectors = client(server, batch_size=2, max_in_flight=3).embed(TEXTS)
    assert server.peak_in_flight == 3
    assert len(server.requests) == 6
    assert np.allclose(vectors, local_embedder().embed(TEXTS), atol=1e-4)  # order kept


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_honoured(status):
    sleeps: list[float] = []
    with EmbeddingsServer(local_embedder(), fail_first=[status], retry_after="7") as server:
        client(server, sleeps).embed(TEXTS[:2])
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date_is_honoured():
    sleeps: list[float] = []
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    with EmbeddingsServer(
        local_embedder(), fail_first=[429], retry_after=email.utils.format_datetime(when, usegmt=True)
    ) as server:
        client(server, sleeps).embed(TEXTS[:2])
    assert len(sleeps) == 1 and 60 < sleeps[0] <= 120


def test_a_batch_too_large_is_split_in_two_until_it_fits():
    chars = len(TEXTS[0])
    with EmbeddingsServer(local_embedder(), max_request_chars=3 * chars) as server:
        vectors = client(server, batch_size=8, max_in_flight=1).embed(TEXTS)
    assert np.allclose(vectors, local_embedder().embed(TEXTS), atol=1e-4)
    sizes = [len(r["input"]) for r in server.requests]
    # Batches of 8 and 4; each request over 3 texts is refused and sent again as two halves.
    assert sizes == [8, 4, 2, 2, 4, 2, 2, 4, 2, 2]


def test_a_single_text_too_large_is_a_clear_error():
    with (
        EmbeddingsServer(local_embedder(), max_request_chars=20) as server,
        pytest.raises(EmbeddingError, match="single text of .* tokens .*max_tokens_per_input"),
    ):
        client(server, batch_size=4).embed(TEXTS[:2])


def test_inputs_are_cut_at_the_models_limit_and_requests_within_their_budget():
    tokenizer = TiktokenTokenizer()
    long_text = " ".join(TEXTS)  # 180 tokens
    with EmbeddingsServer(local_embedder()) as server:
        embedder = client(
            server, batch_size=64, max_in_flight=1, max_tokens_per_input=20, max_tokens_per_request=50
        )
        vectors = embedder.embed([long_text, *TEXTS])
    sent = [text for r in server.requests for text in r["input"]]
    assert len(tokenizer.encode(sent[0])) == 20 and long_text.startswith(sent[0])
    assert np.allclose(vectors[0], local_embedder().embed([sent[0]])[0], atol=1e-4)
    per_request = [sum(len(tokenizer.encode(t)) for t in r["input"]) for r in server.requests]
    assert max(per_request) <= 50 and len(server.requests) > 1
    assert embedder.model_id.endswith("~20t")  # the cut decides long texts' vectors: part of the key
