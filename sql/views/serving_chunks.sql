-- The published chunks of every source with their vector from the serving model: what search serves.
CREATE OR REPLACE VIEW ragline.serving_chunks AS
SELECT c.chunk_id,
       c.source,
       c.doc_id,
       c.path,
       c.doc_version,
       c.chunk_index,
       c.text,
       c.token_count,
       c.start_char,
       c.end_char,
       c.metadata,
       e.model_id,
       e.embedding
FROM ragline.corpus_chunks c
JOIN ragline.serving_model m ON true
JOIN ragline.serving_vectors e ON e.text_hash = c.text_hash AND e.model_id = m.model_id
WHERE c.chunk_set = 'default';
