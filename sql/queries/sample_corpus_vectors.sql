-- Up to per_source current vectors of each source, for drift tests. The order is seeded by text
-- hash with another salt than the baseline's, so that the two samples are drawn independently.
SELECT source, embedding
FROM (
    SELECT c.source, e.embedding,
           row_number() OVER (PARTITION BY c.source ORDER BY md5(c.text_hash || ':current')) AS n
    FROM (SELECT DISTINCT source, text_hash FROM ragline.corpus_chunks WHERE chunk_set = 'default') c
    JOIN ragline.embeddings e ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
) sampled
WHERE n <= %(per_source)s
ORDER BY source, n
