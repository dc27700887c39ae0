-- The latest partition's drift rows.
SELECT partition, scope, subject, p_value, effect, n_baseline, n_current, significant, alarm, reason
FROM ragline.drift_metrics
WHERE partition = (SELECT max(partition) FROM ragline.drift_metrics)
ORDER BY scope, subject
