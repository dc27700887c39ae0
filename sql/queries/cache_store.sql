-- Store an answer under its request key, stamped with what search served when its retrieval began
-- (served; NULL: what it serves now). A live entry of the same key stays as it is (concurrent
-- stores of one request keep one row); an expired or stale one is replaced.
INSERT INTO ragline.answer_cache AS c
    (exact_key, model, prompt_version, params_hash, context_key, query_vector, payload, served, expires_at)
SELECT %(exact_key)s, %(model)s, %(prompt_version)s, %(params_hash)s, %(context_key)s, %(vector)s::vector,
       %(payload)s, coalesce(%(served)s::jsonb, s.state), now() + make_interval(secs => %(ttl_seconds)s)
FROM ragline.served_data s
ON CONFLICT (exact_key) DO UPDATE
SET model = EXCLUDED.model,
    prompt_version = EXCLUDED.prompt_version,
    params_hash = EXCLUDED.params_hash,
    context_key = EXCLUDED.context_key,
    query_vector = EXCLUDED.query_vector,
    payload = EXCLUDED.payload,
    served = EXCLUDED.served,
    created_at = now(),
    expires_at = EXCLUDED.expires_at,
    hits = 0,
    last_hit_at = NULL
WHERE c.expires_at <= now()
   OR c.created_at <= now() - make_interval(secs => %(ttl_seconds)s)
   OR c.served IS DISTINCT FROM EXCLUDED.served
RETURNING c.id
