-- The latest logged queries embedded with the model: real queries for the recall check.
SELECT embedding FROM ragline.query_log
WHERE model_id = %(model_id)s AND embedding IS NOT NULL
ORDER BY asked_at DESC LIMIT %(limit)s
