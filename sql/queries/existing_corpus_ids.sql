-- Which of the given ids name a live document ("<source>:<doc_id>") or a current chunk.
SELECT u.id
FROM unnest(%(ids)s::text[]) AS u (id)
WHERE EXISTS (
          SELECT 1 FROM ragline.documents d
          WHERE d.source = split_part(u.id, ':', 1)
            AND d.doc_id = substr(u.id, length(split_part(u.id, ':', 1)) + 2)
            AND d.status = 'live')
   OR EXISTS (SELECT 1 FROM ragline.chunks c WHERE c.chunk_id = u.id)
