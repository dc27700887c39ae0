-- A source's current chunks (live documents at their current version, under its chunker).
SELECT count(c.chunk_id),
       min(c.token_count),
       avg(c.token_count),
       max(c.token_count),
       (SELECT count(*) FROM ragline.documents d
        WHERE d.source = %(source)s AND d.status = 'live')
FROM ragline.current_chunks c
WHERE c.source = %(source)s
