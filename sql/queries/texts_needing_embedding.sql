-- Distinct chunk texts of a source with no vector from this model yet, shortest first.
SELECT c.text_hash, min(c.text) AS text, min(c.token_count) AS token_count
FROM ragline.current_chunks c
WHERE c.source = %(source)s
  AND NOT EXISTS (
      SELECT 1 FROM ragline.embeddings e
      WHERE e.text_hash = c.text_hash AND e.model_id = %(model_id)s)
GROUP BY c.text_hash
ORDER BY length(min(c.text)), c.text_hash
