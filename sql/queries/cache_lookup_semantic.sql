-- An answer cache hit on a paraphrase: the nearest stored question of the same model, prompt
-- version, parameters and retrieved context whose cosine similarity reaches the threshold, alive
-- and built on what search serves now. Counts the hit.
WITH nearest AS (
    SELECT c.id, 1 - c.distance AS similarity
    FROM (
        SELECT a.id,
               -- CASE: vectors of another dimension (another embedding model) are never compared.
               CASE WHEN vector_dims(a.query_vector) = vector_dims(%(vector)s::vector)
                    THEN a.query_vector <=> %(vector)s::vector END AS distance
        FROM ragline.answer_cache a, ragline.served_data s
        WHERE a.query_vector IS NOT NULL
          AND a.model = %(model)s
          AND a.prompt_version = %(prompt_version)s
          AND a.params_hash = %(params_hash)s
          AND a.context_key = %(context_key)s
          AND a.expires_at > now()
          AND a.created_at > now() - make_interval(secs => %(ttl_seconds)s)
          AND a.served = s.state
    ) c
    WHERE c.distance <= 1 - %(threshold)s
    ORDER BY c.distance
    LIMIT 1
)
UPDATE ragline.answer_cache c
SET hits = c.hits + 1, last_hit_at = now()
FROM nearest n
WHERE c.id = n.id
RETURNING c.payload, c.created_at, n.similarity
