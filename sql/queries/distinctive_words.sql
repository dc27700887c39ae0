-- A text's most distinctive words: term frequency in the text times BM25 idf over the published
-- chunk texts; each word stands for its lexeme once (its first spelling in the text).
WITH words AS (
    SELECT u.w, u.ord, (SELECT t.lexeme FROM unnest(to_tsvector('english', u.w)) t LIMIT 1) AS lexeme
    FROM unnest(%(words)s::text[]) WITH ORDINALITY AS u (w, ord)
), first_spelling AS (
    SELECT DISTINCT ON (lexeme) w, lexeme, ord FROM words WHERE lexeme IS NOT NULL ORDER BY lexeme, ord
), tf AS (
    SELECT t.lexeme, cardinality(t.positions) AS tf FROM unnest(to_tsvector('english', %(text)s)) t
), stats AS (
    SELECT greatest(coalesce((SELECT texts FROM ragline.lexical_stats WHERE chunk_set = 'default'), 0), 1)::float8
           AS n
), df AS (
    -- Only these lexemes' delta rows (through the lexical_terms view every term's would be summed).
    SELECT l.lexeme, sum(d.df)::float8 AS df
    FROM ragline.lexical_lexemes l
    JOIN ragline.lexical_term_deltas d ON d.chunk_set = l.chunk_set AND d.term_id = l.term_id
    WHERE l.chunk_set = 'default' AND l.lexeme IN (SELECT lexeme FROM first_spelling)
    GROUP BY l.lexeme
)
SELECT f.w, tf.tf * ln(1 + (s.n - coalesce(df.df, 0) + 0.5) / (coalesce(df.df, 0) + 0.5)) AS weight
FROM first_spelling f
JOIN tf USING (lexeme)
LEFT JOIN df USING (lexeme)
CROSS JOIN stats s
ORDER BY weight DESC, f.ord
LIMIT 3
