-- The best %(scan)s texts of a chunk set by Okapi BM25 (what lexical search serves): one statement
-- that scores every posting of the query's lexemes, read by (set, term) from the postings' key, and
-- joins the text hashes of the top scores only. The same weights as bm25_exhaustive.sql (the
-- reference), summed without its ORDER BY (which sorted every posting; a text's sum may differ from
-- the reference's in the last bits). Ties at the cut are all kept (WITH TIES), then broken by
-- text_hash, as the reference breaks them.
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(query)s::text))
), stats AS (
    SELECT greatest(texts, 1)::float8 AS n, greatest(total_length::float8 / greatest(texts, 1), 1) AS avgdl
    FROM ragline.lexical_stats WHERE chunk_set = %(chunk_set)s
), df AS MATERIALIZED (
    SELECT l.term_id, sum(d.df)::float8 AS df
    FROM terms
    JOIN ragline.lexical_lexemes l ON l.chunk_set = %(chunk_set)s AND l.lexeme = terms.lexeme
    JOIN ragline.lexical_term_deltas d ON d.chunk_set = %(chunk_set)s AND d.term_id = l.term_id
    GROUP BY l.term_id
    HAVING sum(d.df) > 0
), scored AS MATERIALIZED (
    SELECT p.text_id,
           sum(ragline.bm25_weight(s.n, df.df, p.tf, p.doc_length, %(k1)s::float8, %(b)s::float8, s.avgdl))
               AS score
    FROM df
    JOIN ragline.lexical_postings p ON p.chunk_set = %(chunk_set)s AND p.term_id = df.term_id
    CROSS JOIN stats s
    GROUP BY p.text_id
    ORDER BY score DESC
    FETCH FIRST (coalesce(%(scan)s::bigint, 9223372036854775807)) ROWS WITH TIES
)
SELECT x.text_hash, scored.score
FROM scored
JOIN ragline.lexical_texts x ON x.text_id = scored.text_id
ORDER BY scored.score DESC, x.text_hash
LIMIT %(scan)s
