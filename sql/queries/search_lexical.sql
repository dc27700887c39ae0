-- Okapi BM25 over ragline.lexical_postings: idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
-- term weight = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_length / avgdl)).
-- Collection statistics cover every indexed chunk text.
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(query)s))
), stats AS (
    SELECT greatest(count(*), 1)::float8 AS n, greatest(avg(doc_length), 1)::float8 AS avgdl
    FROM ragline.lexical_texts
), df AS (
    SELECT p.lexeme, count(*)::float8 AS df
    FROM ragline.lexical_postings p JOIN terms USING (lexeme)
    GROUP BY p.lexeme
), scored AS (
    SELECT p.text_hash,
           sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
               * p.tf * (%(k1)s + 1)
               / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.doc_length / s.avgdl))) AS score
    FROM ragline.lexical_postings p
    JOIN df USING (lexeme)
    CROSS JOIN stats s
    GROUP BY p.text_hash
)
SELECT {columns}, scored.score
FROM scored
JOIN ragline.corpus_chunks c ON c.text_hash = scored.text_hash
WHERE c.chunk_set = %(chunk_set)s {filters}
ORDER BY scored.score DESC, c.chunk_id
LIMIT %(limit)s
