UPDATE ragline.retrieval_scores SET gate_passed = %(passed)s
WHERE partition = %(partition)s AND variant = %(variant)s AND eval_set = %(eval_set)s
