-- The latest partition before this one that scored the same answer variant and eval set and whose
-- regression gate failed on no metric.
SELECT max(partition) FROM (
    SELECT partition FROM ragline.answer_scores
    WHERE variant = %(variant)s AND eval_set = %(eval_set)s AND partition < %(partition)s
    GROUP BY partition
    HAVING bool_and(gate_passed IS DISTINCT FROM false)
) ok
