-- Publishing's BM25 insert trigger without whole-publish arrays (issue 9). 0014 tokenized the new
-- texts once into four arrays with one element per (text, lexeme); a publish of 460k texts (a
-- 50,000-document source) needs 27.5M elements, past PostgreSQL's 1 GB array limit, and failed:
-- "array size exceeds the maximum allowed". Now each statement tokenizes the transition table
-- itself (twice per publish in all: the lexemes must be inserted, and committed by any other
-- writer, before the statement that reads their ids), so no value grows with the publish.
CREATE OR REPLACE FUNCTION ragline.index_lexical_texts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only lexemes the set lacks: ON CONFLICT alone would use up an identity value for every
    -- known lexeme of every publish, and the integer ids would run out. Their own statement, so
    -- that the next one sees ids another writer committed meanwhile; in lexeme order, so two
    -- writers meet in one order.
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
