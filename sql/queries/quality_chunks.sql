-- One row per current chunk of the source (ragline.current_chunks): its token count, and how many
-- current chunks of the source have the same text.
SELECT c.chunk_id,
       c.token_count,
       c.text_hash,
       left(c.text, 60) AS text_start,
       count(*) OVER (PARTITION BY c.text_hash) AS copies
FROM ragline.current_chunks c
WHERE c.source = %(source)s
ORDER BY c.chunk_id
