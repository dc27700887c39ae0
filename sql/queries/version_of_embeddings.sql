-- Data version of a source's embeddings: which current chunk texts have a vector of the model.
SELECT md5(coalesce(string_agg(c.chunk_id || ':' || c.text_hash || ':' || (e.text_hash IS NOT NULL)::text,
                               E'\n' ORDER BY c.chunk_id), ''))
FROM ragline.current_chunks c
LEFT JOIN ragline.embeddings e ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
WHERE c.source = %(source)s
