-- Every key with what it has spent (chat tokens, kept by the cost ledger) and how many requests it
-- made; never the key (only its hash is stored).
SELECT k.key_id, k.name, k.key_prefix, k.rate_per_minute, k.token_budget, k.created_at, k.revoked_at,
       k.tokens_used,
       (SELECT count(*) FROM ragline.api_requests r WHERE r.key_id = k.key_id) AS requests
FROM ragline.api_keys k
ORDER BY k.name
