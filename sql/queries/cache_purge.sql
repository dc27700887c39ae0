-- Delete answer cache rows that can never hit again: expired, or built on data no longer served.
DELETE FROM ragline.answer_cache c
WHERE c.expires_at <= now()
   OR c.created_at <= now() - make_interval(secs => %(ttl_seconds)s)
   OR c.served IS DISTINCT FROM (SELECT state FROM ragline.served_data)
