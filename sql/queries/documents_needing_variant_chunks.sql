-- Published documents (every source) that have no chunks yet under a variant's chunker.
SELECT g.source, g.doc_id, g.doc_version, v.content_hash, v.text
FROM ragline.published_documents g
JOIN ragline.document_versions v
  ON v.source = g.source AND v.doc_id = g.doc_id AND v.version = g.doc_version
WHERE NOT EXISTS (
      SELECT 1 FROM ragline.variant_chunks c
      WHERE c.variant = %(variant)s AND c.source = g.source AND c.doc_id = g.doc_id
        AND c.doc_version = g.doc_version AND c.chunker = %(chunker)s)
ORDER BY g.source, g.doc_id
