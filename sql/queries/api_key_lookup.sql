-- The key a request presents, with the tokens it has spent (only summed when it has a budget).
SELECT k.key_id, k.name, k.revoked_at IS NOT NULL AS revoked, k.rate_per_minute, k.token_budget,
       CASE WHEN k.token_budget IS NULL THEN 0 ELSE (
           SELECT coalesce(sum(r.prompt_tokens + r.completion_tokens), 0)
           FROM ragline.api_requests r WHERE r.key_id = k.key_id) END AS tokens_used
FROM ragline.api_keys k
WHERE k.key_hash = %(key_hash)s
