-- A seeded, repeatable sample of the pipeline's current chunks (optionally of one source).
SELECT c.chunk_id, c.source, c.doc_id, c.text
FROM ragline.corpus_chunks c
WHERE c.chunk_set = 'default'
  AND (%(source)s::text IS NULL OR c.source = %(source)s)
  AND c.token_count >= %(min_tokens)s
ORDER BY md5(c.chunk_id || %(seed)s)
LIMIT %(limit)s
