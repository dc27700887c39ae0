-- Which of the given ids name a published document ("<source>:<doc_id>") or a published chunk.
SELECT u.id
FROM unnest(%(ids)s::text[]) AS u (id)
WHERE EXISTS (
          SELECT 1 FROM ragline.published_documents g
          WHERE g.source = split_part(u.id, ':', 1)
            AND g.doc_id = substr(u.id, length(split_part(u.id, ':', 1)) + 2))
   OR EXISTS (SELECT 1 FROM ragline.corpus_chunks c WHERE c.chunk_set = 'default' AND c.chunk_id = u.id)
