"""Exact BM25: the served one-statement search returns exhaustive BM25's top k (same scores; texts
differ only where scores tie up to float rounding) on real text, through publishes and unpublishes,
under any k1/b; writers of different chunk sets do not wait for each other; the stored index is
what the texts tokenize to."""

from __future__ import annotations

import hashlib
import random
import re
import sysconfig
from pathlib import Path

import psycopg
import pytest

from ragline.retrieval.bm25 import ExhaustiveBm25, bm25_extensions, exhaustive_top_texts

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


def real_texts(limit: int, *, skip: int = 0) -> list[str]:
    """Paragraph-sized texts from the installed packages' descriptions (PyPI METADATA), in a fixed
    order: real vocabulary, real term frequencies, no text written for this test."""
    texts: list[str] = []
    for path in sorted(SITE_PACKAGES.glob("*.dist-info/METADATA")):
        body = path.read_text(encoding="utf-8", errors="replace").partition("\n\n")[2]
        chunk = ""
        for paragraph in re.split(r"\n\s*\n", body):
            chunk = f"{chunk}\n\n{paragraph}" if chunk else paragraph
            if len(chunk) >= 600:
                if len(chunk.split()) >= 20:
                    texts.append(chunk[:3000])
                chunk = ""
        if len(texts) >= limit + skip:
            break
    return texts[skip : skip + limit]


def add_texts(conn: psycopg.Connection, chunk_set: str, texts: list[str]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(chunk_set, hashlib.sha256(t.encode()).hexdigest(), t.replace("\x00", "")) for t in texts],
        )


def random_queries(texts: list[str], count: int, seed: int) -> list[str]:
    """Queries of 1-40 words drawn from the corpus (rare and common words alike), some with a word
    repeated and some with words no text has."""
    rng = random.Random(seed)
    words = [w for t in texts for w in re.findall(r"[A-Za-z][A-Za-z0-9_-]+", t)]
    vocabulary = sorted(set(words))
    queries = []
    for i in range(count):
        size = rng.choice([1, 2, 3, 5, 8, 11, 15, 25, 40])
        picked = [rng.choice(words) if rng.random() < 0.6 else rng.choice(vocabulary) for _ in range(size)]
        if i % 5 == 1:
            picked += picked[:2]  # a repeated word counts once, as in exhaustive BM25
        if i % 7 == 2:
            picked.append("zyxwvutsrq")  # in no text
        queries.append(" ".join(picked))
    return queries


def same_up_to_float_ties(got, want, eps: float = 1e-9) -> bool:
    """The same ranking, where texts whose scores are within eps of each other count as tied."""
    if len(got) != len(want):
        return False
    cut = want[-1].score if want else 0.0
    for g, w in zip(got, want, strict=True):
        if g.text_hash == w.text_hash:
            continue
        # A different text here must tie with the reference's text here.
        tied = [t.text_hash for t in want if abs(t.score - w.score) <= eps]
        if abs(g.score - w.score) > eps or (g.text_hash not in tied and abs(g.score - cut) > eps):
            return False
    return True


def assert_exact(
    conn: psycopg.Connection,
    chunk_set: str,
    queries: list[str],
    *,
    k1=1.2,
    b=0.75,
    ks=(1, 10, 40),
) -> int:
    """Every query's top k equals exhaustive BM25's up to float ties, for several k; returns how many
    were compared."""
    served = ExhaustiveBm25()
    compared = 0
    for q in queries:
        for k in ks:
            got = served.top_texts(conn, chunk_set, q, k, k1=k1, b=b)
            want = exhaustive_top_texts(conn, chunk_set, q, k, k1=k1, b=b)
            assert [t.score for t in got.texts] == pytest.approx(
                [t.score for t in want.texts], rel=0, abs=1e-9
            )
            # Unordered sums: texts whose scores differ only in the last bits may trade places (and
            # one may take the other's place at the cut); every other text is where the reference
            # has it.
            assert same_up_to_float_ties(got.texts, want.texts), (q, k)
            compared += 1
    return compared


@pytest.fixture
def corpus(db_url: str) -> tuple[str, list[str]]:
    texts = real_texts(400)
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_texts(conn, "default", texts)
        conn.execute("VACUUM (ANALYZE) ragline.lexical_postings")
    return db_url, texts


def test_top_k_equals_exhaustive_bm25_on_real_text(corpus):
    url, texts = corpus
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ragline.lexical_texts").fetchone()[0] == len(texts) == 400
        # The one-statement search lexical search serves (unordered sums, WITH TIES at the cut).
        assert assert_exact(conn, "default", random_queries(texts, 40, seed=1)) == 120
        served = ExhaustiveBm25()
        assert len(served.top_texts(conn, "default", texts[3], None, k1=1.2, b=0.75).texts) == len(
            exhaustive_top_texts(conn, "default", texts[3], None, k1=1.2, b=0.75).texts
        )


def test_still_exact_after_texts_leave_and_arrive_and_under_other_k1_b(corpus):
    url, texts = corpus
    with psycopg.connect(url, autocommit=True) as conn:
        before = conn.execute("SELECT texts, total_length FROM ragline.lexical_stats").fetchone()
        # Unpublish a third (the short ones first, so avgdl moves), publish new texts.
        gone = sorted(texts, key=len)[:130]
        conn.execute(
            "DELETE FROM ragline.indexed_texts WHERE text_hash = ANY(%s)",
            ([hashlib.sha256(t.encode()).hexdigest() for t in gone],),
        )
        add_texts(conn, "default", real_texts(150, skip=400))
        after = conn.execute("SELECT texts, total_length FROM ragline.lexical_stats").fetchone()
        # Known lexemes use up no term id (ON CONFLICT alone took one per known lexeme per insert).
        ids, lexemes = conn.execute("SELECT max(term_id), count(*) FROM ragline.lexical_lexemes").fetchone()
        assert ids == lexemes
        served = conn.execute("SELECT count(*) FROM ragline.indexed_texts").fetchone()[0]
        assert after[0] == served > 400 and after[1] / after[0] != before[1] / before[0]
        live = [t for t in texts if t not in gone] + real_texts(150, skip=400)
        assert_exact(conn, "default", random_queries(live, 12, seed=2))
        for k1, b in ((0.5, 0.3), (2.5, 1.0), (1.2, 0.0)):
            assert_exact(conn, "default", random_queries(live, 6, seed=3), k1=k1, b=b, ks=(1, 40))
        # Folding the delta rows changes no statistic and no result.
        deltas = conn.execute("SELECT count(*) FROM ragline.lexical_term_deltas").fetchone()[0]
        conn.execute("SELECT ragline.compact_lexical_deltas()")
        assert conn.execute("SELECT count(*) FROM ragline.lexical_term_deltas").fetchone()[0] < deltas
        assert conn.execute("SELECT texts, total_length FROM ragline.lexical_stats").fetchone() == after
        assert_exact(conn, "default", random_queries(live, 6, seed=4), ks=(10,))


def test_writers_of_two_chunk_sets_do_not_wait_for_each_other(db_url):
    texts = real_texts(60)
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        # Both transactions stay open while the other writes: any shared lock or counter row would
        # make the second wait (and fail on its lock_timeout).
        second.execute("SET lock_timeout = '3s'")
        first.execute("SET lock_timeout = '3s'")
        add_texts(first, "default", texts[:30])
        add_texts(second, "variant-a", texts[25:])
        add_texts(first, "default", texts[30:35])
        first.execute(
            "DELETE FROM ragline.indexed_texts WHERE chunk_set = 'default' AND text_hash = %s",
            (hashlib.sha256(texts[0].encode()).hexdigest(),),
        )
        second.commit()
        first.commit()
    with psycopg.connect(db_url, autocommit=True) as conn:
        stats = dict(conn.execute("SELECT chunk_set, texts FROM ragline.lexical_stats").fetchall())
        assert stats == {"default": 34, "variant-a": 35}
        queries = random_queries(texts, 6, seed=5)
        assert_exact(conn, "default", queries, ks=(10,))
        assert_exact(conn, "variant-a", queries, ks=(10,))


def test_bm25_extensions_are_detected_not_assumed(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        found = bm25_extensions(conn)
    # The embedded server ships none; what a server offers is reported with its versions.
    assert all(e.name in ("pg_search", "pg_textsearch", "vchord_bm25") for e in found)
    assert all(e.installed_version is None for e in found)


_INDEX_FROM_TEXT = """
-- What the BM25 tables must hold for a chunk set, derived from its texts alone.
WITH tokens AS (
    SELECT i.text_hash, t.lexeme, cardinality(t.positions) AS tf
    FROM ragline.indexed_texts i CROSS JOIN LATERAL unnest(to_tsvector('english', i.text)) t
    WHERE i.chunk_set = %(set)s
), lengths AS (
    SELECT i.text_hash, coalesce(sum(k.tf), 0)::integer AS doc_length
    FROM ragline.indexed_texts i LEFT JOIN tokens k USING (text_hash)
    WHERE i.chunk_set = %(set)s GROUP BY i.text_hash
)
SELECT k.text_hash, k.lexeme, k.tf, n.doc_length
FROM tokens k JOIN lengths n USING (text_hash)
"""

_INDEX_AS_STORED = """
SELECT x.text_hash, l.lexeme, p.tf, p.doc_length
FROM ragline.lexical_postings p
JOIN ragline.lexical_texts x ON x.chunk_set = p.chunk_set AND x.text_id = p.text_id
JOIN ragline.lexical_lexemes l ON l.chunk_set = p.chunk_set AND l.term_id = p.term_id
WHERE p.chunk_set = %(set)s
"""


def assert_index_is_what_the_texts_tokenize_to(conn: psycopg.Connection, chunk_set: str) -> int:
    """The set's postings, text lengths, term lists, df/max_tf deltas and totals equal a derivation
    from its texts alone; returns the number of texts."""
    params = {"set": chunk_set}
    want = sorted(conn.execute(_INDEX_FROM_TEXT, params).fetchall())
    assert sorted(conn.execute(_INDEX_AS_STORED, params).fetchall()) == want
    # A text without a lexeme (only stop words, say) has no posting and length 0.
    served = conn.execute("SELECT text_hash FROM ragline.indexed_texts WHERE chunk_set = %(set)s", params)
    lengths = dict.fromkeys((h for (h,) in served), 0)
    terms_of: dict[str, list[str]] = {h: [] for h in lengths}
    for text_hash, lexeme, _tf, doc_length in want:
        lengths[text_hash] = doc_length
        terms_of[text_hash].append(lexeme)
    stored = conn.execute(
        "SELECT x.text_hash, x.doc_length, "
        "  (SELECT array_agg(l.lexeme ORDER BY l.term_id) FROM unnest(x.term_ids) AS t(id) "
        "   JOIN ragline.lexical_lexemes l ON l.chunk_set = x.chunk_set AND l.term_id = t.id), "
        "  x.term_ids = (SELECT array_agg(id ORDER BY id) FROM unnest(x.term_ids) AS t(id)) "
        "FROM ragline.lexical_texts x WHERE x.chunk_set = %(set)s",
        params,
    ).fetchall()
    assert len(stored) == len(lengths) and {h: n for h, n, _, _ in stored} == lengths
    assert {h: sorted(terms or []) for h, _, terms, _ in stored} == {
        h: sorted(ls) for h, ls in terms_of.items()
    }
    assert all(ordered is not False for *_, ordered in stored)  # term ids in ascending order
    df = conn.execute(
        "SELECT l.lexeme, sum(d.df)::integer, max(d.max_tf) FROM ragline.lexical_term_deltas d "
        "JOIN ragline.lexical_lexemes l USING (chunk_set, term_id) WHERE d.chunk_set = %(set)s "
        "GROUP BY l.lexeme",
        params,
    ).fetchall()
    want_df: dict[str, tuple[int, int]] = {}
    for _h, lexeme, tf, *_ in want:
        n, top = want_df.get(lexeme, (0, 0))
        want_df[lexeme] = (n + 1, max(top, tf))
    assert {lexeme: (n, top) for lexeme, n, top in df} == want_df
    assert conn.execute(
        "SELECT texts, total_length FROM ragline.lexical_stats WHERE chunk_set = %(set)s", params
    ).fetchone() == (len(lengths), sum(lengths.values()))
    return len(lengths)


def test_the_stored_postings_are_what_the_texts_tokenize_to(corpus):
    """The insert trigger's postings, text lengths, term lists and df/total deltas equal a
    derivation from the texts alone, through a publish of new texts into a set that has some."""
    url, texts = corpus
    with psycopg.connect(url, autocommit=True) as conn:
        add_texts(conn, "default", real_texts(120, skip=380))  # 20 known texts, 100 new ones
        assert len(conn.execute(_INDEX_FROM_TEXT, {"set": "default"}).fetchall()) > 20_000
        assert assert_index_is_what_the_texts_tokenize_to(conn, "default") == 500


_INSERT_ROWS = (
    "INSERT INTO ragline.indexed_texts (chunk_set, text_hash, text) "
    "SELECT s, h, t FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(s, h, t) ON CONFLICT DO NOTHING"
)


def insert_rows(conn: psycopg.Connection, rows: list[tuple[str, str]]) -> None:
    """(chunk set, text) rows in one INSERT statement: one firing of the trigger for all of them."""
    sets = [s for s, _ in rows]
    texts = [t.replace("\x00", "") for _, t in rows]
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    conn.execute(_INSERT_ROWS, (sets, hashes, texts))


def test_several_inserts_in_one_transaction_each_index_their_texts(db_url):
    """The insert trigger keeps the new texts' tokens in the session's temporary table for the
    statement. Inserts of many rows at once, of two chunk sets in one statement, of texts without
    a lexeme, of no rows, after a transaction that made the table was rolled back, after a firing
    that failed inside the trigger was rolled back to its savepoint, several in one transaction,
    and after DISCARD TEMP, each index exactly their texts: the stored index is what the texts
    tokenize to, set by set."""
    first, second = real_texts(60), real_texts(60, skip=40)  # 20 texts in both: already there
    stop_words = ["", "the and of", "   "]
    made = "SELECT to_regclass('pg_temp.ragline_lexical_new_texts')"
    with psycopg.connect(db_url) as conn:
        # First in the session: the temporary table is made, and undone with the transaction.
        with pytest.raises(RuntimeError), conn.transaction():
            insert_rows(conn, [("default", t) for t in real_texts(5, skip=200)])
            assert conn.execute(made).fetchone()[0]
            raise RuntimeError("roll the transaction back")
        assert conn.execute(made).fetchone()[0] is None
        insert_rows(conn, [("default", t) for t in first + stop_words] + [("variant", t) for t in first[:30]])
        # A firing that fails inside the trigger, after the new texts went into the table: the
        # "third" set already has a lexical row for one of them (as if written behind its back).
        clash = real_texts(1, skip=250)[0]
        conn.execute(
            "INSERT INTO ragline.lexical_texts (chunk_set, text_hash, doc_length) VALUES ('third', %s, 1)",
            (hashlib.sha256(clash.encode()).hexdigest(),),
        )
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            insert_rows(conn, [("third", t) for t in real_texts(5, skip=246)])
        insert_rows(conn, [("default", t) for t in second] + [("variant", t) for t in second[-30:]])
        insert_rows(conn, [])
        assert conn.execute("SELECT count(*) FROM pg_temp.ragline_lexical_new_texts").fetchone()[0] == 0
        conn.commit()
        conn.execute("DISCARD TEMP")  # as a connection pooler does between clients
        insert_rows(conn, [("default", t) for t in real_texts(5, skip=300)])
        conn.commit()
        assert assert_index_is_what_the_texts_tokenize_to(conn, "default") == 100 + 3 + 5
        assert assert_index_is_what_the_texts_tokenize_to(conn, "variant") == 60
        assert (
            conn.execute("SELECT count(*) FROM ragline.indexed_texts WHERE chunk_set = 'third'").fetchone()[0]
            == 0
        )
        # Each text without a lexeme is stored with length 0 and no terms.
        assert conn.execute(
            "SELECT count(*) FROM ragline.lexical_texts "
            "WHERE chunk_set IN ('default', 'variant') AND doc_length = 0 AND term_ids = '{}'"
        ).fetchone()[0] == len(stop_words)
