SELECT question_id, ndcg FROM ragline.retrieval_results
WHERE partition = %(partition)s AND variant = %(variant)s AND eval_set = %(eval_set)s
