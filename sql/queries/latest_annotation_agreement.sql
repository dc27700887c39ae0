-- The agreement rows of the latest day that has any.
SELECT partition, scope, label, statistic, value, n
FROM ragline.annotation_agreement
WHERE partition = (SELECT max(partition) FROM ragline.annotation_agreement)
ORDER BY scope, label, statistic
