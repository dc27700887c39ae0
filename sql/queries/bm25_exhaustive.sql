-- Exhaustive Okapi BM25 (the reference the served search, bm25_top_texts.sql, and the in-memory
-- index must equal): every posting of the query's lexemes in the chunk set is scored, the best
-- %(scan)s texts kept (all of them when scan is NULL). Ties go by text_hash; a text's weights are
-- summed in term_id order, as the in-memory index sums them, so equal texts get equal bits.
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(query)s::text))
), stats AS (
    SELECT greatest(texts, 1)::float8 AS n, greatest(total_length::float8 / greatest(texts, 1), 1) AS avgdl
    FROM ragline.lexical_stats WHERE chunk_set = %(chunk_set)s
), df AS (
    -- The query's lexemes first: the lexical_terms view joined on lexeme would sum every term's deltas.
    SELECT l.term_id, sum(d.df)::float8 AS df
    FROM terms
    JOIN ragline.lexical_lexemes l ON l.chunk_set = %(chunk_set)s AND l.lexeme = terms.lexeme
    JOIN ragline.lexical_term_deltas d ON d.chunk_set = %(chunk_set)s AND d.term_id = l.term_id
    GROUP BY l.term_id
    HAVING sum(d.df) > 0
)
SELECT x.text_hash,
       sum(ragline.bm25_weight(s.n, df.df, p.tf, p.doc_length, %(k1)s::float8, %(b)s::float8, s.avgdl)
           ORDER BY p.term_id) AS score
FROM df
JOIN ragline.lexical_postings p ON p.chunk_set = %(chunk_set)s AND p.term_id = df.term_id
JOIN ragline.lexical_texts x ON x.text_id = p.text_id
CROSS JOIN stats s
GROUP BY x.text_hash
ORDER BY score DESC, x.text_hash
LIMIT %(scan)s
