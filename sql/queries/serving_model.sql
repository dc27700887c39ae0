SELECT model_id, dim FROM ragline.serving_model
