-- One partition's answers of a variant on an eval set (their metric rows go with them: cascade).
DELETE FROM ragline.answer_results
WHERE partition = %(partition)s AND eval_set = %(eval_set)s AND variant = %(variant)s
