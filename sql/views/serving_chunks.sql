-- Current chunks of live documents, with their vector from the serving model.
CREATE OR REPLACE VIEW ragline.serving_chunks AS
SELECT c.chunk_id,
       c.source,
       c.doc_id,
       d.path,
       c.doc_version,
       c.chunk_index,
       c.text,
       c.token_count,
       c.start_char,
       c.end_char,
       c.metadata,
       e.model_id,
       e.embedding
FROM ragline.chunks c
JOIN ragline.documents d
  ON d.source = c.source AND d.doc_id = c.doc_id
 AND d.version = c.doc_version AND d.status = 'live'
JOIN ragline.serving_model m ON true
JOIN ragline.embeddings e
  ON e.text_hash = c.text_hash AND e.model_id = m.model_id;
