-- A seeded sample of the queries logged in a time range, with their vector if one was stored.
SELECT query, model_id, embedding
FROM ragline.query_log
WHERE asked_at >= %(start)s AND asked_at < %(end)s
ORDER BY md5(query_id::text)
LIMIT %(limit)s
