-- A variant's chunks that no longer serve: documents no longer published at that version, or
-- made with other settings.
DELETE FROM ragline.variant_chunks c
WHERE c.variant = %(variant)s
  AND (c.chunker <> %(chunker)s
       OR NOT EXISTS (
           SELECT 1 FROM ragline.published_documents g
           WHERE g.source = c.source AND g.doc_id = c.doc_id AND g.doc_version = c.doc_version))
