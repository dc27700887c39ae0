-- A seeded sample (by text hash) of each source's current vectors under one model.
INSERT INTO ragline.drift_baseline (model_id, source, text_hash, embedding)
SELECT %(model_id)s, source, text_hash, embedding
FROM (
    SELECT c.source, c.text_hash, e.embedding,
           row_number() OVER (PARTITION BY c.source ORDER BY md5(c.text_hash)) AS n
    FROM (SELECT DISTINCT source, text_hash FROM ragline.corpus_chunks WHERE chunk_set = 'default') c
    JOIN ragline.embeddings e ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
) sampled
WHERE n <= %(per_source)s
