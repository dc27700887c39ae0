-- Each source's current chunks: live documents at their current version, under the source's current
-- chunker. What the checks audit and the next publish will serve (older chunks that a retained
-- generation still serves are not here).
CREATE OR REPLACE VIEW ragline.current_chunks AS
SELECT c.*
FROM ragline.chunks c
JOIN ragline.source_chunkers s ON s.source = c.source AND s.chunker = c.chunker
JOIN ragline.documents d
  ON d.source = c.source AND d.doc_id = c.doc_id AND d.version = c.doc_version AND d.status = 'live';
