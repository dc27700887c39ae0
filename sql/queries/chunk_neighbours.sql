-- The chunks just before and after one chunk of a document version, in document order.
SELECT {columns}
FROM ragline.corpus_chunks c
WHERE c.chunk_set = %(chunk_set)s
  AND c.source = %(source)s AND c.doc_id = %(doc_id)s AND c.doc_version = %(doc_version)s
  AND c.chunk_index IN (%(chunk_index)s - 1, %(chunk_index)s + 1)
ORDER BY c.chunk_index
