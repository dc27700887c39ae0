-- Nearest chunks of one chunk set by cosine distance. {model} and {dim} are literals so that the
-- model's partial HNSW index (WHERE model_id = ..., on embedding::vector(dim)) is usable.
SELECT {columns}, 1 - (e.embedding::vector({dim}) <=> %(q)s::vector({dim})) AS score
FROM ragline.embeddings e
JOIN ragline.corpus_chunks c ON c.text_hash = e.text_hash
WHERE e.model_id = {model}
  AND c.chunk_set = %(chunk_set)s {filters}
ORDER BY e.embedding::vector({dim}) <=> %(q)s::vector({dim})
LIMIT %(limit)s
