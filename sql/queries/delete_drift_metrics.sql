DELETE FROM ragline.drift_metrics WHERE partition = %(partition)s
