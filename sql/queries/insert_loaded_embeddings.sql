INSERT INTO ragline.embeddings (text_hash, model_id, dim, embedding, token_count)
SELECT text_hash, %(model_id)s, dim, embedding, token_count
FROM embeddings_load
ON CONFLICT (text_hash, model_id) DO NOTHING
