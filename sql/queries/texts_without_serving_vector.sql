-- Published texts with no served vector of the model: the model cannot be served while any exist.
SELECT count(*)
FROM ragline.indexed_texts t
WHERE t.chunk_set = 'default'
  AND NOT EXISTS (
      SELECT 1 FROM ragline.serving_vectors v WHERE v.model_id = %(model_id)s AND v.text_hash = t.text_hash)
