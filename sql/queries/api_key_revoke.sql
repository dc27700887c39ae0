UPDATE ragline.api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE name = %(name)s
RETURNING key_id
