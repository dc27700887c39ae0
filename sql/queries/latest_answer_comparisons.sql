-- The latest partition's A/B rows between answer variants: pointwise per metric (paired bootstrap
-- of the difference) and pairwise (the judge's preference), each against the control.
SELECT partition, eval_set, baseline, candidate, metric, kind, questions, mean_baseline, mean_candidate,
       diff, low, high, verdict, details
FROM ragline.answer_comparisons
WHERE kind IN ('ab_pointwise', 'ab_pairwise')
  AND partition = (SELECT max(partition) FROM ragline.answer_comparisons WHERE kind <> 'gate')
ORDER BY eval_set, candidate, kind, metric
