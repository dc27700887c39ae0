-- Published texts that have a vector of the model in the ledger but not yet among the served vectors.
INSERT INTO ragline.serving_vectors (model_id, text_hash, embedding)
SELECT e.model_id, e.text_hash, e.embedding
FROM ragline.indexed_texts t
JOIN ragline.embeddings e ON e.text_hash = t.text_hash AND e.model_id = %(model_id)s
WHERE t.chunk_set = 'default'
ON CONFLICT (model_id, text_hash) DO NOTHING
