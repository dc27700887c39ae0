-- An answer cache hit on the exact request key: alive (within its TTL) and built on what search
-- serves now. Counts the hit.
UPDATE ragline.answer_cache c
SET hits = c.hits + 1, last_hit_at = now()
FROM ragline.served_data s
WHERE c.exact_key = %(exact_key)s
  AND c.expires_at > now()
  AND c.created_at > now() - make_interval(secs => %(ttl_seconds)s)
  AND c.served = s.state
RETURNING c.payload, c.created_at
