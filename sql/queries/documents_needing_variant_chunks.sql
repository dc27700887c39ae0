-- Live documents (every source) that have no chunks yet under a variant's chunker.
SELECT d.source, d.doc_id, d.version, v.content_hash, v.text
FROM ragline.documents d
JOIN ragline.document_versions v
  ON v.source = d.source AND v.doc_id = d.doc_id AND v.version = d.version
WHERE d.status = 'live'
  AND NOT EXISTS (
      SELECT 1 FROM ragline.variant_chunks c
      WHERE c.variant = %(variant)s AND c.source = d.source AND c.doc_id = d.doc_id
        AND c.doc_version = d.version AND c.chunker = %(chunker)s)
ORDER BY d.source, d.doc_id
