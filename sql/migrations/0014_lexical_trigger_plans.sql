-- Publishing's BM25 maintenance without planner traps (issue 9). 0004's delete trigger tokenized
-- each removed text again and joined the lexemes to the postings in one statement; on freshly
-- loaded tables (no statistics yet) the planner estimated a dozen removed texts, joined them to
-- every lexeme of the set and read all postings of each term to find one text's: removing 2,000
-- texts did not finish in minutes. Now each text keeps the ids of its terms, and a removal deletes
-- its postings by their primary key, one text per statement (chunk_set = $1 AND term_id = ANY($2)
-- AND text_id = $3 is a probe of the primary key whatever the statistics say). The insert trigger
-- runs to_tsvector once per text instead of twice.

ALTER TABLE ragline.lexical_texts ADD COLUMN term_ids integer[] NOT NULL DEFAULT '{}';
UPDATE ragline.lexical_texts x SET term_ids = p.term_ids
FROM (
    SELECT chunk_set, text_id, array_agg(term_id ORDER BY term_id) AS term_ids
    FROM ragline.lexical_postings GROUP BY chunk_set, text_id
) p
WHERE x.chunk_set = p.chunk_set AND x.text_id = p.text_id;

-- New texts of a set: tokenized once into arrays; then lexemes the set lacks (their own
-- statement, so that the next one sees ids another writer committed meanwhile; in lexeme order,
-- so two writers meet in one order); then texts, postings and deltas in one statement.
CREATE OR REPLACE FUNCTION ragline.index_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sets    text[];
    hashes  text[];
    lexemes text[];
    tfs     integer[];
BEGIN
    SELECT array_agg(n.chunk_set), array_agg(n.text_hash), array_agg(t.lexeme), array_agg(cardinality(t.positions))
    INTO sets, hashes, lexemes, tfs
    FROM new_rows n CROSS JOIN LATERAL unnest(to_tsvector('english', n.text)) t;
    -- Only lexemes the set lacks: ON CONFLICT alone would use up an identity value for every
    -- known lexeme of every publish, and the integer ids would run out.
    INSERT INTO ragline.lexical_lexemes (chunk_set, lexeme)
    SELECT DISTINCT u.chunk_set, u.lexeme
    FROM unnest(sets, lexemes) AS u(chunk_set, lexeme)
    WHERE NOT EXISTS (
        SELECT 1 FROM ragline.lexical_lexemes l WHERE l.chunk_set = u.chunk_set AND l.lexeme = u.lexeme
    )
    ORDER BY 1, 2
    ON CONFLICT (chunk_set, lexeme) DO NOTHING;
    WITH terms AS (
        SELECT u.chunk_set, u.text_hash, l.term_id, u.tf
        FROM unnest(sets, hashes, lexemes, tfs) AS u(chunk_set, text_hash, lexeme, tf)
        JOIN ragline.lexical_lexemes l ON l.chunk_set = u.chunk_set AND l.lexeme = u.lexeme
    ), texts AS (
        INSERT INTO ragline.lexical_texts (chunk_set, text_hash, doc_length, term_ids)
        SELECT n.chunk_set, n.text_hash, coalesce(sum(t.tf), 0)::integer,
               coalesce(array_agg(t.term_id ORDER BY t.term_id) FILTER (WHERE t.term_id IS NOT NULL), '{}')
        FROM new_rows n LEFT JOIN terms t USING (chunk_set, text_hash)
        GROUP BY n.chunk_set, n.text_hash
        RETURNING chunk_set, text_hash, text_id, doc_length
    ), postings AS (
        INSERT INTO ragline.lexical_postings (chunk_set, term_id, text_id, tf, doc_length, impact)
        SELECT t.chunk_set, t.term_id, x.text_id, t.tf, x.doc_length, ragline.bm25_impact(t.tf, x.doc_length)
        FROM terms t JOIN texts x USING (chunk_set, text_hash)
        ORDER BY t.chunk_set, t.term_id, x.text_id
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

-- Removed texts: deltas from the texts' own term ids (no tokenizing), then each text and its
-- postings by primary key.
CREATE OR REPLACE FUNCTION ragline.unindex_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone record;
BEGIN
    WITH texts AS (
        SELECT x.chunk_set, x.doc_length, x.term_ids
        FROM old_rows o JOIN ragline.lexical_texts x ON x.chunk_set = o.chunk_set AND x.text_hash = o.text_hash
    ), frequencies AS (
        INSERT INTO ragline.lexical_term_deltas (chunk_set, term_id, df, max_tf)
        SELECT x.chunk_set, t.term_id, -count(*), 0
        FROM texts x CROSS JOIN LATERAL unnest(x.term_ids) AS t(term_id)
        GROUP BY x.chunk_set, t.term_id
    )
    INSERT INTO ragline.lexical_stat_deltas (chunk_set, texts, total_length)
    SELECT chunk_set, -count(*), -coalesce(sum(doc_length), 0) FROM texts GROUP BY chunk_set;
    FOR gone IN
        DELETE FROM ragline.lexical_texts x USING old_rows o
        WHERE x.chunk_set = o.chunk_set AND x.text_hash = o.text_hash
        RETURNING x.chunk_set, x.text_id, x.term_ids
    LOOP
        DELETE FROM ragline.lexical_postings
        WHERE chunk_set = gone.chunk_set AND term_id = ANY(gone.term_ids) AND text_id = gone.text_id;
    END LOOP;
    RETURN NULL;
END
$$;
