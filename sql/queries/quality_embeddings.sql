-- One row per current chunk; dim and norm are NULL where the chunk has no vector.
SELECT c.chunk_id,
       e.dim,
       vector_norm(e.embedding) AS norm,
       CASE WHEN e.embedding IS NULL THEN NULL
            ELSE vector_norm(e.embedding) NOT IN ('NaN'::float8, 'Infinity'::float8) END AS finite
FROM ragline.current_chunks c
LEFT JOIN ragline.embeddings e
  ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
WHERE c.source = %(source)s
