DELETE FROM ragline.drift_baseline WHERE model_id = %(model_id)s
