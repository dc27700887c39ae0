-- Exact nearest chunks of one chunk set, from the ledger: the fallback when filters are so selective
-- that the index scan ran out of candidates (hnsw.max_scan_tuples) before finding %(limit)s rows, and
-- the search of evaluation variants with their own chunks or model (which have no serving index).
SELECT {columns}, 1 - (e.embedding::vector({dim}) <=> %(q)s::vector({dim})) AS score, 0 AS scanned
FROM ragline.embeddings e
JOIN ragline.corpus_chunks c ON c.text_hash = e.text_hash
WHERE e.model_id = {model}
  AND c.chunk_set = %(chunk_set)s {filters}
ORDER BY e.embedding::vector({dim}) <=> %(q)s::vector({dim}), c.chunk_id
LIMIT %(limit)s
