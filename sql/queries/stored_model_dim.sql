SELECT dim FROM ragline.embeddings WHERE model_id = %(model_id)s LIMIT 1
