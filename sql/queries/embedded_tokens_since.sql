-- Vectors added to the ledger since a time, per model: texts embedded and their tokens.
SELECT model_id, count(*) AS texts, coalesce(sum(token_count), 0) AS tokens
FROM ragline.embeddings
WHERE created_at >= %(since)s
GROUP BY model_id
ORDER BY model_id
