-- Chunks that no longer serve: an older version of their document, a deleted document,
-- or made with other chunker settings.
DELETE FROM ragline.chunks c
WHERE c.source = %(source)s
  AND (c.chunker <> %(chunker)s
       OR NOT EXISTS (
           SELECT 1 FROM ragline.documents d
           WHERE d.source = c.source AND d.doc_id = c.doc_id
             AND d.version = c.doc_version AND d.status = 'live'))
