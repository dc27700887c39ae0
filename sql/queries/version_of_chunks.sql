-- Data version of a source's chunks: the ids and text hashes of its current chunks.
SELECT md5(coalesce(string_agg(chunk_id || ':' || text_hash, E'\n' ORDER BY chunk_id), ''))
FROM ragline.current_chunks
WHERE source = %(source)s
