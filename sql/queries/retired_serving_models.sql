-- Models that still have served vectors but are not the serving model.
SELECT DISTINCT model_id FROM ragline.serving_vectors WHERE model_id <> %(model_id)s
