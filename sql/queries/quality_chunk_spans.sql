-- One row per live document of the source: its current text, and its current chunks' ids, spans
-- and texts in chunk order (empty arrays when it has none).
SELECT d.doc_id,
       v.text,
       coalesce(s.chunk_ids, '{}') AS chunk_ids,
       coalesce(s.starts, '{}') AS starts,
       coalesce(s.ends, '{}') AS ends,
       coalesce(s.texts, '{}') AS texts
FROM ragline.documents d
JOIN ragline.document_versions v
  ON v.source = d.source AND v.doc_id = d.doc_id AND v.version = d.version
CROSS JOIN LATERAL (
    SELECT array_agg(c.chunk_id ORDER BY c.chunk_index) AS chunk_ids,
           array_agg(c.start_char ORDER BY c.chunk_index) AS starts,
           array_agg(c.end_char ORDER BY c.chunk_index) AS ends,
           array_agg(c.text ORDER BY c.chunk_index) AS texts
    FROM ragline.current_chunks c
    WHERE c.source = d.source AND c.doc_id = d.doc_id AND c.doc_version = d.version
) s
WHERE d.source = %(source)s AND d.status = 'live'
ORDER BY d.doc_id
