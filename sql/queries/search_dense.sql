-- Nearest published chunks by cosine distance. The nearest %(scan)s texts come from the serving
-- model's partial HNSW index on ragline.serving_vectors first ({model} and {dim} are literals, so that the index matches),
-- then are joined to the chunk set and filters; the caller widens the scan when filters leave
-- fewer than %(limit)s rows. With hnsw.iterative_scan, a scan beyond ef_search keeps reading the
-- index instead of stopping at ef_search rows.
WITH nearest AS MATERIALIZED (
    SELECT e.text_hash, e.embedding::vector({dim}) <=> %(q)s::vector({dim}) AS distance
    FROM ragline.serving_vectors e
    WHERE e.model_id = {model}
    ORDER BY e.embedding::vector({dim}) <=> %(q)s::vector({dim})
    LIMIT %(scan)s
)
-- LATERAL with OFFSET 0 (which keeps the planner from flattening it back into a join): the view is
-- probed by text hash per candidate, with index lookups; as a plain join the planner built the
-- whole view (every chunk) to hash-join 40 candidates, 400 ms at 104k chunks.
SELECT c.*, 1 - n.distance AS score, (SELECT count(*) FROM nearest) AS scanned
FROM nearest n
CROSS JOIN LATERAL (
    SELECT {columns}
    FROM ragline.corpus_chunks c
    WHERE c.text_hash = n.text_hash AND c.chunk_set = %(chunk_set)s {filters}
    OFFSET 0
) c
ORDER BY n.distance, c.chunk_id
LIMIT %(limit)s
