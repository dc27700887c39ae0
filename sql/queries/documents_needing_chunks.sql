SELECT d.doc_id, d.version, v.content_hash, v.text
FROM ragline.documents d
JOIN ragline.document_versions v
  ON v.source = d.source AND v.doc_id = d.doc_id AND v.version = d.version
WHERE d.source = %(source)s
  AND d.status = 'live'
  AND NOT EXISTS (
      SELECT 1 FROM ragline.chunks c
      WHERE c.source = d.source AND c.doc_id = d.doc_id
        AND c.doc_version = d.version AND c.chunker = %(chunker)s)
ORDER BY d.doc_id
