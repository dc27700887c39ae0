-- One (partition, variant, eval set)'s results and summary, before they are written again.
WITH results AS (
    DELETE FROM ragline.retrieval_results
    WHERE partition = %(partition)s AND variant = %(variant)s AND eval_set = %(eval_set)s
)
DELETE FROM ragline.retrieval_scores
WHERE partition = %(partition)s AND variant = %(variant)s AND eval_set = %(eval_set)s
