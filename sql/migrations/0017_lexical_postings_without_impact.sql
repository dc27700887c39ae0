-- BM25 postings without the impact order (issue 9). Migration 0004 indexed every posting twice: by
-- (set, term, text), which the served search reads (bm25_top_texts.sql scores every posting of the
-- query's terms, ExhaustiveBm25) along with the exhaustive reference and deletes, and by (set, term,
-- impact desc, text) for the threshold search (PostgresBm25), which was measured slower than scoring
-- everything on real text and never served. That second index made each publish insert every
-- posting into a btree out of its order: 2,753,621 postings of a 46k-text build took 15.3 s into
-- the table and both indexes, 7.3 s into the table and its key alone (the same rows, one server).
-- It goes, with the column it ordered by, the function that computed it and the search that read it.
-- The insert trigger is 0016's without the impact, and with two cheaper steps for a large publish:
-- the lexemes a set lacks are found among the new texts' distinct lexemes (4.3 -> 1.7 s for 46k
-- texts; 0016 anti-joined every (text, lexeme) pair and sorted all 2.75M on disk), and postings are
-- sorted by (term, text) without the set's name in the key.
DROP INDEX ragline.lexical_postings_by_impact;
ALTER TABLE ragline.lexical_postings DROP COLUMN impact;

CREATE OR REPLACE FUNCTION ragline.index_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM new_rows) THEN
        RETURN NULL;
    END IF;
    IF to_regclass('pg_temp.ragline_lexical_new_texts') IS NULL THEN
        CREATE TEMPORARY TABLE ragline_lexical_new_texts (
            ord       bigint   NOT NULL,
            chunk_set text     NOT NULL,
            text_hash text     NOT NULL,
            tsv       tsvector NOT NULL
        ) ON COMMIT DELETE ROWS;
    END IF;
    INSERT INTO pg_temp.ragline_lexical_new_texts (ord, chunk_set, text_hash, tsv)
    SELECT row_number() OVER (), chunk_set, text_hash, to_tsvector('english', text) FROM new_rows;
    -- Temporary tables get no autovacuum, and the plans need estimates of every column: analysed
    -- without tsv (its width unknown), a first publish of 46k texts into a new set on a database
    -- with statistics did not finish in 2 minutes (37 s with them).
    ANALYZE pg_temp.ragline_lexical_new_texts;
    -- Only lexemes the set lacks: ON CONFLICT alone would use up an identity value for every
    -- known lexeme of every publish, and the integer ids would run out. In lexeme order, so two
    -- writers meet in one order. The new texts' distinct lexemes first, then the ones the set
    -- lacks: 0016 tested each of a publish's 2.75M (text, lexeme) pairs and sorted them all.
    INSERT INTO ragline.lexical_lexemes (chunk_set, lexeme)
    SELECT d.chunk_set, d.lexeme
    FROM (
        SELECT DISTINCT n.chunk_set, t.lexeme
        FROM pg_temp.ragline_lexical_new_texts n CROSS JOIN LATERAL unnest(n.tsv) t
    ) d
    WHERE NOT EXISTS (
        SELECT 1 FROM ragline.lexical_lexemes l WHERE l.chunk_set = d.chunk_set AND l.lexeme = d.lexeme
    )
    ORDER BY 1, 2
    ON CONFLICT (chunk_set, lexeme) DO NOTHING;
    WITH terms AS (
        SELECT n.ord, l.term_id, cardinality(t.positions) AS tf
        FROM pg_temp.ragline_lexical_new_texts n
        CROSS JOIN LATERAL unnest(n.tsv) t
        JOIN ragline.lexical_lexemes l ON l.chunk_set = n.chunk_set AND l.lexeme = t.lexeme
    ), grouped AS (
        SELECT ord, sum(tf)::integer AS doc_length, array_agg(term_id ORDER BY term_id) AS term_ids
        FROM terms GROUP BY ord
    ), texts AS (
        INSERT INTO ragline.lexical_texts (chunk_set, text_hash, doc_length, term_ids)
        SELECT n.chunk_set, n.text_hash, coalesce(g.doc_length, 0), coalesce(g.term_ids, '{}')
        FROM pg_temp.ragline_lexical_new_texts n LEFT JOIN grouped g USING (ord)
        RETURNING chunk_set, text_hash, text_id, doc_length
    ), numbered AS (
        SELECT n.ord, x.chunk_set, x.text_id, x.doc_length
        FROM texts x JOIN pg_temp.ragline_lexical_new_texts n USING (chunk_set, text_hash)
    ), postings AS (
        INSERT INTO ragline.lexical_postings (chunk_set, term_id, text_id, tf, doc_length)
        SELECT x.chunk_set, t.term_id, x.text_id, t.tf, x.doc_length
        FROM terms t JOIN numbered x USING (ord)
        -- The key's order without its chunk_set column: a term id belongs to one set, so within a set
        -- this is (set, term, text) order, and the sort compares no strings.
        ORDER BY t.term_id, x.text_id
        RETURNING chunk_set, term_id, tf
    ), frequencies AS (
        INSERT INTO ragline.lexical_term_deltas (chunk_set, term_id, df, max_tf)
        SELECT chunk_set, term_id, count(*), max(tf) FROM postings GROUP BY chunk_set, term_id
    )
    INSERT INTO ragline.lexical_stat_deltas (chunk_set, texts, total_length)
    SELECT chunk_set, count(*), coalesce(sum(doc_length), 0) FROM texts GROUP BY chunk_set;
    TRUNCATE pg_temp.ragline_lexical_new_texts;
    RETURN NULL;
END
$$;

DROP FUNCTION ragline.bm25_impact(integer, integer);
