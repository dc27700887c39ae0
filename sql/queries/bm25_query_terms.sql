-- The query's lexemes that occur in the chunk set, with their df and tf bound, and the set's N and
-- avgdl (same expressions as bm25_exhaustive.sql).
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(query)s::text))
), stats AS (
    SELECT greatest(texts, 1)::float8 AS n, greatest(total_length::float8 / greatest(texts, 1), 1) AS avgdl
    FROM ragline.lexical_stats WHERE chunk_set = %(chunk_set)s
)
SELECT l.term_id, sum(d.df)::float8 AS df, max(d.max_tf) AS max_tf, s.n, s.avgdl
FROM terms
JOIN ragline.lexical_lexemes l ON l.chunk_set = %(chunk_set)s AND l.lexeme = terms.lexeme
JOIN ragline.lexical_term_deltas d ON d.chunk_set = %(chunk_set)s AND d.term_id = l.term_id
CROSS JOIN stats s
GROUP BY l.term_id, s.n, s.avgdl
HAVING sum(d.df) > 0
ORDER BY l.term_id
