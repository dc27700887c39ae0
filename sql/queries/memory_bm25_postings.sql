-- Every posting of a chunk set for the in-memory BM25 index, as 12-byte records (term_id, text_id,
-- tf as big-endian int4) packed into a few bytea values that numpy reads without a loop: one row per
-- 65,536 term ids keeps each value far below bytea's 1 GB limit. Records come in no particular order.
SELECT string_agg(int4send(term_id) || int4send(text_id) || int4send(tf), ''::bytea)
FROM ragline.lexical_postings
WHERE chunk_set = %(chunk_set)s
GROUP BY term_id / 65536
