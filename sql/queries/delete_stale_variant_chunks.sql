-- A variant's chunks that no longer serve: older document versions, deleted documents, other settings.
DELETE FROM ragline.variant_chunks c
WHERE c.variant = %(variant)s
  AND (c.chunker <> %(chunker)s
       OR NOT EXISTS (
           SELECT 1 FROM ragline.documents d
           WHERE d.source = c.source AND d.doc_id = c.doc_id
             AND d.version = c.doc_version AND d.status = 'live'))
