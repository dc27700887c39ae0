-- nDCG@10 and recall over the latest scored partitions, oldest first.
SELECT s.partition, s.variant, s.eval_set, s.ndcg, s.recall
FROM ragline.retrieval_scores s
WHERE s.partition IN (
    SELECT DISTINCT partition FROM ragline.retrieval_scores ORDER BY partition DESC LIMIT %(days)s)
ORDER BY s.partition, s.variant, s.eval_set
