-- Up to per_source current vectors of each source with a document path holding each text, for drift
-- tests. The order is seeded by text hash with another salt than the baseline's, so that the two
-- samples are drawn independently.
SELECT source, path, embedding
FROM (
    SELECT c.source, c.path, e.embedding,
           row_number() OVER (PARTITION BY c.source ORDER BY md5(c.text_hash || ':current')) AS n
    FROM (
        SELECT source, text_hash, min(path) AS path
        FROM ragline.corpus_chunks
        WHERE chunk_set = 'default'
        GROUP BY source, text_hash
    ) c
    JOIN ragline.embeddings e ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
) sampled
WHERE n <= %(per_source)s
ORDER BY source, n
