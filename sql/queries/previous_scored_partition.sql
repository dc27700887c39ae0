-- The latest partition before this one that scored the same variant and eval set and whose
-- regression gate did not fail.
SELECT max(partition) FROM ragline.retrieval_scores
WHERE variant = %(variant)s AND eval_set = %(eval_set)s AND partition < %(partition)s
  AND gate_passed IS DISTINCT FROM false
