-- One row per current chunk of the source (a chunk of a live document's current version): its
-- token count, and how many current chunks of the source have the same text.
SELECT c.chunk_id,
       c.token_count,
       c.text_hash,
       left(c.text, 60) AS text_start,
       count(*) OVER (PARTITION BY c.text_hash) AS copies
FROM ragline.chunks c
JOIN ragline.documents d
  ON d.source = c.source AND d.doc_id = c.doc_id AND d.version = c.doc_version AND d.status = 'live'
WHERE c.source = %(source)s
