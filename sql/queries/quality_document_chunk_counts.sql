SELECT d.doc_id, count(c.chunk_id) AS chunk_count
FROM ragline.documents d
LEFT JOIN ragline.current_chunks c
  ON c.source = d.source AND c.doc_id = d.doc_id AND c.doc_version = d.version
WHERE d.source = %(source)s AND d.status = 'live'
GROUP BY d.doc_id
