-- Data version of the variants' corpora: each variant's chunk ids and texts.
SELECT md5(coalesce(string_agg(variant || ':' || chunk_id || ':' || text_hash, E'\n' ORDER BY variant, chunk_id), ''))
FROM ragline.variant_chunks
