-- The latest partition's A/B comparisons: each variant against the control, with the paired
-- bootstrap interval of the nDCG@10 difference.
SELECT partition, eval_set, control, variant, questions, ndcg_control, ndcg_variant, diff, low, high, verdict
FROM ragline.variant_comparisons
WHERE partition = (SELECT max(partition) FROM ragline.variant_comparisons)
ORDER BY eval_set, variant
