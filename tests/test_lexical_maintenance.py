"""BM25 maintenance on publish: removing texts reads only their own postings (by primary key), with
no sequential scan of postings or lexemes, with or without statistics of the freshly loaded rows."""

from __future__ import annotations

import psycopg

from tests.test_bm25 import add_texts, real_texts

READS = """
SELECT pg_stat_get_xact_numscans('ragline.lexical_postings'::regclass),
       pg_stat_get_xact_numscans('ragline.lexical_lexemes'::regclass),
       pg_stat_get_xact_tuples_returned('ragline.lexical_postings_pkey'::regclass)
"""


def test_removing_texts_reads_only_their_postings(db_url: str) -> None:
    texts = real_texts(300)
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_texts(conn, "default", texts)
        # No ANALYZE: a publish removes texts right after loading them (an edit rerun), when the
        # planner knows nothing of the new rows.
        total = conn.execute("SELECT count(*) FROM ragline.lexical_postings").fetchone()[0]
        for removed in (5, 250):
            if removed == 250:
                # With statistics, a bulk removal was a hash join over every posting of the set.
                conn.execute(
                    "ANALYZE ragline.lexical_postings, ragline.lexical_texts, ragline.lexical_lexemes"
                )
            with conn.transaction():
                postings = conn.execute(
                    "SELECT count(*) FROM ragline.lexical_postings p JOIN ragline.lexical_texts x "
                    "USING (chunk_set, text_id) WHERE x.text_hash IN (SELECT text_hash FROM "
                    "ragline.indexed_texts ORDER BY text_hash LIMIT %s)",
                    (removed,),
                ).fetchone()[0]
                before = conn.execute(READS).fetchone()
                conn.execute(
                    "DELETE FROM ragline.indexed_texts WHERE text_hash IN "
                    "(SELECT text_hash FROM ragline.indexed_texts ORDER BY text_hash LIMIT %s)",
                    (removed,),
                )
                after = conn.execute(READS).fetchone()
            seq_postings, seq_lexemes, index_reads = (a - b for a, b in zip(after, before, strict=True))
            assert postings > 0
            assert (seq_postings, seq_lexemes) == (0, 0), removed
            assert index_reads == postings, removed  # no posting of a text that stays is read
            total -= postings
            assert conn.execute("SELECT count(*) FROM ragline.lexical_postings").fetchone()[0] == total
