-- The key a request presents, with the chat tokens it has spent (kept by the cost ledger, 0010).
SELECT k.key_id, k.name, k.revoked_at IS NOT NULL AS revoked, k.rate_per_minute, k.token_budget,
       k.tokens_used
FROM ragline.api_keys k
WHERE k.key_hash = %(key_hash)s
