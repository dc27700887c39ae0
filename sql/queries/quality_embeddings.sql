-- One row per current chunk of the source (a chunk of a live document's current version), with
-- the dimension and norm of the vector this model stored for its text: NULL where there is none.
SELECT c.chunk_id,
       vector_dims(e.embedding) AS dim,
       vector_norm(e.embedding) AS norm
FROM ragline.chunks c
JOIN ragline.documents d
  ON d.source = c.source AND d.doc_id = c.doc_id AND d.version = c.doc_version AND d.status = 'live'
LEFT JOIN ragline.embeddings e
  ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
WHERE c.source = %(source)s
