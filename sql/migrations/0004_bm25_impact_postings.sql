-- BM25 that reads only what a query needs (ragline.retrieval.bm25). Lexemes and texts get integer
-- ids; each posting carries an impact (its BM25 weight under fixed reference parameters, an ORDER
-- only: k1, b and avgdl are query-time values) and is indexed twice: by (set, term, impact desc) to
-- read a term's best postings first, and by (set, term, text) to score a candidate exactly.
-- Document frequencies and set totals are delta rows that writers append and readers sum, so two
-- writers never wait for one another on a shared counter row; compact_lexical_deltas() folds them.

DROP TRIGGER indexed_texts_add_lexical ON ragline.indexed_texts;
DROP TRIGGER indexed_texts_drop_lexical ON ragline.indexed_texts;
DROP FUNCTION ragline.index_lexical_texts();
DROP FUNCTION ragline.unindex_lexical_texts();
ALTER TABLE ragline.lexical_texts RENAME TO lexical_texts_0003;
ALTER TABLE ragline.lexical_postings RENAME TO lexical_postings_0003;
ALTER TABLE ragline.lexical_terms RENAME TO lexical_terms_0003;
ALTER TABLE ragline.lexical_stats RENAME TO lexical_stats_0003;
ALTER INDEX ragline.lexical_texts_pkey RENAME TO lexical_texts_0003_pkey;
ALTER INDEX ragline.lexical_postings_pkey RENAME TO lexical_postings_0003_pkey;
ALTER INDEX ragline.lexical_terms_pkey RENAME TO lexical_terms_0003_pkey;
ALTER INDEX ragline.lexical_stats_pkey RENAME TO lexical_stats_0003_pkey;

-- A dictionary per chunk set: a writer adding a lexeme new to its set waits only for a writer of
-- the same set adding the same lexeme (writers of one set take turns anyway: publishes under the
-- publish lock, a variant's sync on its indexed_texts rows).
CREATE TABLE ragline.lexical_lexemes (
    chunk_set text    NOT NULL,
    lexeme    text    NOT NULL,
    term_id   integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    PRIMARY KEY (chunk_set, lexeme)
);

CREATE TABLE ragline.lexical_texts (
    chunk_set  text    NOT NULL,
    text_hash  text    NOT NULL,
    text_id    integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    doc_length integer NOT NULL,
    PRIMARY KEY (chunk_set, text_hash)
);

CREATE TABLE ragline.lexical_postings (
    chunk_set  text    NOT NULL,
    term_id    integer NOT NULL,
    text_id    integer NOT NULL,
    tf         integer NOT NULL,
    doc_length integer NOT NULL,
    impact     real    NOT NULL,
    PRIMARY KEY (chunk_set, term_id, text_id) INCLUDE (tf, doc_length)
);
CREATE INDEX lexical_postings_by_impact
    ON ragline.lexical_postings (chunk_set, term_id, impact DESC, text_id) INCLUDE (tf, doc_length);

-- Appended by writers (+df per new text, -df per removed one); a term's df is the sum of its rows,
-- and max_tf the largest tf any of its postings has had (an upper bound after removals).
CREATE TABLE ragline.lexical_term_deltas (
    chunk_set text    NOT NULL,
    term_id   integer NOT NULL,
    df        integer NOT NULL,
    max_tf    integer NOT NULL
);
CREATE INDEX lexical_term_deltas_by_term ON ragline.lexical_term_deltas (chunk_set, term_id) INCLUDE (df, max_tf);

CREATE TABLE ragline.lexical_stat_deltas (
    chunk_set    text   NOT NULL,
    texts        bigint NOT NULL,
    total_length bigint NOT NULL
);
CREATE INDEX lexical_stat_deltas_by_set ON ragline.lexical_stat_deltas (chunk_set) INCLUDE (texts, total_length);

-- The stored order of a term's postings: BM25's term weight at k1 = 1.2, b = 0.75, avgdl = 100
-- (ragline.retrieval.bm25 inverts it with the same constants to bound what was not read yet).
CREATE FUNCTION ragline.bm25_impact(tf integer, doc_length integer) RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (tf::float8 * 2.2 / (tf + 1.2 * (0.25 + 0.75 * doc_length::float8 / 100.0)))::real $$;

-- Okapi BM25's weight of one posting: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)),
-- idf = ln(1 + (N - df + 0.5) / (df + 0.5)). Every scoring statement calls this one expression, so
-- the exhaustive reference and the threshold search compute the same bits.
CREATE FUNCTION ragline.bm25_weight(
    n float8, df float8, tf integer, doc_length integer, k1 float8, b float8, avgdl float8
) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ln(1 + (n - df + 0.5) / (df + 0.5)) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_length / avgdl)) $$;

-- Backfill from the 0003 tables: search keeps working without a re-publish.
INSERT INTO ragline.lexical_lexemes (chunk_set, lexeme)
SELECT DISTINCT chunk_set, lexeme FROM ragline.lexical_postings_0003 ORDER BY 1, 2;
INSERT INTO ragline.lexical_texts (chunk_set, text_hash, doc_length)
SELECT chunk_set, text_hash, doc_length FROM ragline.lexical_texts_0003 ORDER BY chunk_set, text_hash;
INSERT INTO ragline.lexical_postings (chunk_set, term_id, text_id, tf, doc_length, impact)
SELECT p.chunk_set, l.term_id, x.text_id, p.tf, p.doc_length, ragline.bm25_impact(p.tf, p.doc_length)
FROM ragline.lexical_postings_0003 p
JOIN ragline.lexical_lexemes l ON l.chunk_set = p.chunk_set AND l.lexeme = p.lexeme
JOIN ragline.lexical_texts x ON x.chunk_set = p.chunk_set AND x.text_hash = p.text_hash;
INSERT INTO ragline.lexical_term_deltas (chunk_set, term_id, df, max_tf)
SELECT p.chunk_set, p.term_id, count(*), max(p.tf) FROM ragline.lexical_postings p GROUP BY p.chunk_set, p.term_id;
INSERT INTO ragline.lexical_stat_deltas (chunk_set, texts, total_length)
SELECT chunk_set, count(*), coalesce(sum(doc_length), 0) FROM ragline.lexical_texts GROUP BY chunk_set;
DROP TABLE ragline.lexical_postings_0003, ragline.lexical_texts_0003, ragline.lexical_terms_0003,
    ragline.lexical_stats_0003;

-- New texts of a set: lexemes first (their own statement, so that the next one sees ids another
-- writer committed meanwhile; in lexeme order, so two writers meet in one order), then texts,
-- postings and deltas in one statement. No lock and no shared counter row: writers of different
-- sets share no row at all.
CREATE FUNCTION ragline.index_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only lexemes the set lacks: ON CONFLICT alone would use up an identity value for every
    -- known lexeme of every publish, and the integer ids would run out.
    INSERT INTO ragline.lexical_lexemes (chunk_set, lexeme)
    SELECT DISTINCT n.chunk_set, t.lexeme
    FROM new_rows n CROSS JOIN LATERAL unnest(to_tsvector('english', n.text)) t
    WHERE NOT EXISTS (
        SELECT 1 FROM ragline.lexical_lexemes l WHERE l.chunk_set = n.chunk_set AND l.lexeme = t.lexeme
    )
    ORDER BY 1, 2
    ON CONFLICT (chunk_set, lexeme) DO NOTHING;
    WITH terms AS (
        SELECT n.chunk_set, n.text_hash, l.term_id, cardinality(t.positions) AS tf
        FROM new_rows n
        CROSS JOIN LATERAL unnest(to_tsvector('english', n.text)) t
        JOIN ragline.lexical_lexemes l ON l.chunk_set = n.chunk_set AND l.lexeme = t.lexeme
    ), texts AS (
        INSERT INTO ragline.lexical_texts (chunk_set, text_hash, doc_length)
        SELECT n.chunk_set, n.text_hash, coalesce(sum(t.tf), 0)::integer
        FROM new_rows n LEFT JOIN terms t USING (chunk_set, text_hash)
        GROUP BY n.chunk_set, n.text_hash
        RETURNING chunk_set, text_hash, text_id, doc_length
    ), postings AS (
        INSERT INTO ragline.lexical_postings (chunk_set, term_id, text_id, tf, doc_length, impact)
        SELECT t.chunk_set, t.term_id, x.text_id, t.tf, x.doc_length, ragline.bm25_impact(t.tf, x.doc_length)
        FROM terms t JOIN texts x USING (chunk_set, text_hash)
        RETURNING chunk_set, term_id, tf
    ), frequencies AS (
        INSERT INTO ragline.lexical_term_deltas (chunk_set, term_id, df, max_tf)
        SELECT chunk_set, term_id, count(*), max(tf) FROM postings GROUP BY chunk_set, term_id
    )
    INSERT INTO ragline.lexical_stat_deltas (chunk_set, texts, total_length)
    SELECT chunk_set, count(*), coalesce(sum(doc_length), 0) FROM texts GROUP BY chunk_set;
    RETURN NULL;
END
$$;

CREATE FUNCTION ragline.unindex_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH texts AS (
        DELETE FROM ragline.lexical_texts x USING old_rows o
        WHERE x.chunk_set = o.chunk_set AND x.text_hash = o.text_hash
        RETURNING x.chunk_set, x.text_id, x.doc_length, o.text
    ), postings AS (
        DELETE FROM ragline.lexical_postings p
        USING texts x, unnest(to_tsvector('english', x.text)) t, ragline.lexical_lexemes l
        WHERE l.chunk_set = x.chunk_set AND l.lexeme = t.lexeme AND p.chunk_set = x.chunk_set AND p.term_id = l.term_id
          AND p.text_id = x.text_id
        RETURNING p.chunk_set, p.term_id
    ), frequencies AS (
        INSERT INTO ragline.lexical_term_deltas (chunk_set, term_id, df, max_tf)
        SELECT chunk_set, term_id, -count(*), 0 FROM postings GROUP BY chunk_set, term_id
    )
    INSERT INTO ragline.lexical_stat_deltas (chunk_set, texts, total_length)
    SELECT chunk_set, -count(*), -coalesce(sum(doc_length), 0) FROM texts GROUP BY chunk_set;
    RETURN NULL;
END
$$;

CREATE TRIGGER indexed_texts_add_lexical AFTER INSERT ON ragline.indexed_texts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.index_lexical_texts();
CREATE TRIGGER indexed_texts_drop_lexical AFTER DELETE ON ragline.indexed_texts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ragline.unindex_lexical_texts();

-- Folds each term's and set's delta rows into one. Deletes only the rows it read, so deltas that
-- writers append meanwhile stay and are folded next time.
CREATE FUNCTION ragline.compact_lexical_deltas() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH many AS (
        SELECT chunk_set, term_id FROM ragline.lexical_term_deltas GROUP BY chunk_set, term_id HAVING count(*) > 1
    ), gone AS (
        DELETE FROM ragline.lexical_term_deltas d USING many m
        WHERE d.chunk_set = m.chunk_set AND d.term_id = m.term_id
        RETURNING d.chunk_set, d.term_id, d.df, d.max_tf
    )
    INSERT INTO ragline.lexical_term_deltas (chunk_set, term_id, df, max_tf)
    SELECT chunk_set, term_id, sum(df), max(max_tf) FROM gone GROUP BY chunk_set, term_id HAVING sum(df) <> 0;
    WITH many AS (
        SELECT chunk_set FROM ragline.lexical_stat_deltas GROUP BY chunk_set HAVING count(*) > 1
    ), gone AS (
        DELETE FROM ragline.lexical_stat_deltas d USING many m WHERE d.chunk_set = m.chunk_set
        RETURNING d.chunk_set, d.texts, d.total_length
    )
    INSERT INTO ragline.lexical_stat_deltas (chunk_set, texts, total_length)
    SELECT chunk_set, sum(texts), sum(total_length) FROM gone GROUP BY chunk_set;
END
$$;
