SELECT count(*)
FROM ragline.current_chunks c
WHERE c.source = %(source)s
  AND EXISTS (
      SELECT 1 FROM ragline.embeddings e
      WHERE e.text_hash = c.text_hash AND e.model_id = %(model_id)s)
