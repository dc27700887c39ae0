-- Per published document of a source: whether a chunk of it is in the served BM25 set, and whether
-- one has a served vector under the serving model (NULL while no model is served yet).
SELECT g.doc_id,
       EXISTS (
           SELECT 1 FROM ragline.chunks c JOIN ragline.indexed_texts t
             ON t.chunk_set = 'default' AND t.text_hash = c.text_hash
           WHERE c.source = g.source AND c.doc_id = g.doc_id AND c.doc_version = g.doc_version
             AND c.chunker = g.chunker) AS lexical,
       CASE WHEN m.model_id IS NULL THEN NULL ELSE EXISTS (
           SELECT 1 FROM ragline.chunks c JOIN ragline.serving_vectors v
             ON v.model_id = m.model_id AND v.text_hash = c.text_hash
           WHERE c.source = g.source AND c.doc_id = g.doc_id AND c.doc_version = g.doc_version
             AND c.chunker = g.chunker) END AS dense
FROM ragline.published_documents g
LEFT JOIN ragline.serving_model m ON true
WHERE g.source = %(source)s
ORDER BY g.doc_id
