DELETE FROM ragline.serving_vectors WHERE model_id = %(model_id)s
