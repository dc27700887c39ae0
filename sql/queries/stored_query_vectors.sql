-- A fixed pseudo-random sample of served vectors, used as queries when no real ones exist.
SELECT embedding FROM ragline.serving_vectors WHERE model_id = %(model_id)s
ORDER BY md5(text_hash) LIMIT %(limit)s
