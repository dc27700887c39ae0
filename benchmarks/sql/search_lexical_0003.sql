-- Okapi BM25 over one chunk set's texts (the published ones for 'default'), with that set's own
-- statistics: idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
-- term weight = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_length / avgdl)).
-- The best %(scan)s texts are scored first, then joined to the chunk set and filters; the caller
-- widens the scan when filters leave fewer than %(limit)s rows ("scanned" says how many texts
-- were scored, so it knows when there are no more).
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(query)s))
), stats AS (
    SELECT greatest(texts, 1)::float8 AS n, greatest(total_length::float8 / greatest(texts, 1), 1) AS avgdl
    FROM ragline.lexical_stats WHERE chunk_set = %(chunk_set)s
), df AS (
    SELECT d.lexeme, d.df::float8 AS df
    FROM terms JOIN ragline.lexical_terms d USING (lexeme)
    WHERE d.chunk_set = %(chunk_set)s AND d.df > 0
), scored AS MATERIALIZED (
    SELECT p.text_hash,
           sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
               * p.tf * (%(k1)s + 1)
               / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.doc_length / s.avgdl))) AS score
    FROM ragline.lexical_postings p
    JOIN df USING (lexeme)
    CROSS JOIN stats s
    WHERE p.chunk_set = %(chunk_set)s
    GROUP BY p.text_hash
    ORDER BY score DESC, p.text_hash
    LIMIT %(scan)s
)
SELECT c.*, scored.score, (SELECT count(*) FROM scored) AS scanned
FROM scored
CROSS JOIN LATERAL (
    SELECT {columns}
    FROM ragline.corpus_chunks c
    WHERE c.text_hash = scored.text_hash AND c.chunk_set = %(chunk_set)s {filters}
    OFFSET 0
) c
ORDER BY scored.score DESC, c.chunk_id
LIMIT %(limit)s
