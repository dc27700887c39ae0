DELETE FROM ragline.answer_scores
WHERE partition = %(partition)s AND eval_set = %(eval_set)s AND variant = %(variant)s
