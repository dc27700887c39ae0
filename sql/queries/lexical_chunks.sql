-- The chunks of the given texts (BM25's best first, from ragline.retrieval.bm25) in the chunk set,
-- with the filters; ranked by the text's score, then chunk_id.
SELECT c.*, s.score
FROM unnest(%(text_hashes)s::text[], %(scores)s::float8[]) AS s (text_hash, score)
CROSS JOIN LATERAL (
    SELECT {columns}
    FROM ragline.corpus_chunks c
    WHERE c.text_hash = s.text_hash AND c.chunk_set = %(chunk_set)s {filters}
    OFFSET 0
) c
ORDER BY s.score DESC, c.chunk_id
LIMIT %(limit)s
