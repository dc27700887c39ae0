-- Every key with what it has spent; never the key (only its hash is stored).
SELECT k.key_id, k.name, k.key_prefix, k.rate_per_minute, k.token_budget, k.created_at, k.revoked_at,
       coalesce(sum(r.prompt_tokens + r.completion_tokens), 0) AS tokens_used,
       count(r.request_id) AS requests
FROM ragline.api_keys k
LEFT JOIN ragline.api_requests r ON r.key_id = k.key_id
GROUP BY k.key_id
ORDER BY k.name
