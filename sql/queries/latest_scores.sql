-- The latest partition's scores per variant and eval set, with the previous partition's nDCG@10.
WITH latest AS (SELECT max(partition) AS day FROM ragline.retrieval_scores)
SELECT s.partition, s.variant, s.eval_set, s.questions, s.ndcg, s.recall, s.mrr, s.hit_rate,
       s.latency_p95_ms, p.partition AS previous, p.ndcg AS previous_ndcg
FROM ragline.retrieval_scores s
JOIN latest ON s.partition = latest.day
LEFT JOIN LATERAL (
    SELECT partition, ndcg FROM ragline.retrieval_scores x
    WHERE x.variant = s.variant AND x.eval_set = s.eval_set AND x.partition < s.partition
    ORDER BY x.partition DESC LIMIT 1
) p ON true
ORDER BY s.eval_set, s.variant
