INSERT INTO ragline.api_keys (name, key_hash, key_prefix, rate_per_minute, token_budget)
VALUES (%(name)s, %(key_hash)s, %(key_prefix)s, %(rate_per_minute)s, %(token_budget)s)
RETURNING key_id
