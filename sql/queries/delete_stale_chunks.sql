-- Chunks that will not serve again: not of a live document's current version under the source's
-- chunker, and not part of a generation the source serves or keeps for rollback.
DELETE FROM ragline.chunks c
WHERE c.source = %(source)s
  AND (c.chunker <> %(chunker)s
       OR NOT EXISTS (
           SELECT 1 FROM ragline.documents d
           WHERE d.source = c.source AND d.doc_id = c.doc_id
             AND d.version = c.doc_version AND d.status = 'live'))
  AND NOT EXISTS (
      SELECT 1
      FROM ragline.published_generations p
      JOIN ragline.generation_documents g
        ON g.source = p.source AND g.generation IN (p.generation, p.previous)
      WHERE p.source = c.source AND g.doc_id = c.doc_id AND g.doc_version = c.doc_version
        AND g.chunker = c.chunker)
