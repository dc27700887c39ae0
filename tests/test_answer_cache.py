"""The answer cache: exact and semantic hits, TTL, invalidation by a publish, one row per request
under concurrent stores, LRU trimming and purge."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ragline.answer.cache import AnswerCache, SemanticKey, context_key, exact_key, params_hash
from ragline.config import CacheSettings, ConfigError, load_settings
from ragline.storage.db import Database
from tests.conftest import local_embedder, run

MESSAGES = [{"role": "system", "content": "Answer from the passages."}, {"role": "user", "content": "Q"}]
PARAMS = {"max_tokens": 256, "temperature": 0.0}
CONTEXT = context_key([("handbook:paid-time-off.md#3", "a" * 64), ("handbook:benefits.md#1", "b" * 64)])
# From examples/cache/question_pairs.jsonl: a paraphrase (cosine 0.992), and the most similar
# non-paraphrase of the set (same topic, the opposite ask: 0.966), with their own questions.
QUESTION = "How many days of annual leave do employees get?"
PARAPHRASE = "How many days of annual leave do employees receive?"
ALLOWED = "What is allowed under the acceptable use policy?"
OPPOSITE = "What is forbidden under the acceptable use policy?"


def key(question: str = "Q", model: str = "small") -> str:
    messages = [MESSAGES[0], {"role": "user", "content": question}]
    return exact_key(model=model, prompt_version="answer@1", messages=messages, params=PARAMS)


def semantic(vector: np.ndarray, context: str = CONTEXT) -> SemanticKey:
    return SemanticKey("small", "answer@1", params_hash(PARAMS), context, vector)


def rows(conn) -> list[tuple]:
    return conn.execute("SELECT exact_key, hits FROM ragline.answer_cache ORDER BY id").fetchall()


def test_exact_hit_miss_and_hit_count(db_url):
    cache = AnswerCache(CacheSettings())
    with Database(db_url) as db, db.connection() as conn:
        assert cache.lookup(conn, exact=key(), semantic=None) is None
        cache.store(
            conn, exact=key(), semantic=None, payload={"text": "Twenty-five days [1].", "citations": [1]}
        )
        hit = cache.lookup(conn, exact=key(), semantic=None)
        assert hit is not None and hit.kind == "exact" and hit.similarity is None
        assert hit.payload == {"text": "Twenty-five days [1].", "citations": [1]}
        cache.lookup(conn, exact=key(), semantic=None)
        # Another question, model or parameter set is another request.
        assert cache.lookup(conn, exact=key("Q2"), semantic=None) is None
        assert cache.lookup(conn, exact=key(model="large"), semantic=None) is None
        other_params = exact_key(
            model="small", prompt_version="answer@1", messages=MESSAGES, params={"max_tokens": 9}
        )
        assert other_params != key() and cache.lookup(conn, exact=other_params, semantic=None) is None
        assert rows(conn) == [(key(), 2)]
        # Switched off: no hit, nothing stored.
        off = AnswerCache(CacheSettings(enabled=False))
        assert off.lookup(conn, exact=key(), semantic=None) is None
        off.store(conn, exact=key("Q3"), semantic=None, payload={})
        assert len(rows(conn)) == 1


def test_an_entry_expires_after_its_ttl_and_purge_deletes_it(db_url):
    cache = AnswerCache(CacheSettings(ttl_seconds=0.5))
    with Database(db_url) as db, db.connection() as conn:
        cache.store(conn, exact=key(), semantic=None, payload={"text": "x"})
        time.sleep(1.0)
        assert cache.lookup(conn, exact=key(), semantic=None) is None
        # A store of the expired key replaces the row (fresh TTL, hits from 0) instead of adding one.
        cache.store(conn, exact=key(), semantic=None, payload={"text": "y"})
        assert cache.lookup(conn, exact=key(), semantic=None).payload == {"text": "y"}
        assert rows(conn) == [(key(), 1)]
        time.sleep(1.0)
        cache.store(conn, exact=key("Q2"), semantic=None, payload={"text": "z"})
        assert cache.purge(conn) == 1
        assert rows(conn) == [(key("Q2"), 0)]


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    question, paraphrase, allowed, opposite = local_embedder().embed(
        [QUESTION, PARAPHRASE, ALLOWED, OPPOSITE]
    )
    return {"question": question, "paraphrase": paraphrase, "allowed": allowed, "opposite": opposite}


def test_semantic_hit_on_a_paraphrase_and_miss_on_the_opposite_ask(db_url, vectors):
    shipped = CacheSettings(semantic=True)
    cache = AnswerCache(shipped)
    with Database(db_url) as db, db.connection() as conn:
        cache.store(conn, exact=key(QUESTION), semantic=semantic(vectors["question"]), payload={"text": "25"})
        hit = cache.lookup(conn, exact=key(PARAPHRASE), semantic=semantic(vectors["paraphrase"]))
        assert hit is not None and hit.kind == "semantic" and hit.payload == {"text": "25"}
        assert shipped.semantic_threshold <= hit.similarity < 1
        # Same topic, the opposite ask: below the shipped threshold although nearly every word is shared.
        cache.store(conn, exact=key(ALLOWED), semantic=semantic(vectors["allowed"]), payload={"text": "aup"})
        assert cache.lookup(conn, exact=key(OPPOSITE), semantic=semantic(vectors["opposite"])) is None
        # The paraphrase over another retrieved context, with another model, or with semantic off.
        other = context_key([("handbook:benefits.md#1", "b" * 64)])
        assert (
            cache.lookup(conn, exact=key(PARAPHRASE), semantic=semantic(vectors["paraphrase"], other)) is None
        )
        other_model = SemanticKey("large", "answer@1", params_hash(PARAMS), CONTEXT, vectors["paraphrase"])
        assert cache.lookup(conn, exact=key(PARAPHRASE), semantic=other_model) is None
        exact_only = AnswerCache(CacheSettings())
        assert (
            exact_only.lookup(conn, exact=key(PARAPHRASE), semantic=semantic(vectors["paraphrase"])) is None
        )
        # A vector of another dimension (another embedding model) is never compared.
        assert (
            cache.lookup(conn, exact=key(PARAPHRASE), semantic=semantic(vectors["paraphrase"][:100])) is None
        )
        assert rows(conn) == [(key(QUESTION), 1), (key(ALLOWED), 0)]


def test_concurrent_stores_of_one_request_keep_one_row(db_url):
    cache = AnswerCache(CacheSettings())
    writers = 8
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def store(i: int) -> None:
        try:
            with Database(db_url, max_size=1) as db, db.connection() as conn:
                barrier.wait()
                cache.store(conn, exact=key(), semantic=None, payload={"writer": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=store, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Database(db_url) as db, db.connection() as conn:
        assert len(rows(conn)) == 1
        assert cache.lookup(conn, exact=key(), semantic=None) is not None


def test_max_entries_keeps_the_most_recently_used(db_url):
    cache = AnswerCache(CacheSettings(max_entries=2))
    with Database(db_url) as db, db.connection() as conn:
        cache.store(conn, exact=key("Q1"), semantic=None, payload={})
        cache.store(conn, exact=key("Q2"), semantic=None, payload={})
        assert cache.lookup(conn, exact=key("Q1"), semantic=None) is not None  # Q1 is now the most recent
        cache.store(conn, exact=key("Q3"), semantic=None, payload={})
        assert {k for k, _ in rows(conn)} == {key("Q1"), key("Q3")}


def test_a_republish_invalidates_entries_built_on_the_old_data(project, db_url):
    settings = project({"handbook": ["handbook/paid-time-off.md", "handbook/benefits.md"]})
    run(settings, quality=False)
    cache = AnswerCache(CacheSettings())
    with Database(db_url) as db, db.connection() as conn:
        cache.store(conn, exact=key(), semantic=None, payload={"text": "before"})
        assert cache.lookup(conn, exact=key(), semantic=None) is not None
        path = settings.source("handbook").root / "paid-time-off.md"
        path.write_text(path.read_text() + "\n\n## Leave for jury duty\n\nJury duty is paid leave.\n")
        run(settings, quality=False)
        generation = conn.execute(
            "SELECT generation FROM ragline.published_generations WHERE source = 'handbook'"
        ).fetchone()[0]
        assert generation == 2
        assert cache.lookup(conn, exact=key(), semantic=None) is None
        cache.store(conn, exact=key("Q2"), semantic=None, payload={"text": "after"})
        assert cache.purge(conn) == 1  # the entry built on generation 1; the new one stays
        assert rows(conn) == [(key("Q2"), 0)]
        # Storing the invalidated request again gives it a fresh row on the new data.
        cache.store(conn, exact=key(), semantic=None, payload={"text": "again"})
        assert cache.lookup(conn, exact=key(), semantic=None).payload == {"text": "again"}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"ttl": 5}, r"cache: unknown keys \['ttl'\]"),
        ({"semantic_threshold": 1.5}, r"cache.semantic_threshold must be a cosine similarity"),
        ({"ttl_seconds": 0}, r"cache.ttl_seconds must be greater than 0"),
        ({"semantic": "yes"}, r"cache.semantic must be true or false, got 'yes'"),
        ({"max_entries": 0}, r"cache.max_entries must be a whole number"),
    ],
)
def test_bad_cache_config_is_a_clear_error(tmp_path: Path, block, message):
    path = tmp_path / "ragline.yaml"
    path.write_text(yaml.safe_dump({"sources": [{"name": "docs", "root": "."}], "cache": block}))
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_cache_config_defaults_and_values(tmp_path: Path):
    path = tmp_path / "ragline.yaml"
    path.write_text(yaml.safe_dump({"sources": [{"name": "docs", "root": "."}]}))
    assert load_settings(path).cache == CacheSettings()
    path.write_text(
        yaml.safe_dump(
            {"sources": [{"name": "docs", "root": "."}], "cache": {"semantic": True, "ttl_seconds": 60}}
        )
    )
    cache = load_settings(path).cache
    assert (
        cache.semantic
        and cache.ttl_seconds == 60
        and cache.semantic_threshold == CacheSettings().semantic_threshold
    )
