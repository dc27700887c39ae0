SELECT source, count(*) FROM ragline.drift_baseline WHERE model_id = %(model_id)s GROUP BY source
