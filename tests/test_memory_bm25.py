"""BM25 from memory (lexical_index: memory): the same top k as the exhaustive reference, to the bit,
on real text; a changed chunk set is reloaded, with SQL answering until the new copy is ready."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace

import psycopg
import pytest

from ragline.config import ConfigError
from ragline.evaluation.eval_sets import load_golden
from ragline.retrieval.bm25 import Bm25Result, exhaustive_top_texts
from ragline.retrieval.memory_bm25 import MemoryBm25, memory_bm25
from ragline.retrieval.search import build_retriever
from ragline.storage.db import Database
from ragline.types import DatabaseError, Filters
from tests.conftest import REPO, local_embedder, write_project
from tests.test_bm25 import add_texts, random_queries, real_texts


def assert_bitwise_equal(
    conn: psycopg.Connection,
    backend: MemoryBm25,
    chunk_set: str,
    queries: list[str],
    *,
    k1: float = 1.2,
    b: float = 0.75,
    ks: tuple[int | None, ...] = (1, 10, 40, None),
) -> int:
    """Each query's top k from memory equals the reference's: same texts, same order, same bits."""
    compared = 0
    for q in queries:
        for k in ks:
            got = backend.top_texts(conn, chunk_set, q, k, k1=k1, b=b)
            want = exhaustive_top_texts(conn, chunk_set, q, k, k1=k1, b=b)
            pairs = [(t.text_hash, t.score) for t in got.texts]
            assert pairs == [(t.text_hash, t.score) for t in want.texts], (q, k)
            compared += 1
    return compared


def wait_for_reload(backend: MemoryBm25, chunk_set: str, version: str) -> None:
    """Waits (up to 60 s) for the background reload of a chunk set to hold the given version."""
    deadline = time.monotonic() + 60
    while (index := backend.index(chunk_set)) is None or index.version != version:
        assert time.monotonic() < deadline, "the in-memory index was not reloaded"
        time.sleep(0.05)


def version(conn: psycopg.Connection, chunk_set: str) -> str:
    return conn.execute(
        "SELECT md5(coalesce(string_agg(xmin::text || ':' || texts || ':' || total_length, ',' "
        "ORDER BY xmin::text::bigint, texts, total_length), '')) "
        "FROM ragline.lexical_stat_deltas WHERE chunk_set = %s",
        (chunk_set,),
    ).fetchone()[0]


@pytest.fixture
def corpus(db_url: str):
    texts = real_texts(400)
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_texts(conn, "default", texts)
        add_texts(conn, "variant-a", texts[::3])
    with Database(db_url, max_size=2) as db:
        yield db, texts


def test_memory_bm25_is_the_exhaustive_reference_to_the_bit(corpus):
    db, texts = corpus
    backend = memory_bm25(db)
    assert memory_bm25(db) is backend  # one copy per Database, whatever the number of Retrievers
    queries = random_queries(texts, 40, seed=11)
    assert max(len(q.split()) for q in queries) >= 40  # long queries too
    with db.connection() as conn:
        assert assert_bitwise_equal(conn, backend, "default", queries) == 160
        assert assert_bitwise_equal(conn, backend, "variant-a", queries[:10], ks=(10,)) == 10
        for k1, b in ((0.5, 0.3), (2.5, 1.0), (1.2, 0.0)):
            assert_bitwise_equal(conn, backend, "default", queries[:8], k1=k1, b=b, ks=(10,))
        # No lexeme of the query in the set: nothing, as in SQL.
        assert backend.top_texts(conn, "default", "zyxwvutsrq", 10, k1=1.2, b=0.75).texts == []
        assert backend.top_texts(conn, "nothing-here", "apple", 10, k1=1.2, b=0.75).texts == []
    # Every one of these was scored in memory, none fell back to SQL.
    assert backend.counts["sql"] == 0 and backend.counts["memory"] == 160 + 10 + 24 + 2
    index = backend.index("default")
    with db.connection() as conn:
        postings = conn.execute("SELECT count(*) FROM ragline.lexical_postings WHERE chunk_set = 'default'")
        assert index is not None and len(index.text_hash) == 400 and index.postings == postings.fetchone()[0]


def test_a_changed_chunk_set_is_reloaded_and_stays_exact(corpus):
    db, texts = corpus
    backend = MemoryBm25(db)
    queries = random_queries(texts, 12, seed=12)
    with db.connection() as conn:
        backend.warm("default")
        assert_bitwise_equal(conn, backend, "default", queries[:4], ks=(10,))
        loaded = backend.index("default")
        # A republish: a third of the texts leave (the short ones, so avgdl moves), new ones arrive.
        gone = sorted(texts, key=len)[:130]
        conn.execute(
            "DELETE FROM ragline.indexed_texts WHERE chunk_set = 'default' AND text_hash = ANY(%s)",
            ([hashlib.sha256(t.encode()).hexdigest() for t in gone],),
        )
        arrived = real_texts(150, skip=400)
        add_texts(conn, "default", arrived)
        now = version(conn, "default")
        assert now != loaded.version
        # The first search sees the change: SQL answers it (the current texts, never the old copy's)
        # while the new copy loads in the background.
        q = " ".join(arrived[0].split()[:12])
        first = backend.top_texts(conn, "default", q, 10, k1=1.2, b=0.75)
        assert (
            backend.counts["sql"] == 1
            and first.texts[0].text_hash == hashlib.sha256(arrived[0].encode()).hexdigest()
        )
        wait_for_reload(backend, "default", now)
        live = [t for t in texts if t not in gone] + arrived
        served = conn.execute("SELECT count(*) FROM ragline.indexed_texts WHERE chunk_set = 'default'")
        assert len(backend.index("default").text_hash) == served.fetchone()[0] > 400
        before = backend.counts["memory"]
        assert_bitwise_equal(conn, backend, "default", random_queries(live, 12, seed=13))
        assert backend.counts["memory"] == before + 48
        # Folding the delta rows changes the version (a reload) but no statistic and no result.
        conn.execute("SELECT ragline.compact_lexical_deltas()")
        backend.top_texts(conn, "default", q, 10, k1=1.2, b=0.75)
        wait_for_reload(backend, "default", version(conn, "default"))
        assert_bitwise_equal(conn, backend, "default", random_queries(live, 4, seed=14), ks=(10,))
        # Another set's change reloads nothing here.
        add_texts(conn, "variant-a", arrived[:5])
        assert backend.index("default").version == version(conn, "default")


def test_an_open_change_is_not_seen_until_it_commits(corpus, db_url):
    """A writer's uncommitted texts are in neither path's results; once committed, the next search
    finds them (SQL at once, memory after the reload): nothing unpublished is ever scored."""
    db, texts = corpus
    backend = MemoryBm25(db)
    extra = real_texts(20, skip=600)
    q = " ".join(extra[0].split()[:12])
    want = hashlib.sha256(extra[0].encode()).hexdigest()
    with db.connection() as conn, psycopg.connect(db_url) as writer:
        backend.warm("default")
        add_texts(writer, "default", extra)  # in an open transaction
        hits = backend.top_texts(conn, "default", q, 40, k1=1.2, b=0.75)
        assert want not in {t.text_hash for t in hits.texts} and backend.counts["sql"] == 0
        writer.commit()
        result: Bm25Result = backend.top_texts(conn, "default", q, 40, k1=1.2, b=0.75)
        assert result.texts[0].text_hash == want and backend.counts["sql"] == 1
        wait_for_reload(backend, "default", version(conn, "default"))
        # Memory again, and the reference to the bit (the SQL fallback's unordered sums may differ
        # from it in the last bits).
        assert assert_bitwise_equal(conn, backend, "default", [q], ks=(40,)) == 1
        assert backend.counts["sql"] == 1


class _Reference:
    """The exhaustive reference as a backend (the served SQL statement differs from it in last bits)."""

    name = "reference"

    def top_texts(self, conn, chunk_set, text, k, *, k1, b):
        return exhaustive_top_texts(conn, chunk_set, text, k, k1=k1, b=b)


def test_a_retriever_set_to_memory_serves_the_reference_ranking_with_filters(demo, tmp_path):
    settings = demo["settings"]
    settings = replace(settings, retrieval=replace(settings.retrieval, lexical_index="memory"))
    golden = load_golden(REPO / "examples/golden/questions.jsonl", "golden").questions[::2]
    filters = (None, Filters.of(sources=["support"]), Filters.of(metadata={"priority": "high"}))
    with Database(demo["url"], max_size=2) as db:
        memory = build_retriever(settings, db, local_embedder())
        reference = build_retriever(settings, db, local_embedder())
        reference.bm25 = _Reference()
        assert isinstance(memory.bm25, MemoryBm25)
        for q in golden:
            for k, f in [(10, None), (50, None), *((10, f) for f in filters[1:])]:
                for strategy in ("lexical", "hybrid"):
                    a = memory.search(q.question, k=k, strategy=strategy, filters=f, log=False)
                    b = reference.search(q.question, k=k, strategy=strategy, filters=f, log=False)
                    assert [(h.chunk_id, h.score) for h in a.hits] == [(h.chunk_id, h.score) for h in b.hits]
                    assert a.hits or f is not None, (q.question, k)
        assert memory.bm25.counts["sql"] == 0 and memory.bm25.counts["memory"] > 0
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError, match="lexical_index must be one of"):
        write_project(tmp_path, [{"name": "a", "root": "a"}], retrieval={"lexical_index": "disk"})


def test_a_failed_reload_leaves_sql_answering_retries_later_and_names_no_secret(corpus, caplog):
    db, texts = corpus
    backend = MemoryBm25(db)
    q = " ".join(texts[5].split()[:10])
    with db.connection() as conn:
        backend.warm("default")
        add_texts(conn, "default", real_texts(5, skip=700))
        # The reload's own connection goes to a server that is not there, with a password in its URL.
        backend._url = "postgresql://ragline:hunter2secret@/ragline?host=/nonexistent-socket-dir"
        want = exhaustive_top_texts(conn, "default", q, 10, k1=1.2, b=0.75).texts
        got = backend.top_texts(conn, "default", q, 10, k1=1.2, b=0.75).texts
        assert [t.text_hash for t in got] == [t.text_hash for t in want]
        deadline = time.monotonic() + 30
        while backend.counts["failed_loads"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Still stale: SQL answers, and no second load is tried before the retry interval.
        backend.top_texts(conn, "default", q, 10, k1=1.2, b=0.75)
        time.sleep(0.3)
        assert backend.counts == {"memory": 0, "sql": 2, "loads": 1, "failed_loads": 1}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "reloading the in-memory BM25 index of default failed" in logged
    assert "hunter2secret" not in logged


def test_a_failed_first_load_is_a_database_error_naming_no_secret(corpus):
    """The first search of a set whose load fails: DatabaseError (the API's 503, a server-side
    failure), not RetrievalError (the API's 422, which blames the request)."""
    db, texts = corpus
    backend = MemoryBm25(db)
    backend._url = "postgresql://ragline:hunter2secret@/ragline?host=/nonexistent-socket-dir"
    with db.connection() as conn, pytest.raises(DatabaseError) as raised:
        backend.top_texts(conn, "default", texts[0][:80], 10, k1=1.2, b=0.75)
    assert "loading the in-memory BM25 index of default failed" in str(raised.value)
    assert "hunter2secret" not in str(raised.value)


def test_nbytes_can_be_read_while_searches_replace_the_denominators(corpus):
    """nbytes (a server's /metrics) while other threads' searches with new (k1, b) clear the cached
    denominators: it never fails with 'dictionary changed size during iteration'."""
    import sys
    import threading

    db, _texts = corpus
    index = MemoryBm25(db).warm("default")
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            index._denominator(1.0 + (i % 9) / 10, 0.75)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(20_000):
            assert index.nbytes > 0
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(interval)


def test_the_denominator_cache_evicts_the_least_recently_used_pair(corpus):
    db, _texts = corpus
    index = MemoryBm25(db).warm("default")
    for pair in ((1.2, 0.75), (2.0, 0.5), (1.2, 0.75), (0.5, 0.3)):
        index._denominator(*pair)
    assert list(index._denominators) == [(1.2, 0.75), (0.5, 0.3)]


def test_threads_searching_one_index_with_mixed_k1_get_the_single_thread_results(corpus):
    """Four threads search one in-memory index at once, with three (k1, b) pairs that keep evicting
    each other's denominators: every result equals the single-thread one."""
    import threading

    db, texts = corpus
    backend = MemoryBm25(db)
    backend.warm("default")
    jobs = [(q, 1.2 + 0.4 * (i % 3), 0.75) for i, q in enumerate(random_queries(texts, 24, seed=5))]

    def search(job: tuple[str, float, float]) -> list:
        with db.connection() as conn:
            return backend.top_texts(conn, "default", job[0], 10, k1=job[1], b=job[2]).texts

    expected = [search(job) for job in jobs]
    got: dict[tuple[int, int], list] = {}
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(len(jobs)):
                n = (i + offset * 6) % len(jobs)
                got[(offset, n)] = search(jobs[n])
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(got) == 4 * len(jobs)
    assert all(texts_found == expected[n] for (_offset, n), texts_found in got.items())
    assert backend.counts["sql"] == 0
