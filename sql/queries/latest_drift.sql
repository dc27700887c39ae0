-- The latest partition's drift rows. `effect` holds the estimated share of new content; `reason` holds
-- why a row was not tested (no p-value) or, for a tested row, where its new content is.
SELECT partition, scope, subject, p_value, effect, n_baseline, n_current, significant, alarm,
       CASE WHEN p_value IS NULL THEN reason ELSE '' END AS reason,
       CASE WHEN p_value IS NULL THEN '' ELSE reason END AS new_content
FROM ragline.drift_metrics
WHERE partition = (SELECT max(partition) FROM ragline.drift_metrics)
ORDER BY scope, subject
