SELECT min(pinned_at), count(*) FROM ragline.drift_baseline WHERE model_id = %(model_id)s
