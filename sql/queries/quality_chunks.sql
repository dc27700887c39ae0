SELECT c.chunk_id, length(btrim(c.text)) AS text_chars, c.token_count
FROM ragline.current_chunks c
WHERE c.source = %(source)s
