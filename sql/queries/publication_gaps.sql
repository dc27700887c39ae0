-- Live documents of a source that cannot be published as they are: no chunk under the source's
-- chunker, or a chunk text without a vector from the model.
SELECT d.doc_id,
       CASE WHEN count(c.chunk_id) = 0 THEN 'no chunks'
            ELSE count(*) FILTER (WHERE e.text_hash IS NULL) || ' chunks without a vector' END AS problem
FROM ragline.documents d
LEFT JOIN ragline.chunks c
  ON c.source = d.source AND c.doc_id = d.doc_id AND c.doc_version = d.version AND c.chunker = %(chunker)s
LEFT JOIN ragline.embeddings e ON e.text_hash = c.text_hash AND e.model_id = %(model_id)s
WHERE d.source = %(source)s AND d.status = 'live'
GROUP BY d.doc_id
HAVING count(c.chunk_id) = 0 OR count(*) FILTER (WHERE e.text_hash IS NULL) > 0
ORDER BY d.doc_id
LIMIT %(limit)s
