-- One row per current chunk of the source (ragline.current_chunks), with the dimension and norm of
-- the vector this model stored for its text: NULL where there is none.
SELECT c.chunk_id,
       vector_dims(e.embedding) AS dim,
       vector_norm(e.embedding) AS norm
FROM ragline.current_chunks c
LEFT JOIN ragline.embeddings e
  ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
WHERE c.source = %(source)s
ORDER BY c.chunk_id
