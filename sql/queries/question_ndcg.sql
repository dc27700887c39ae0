SELECT question_id, question_hash, ndcg FROM ragline.retrieval_results
WHERE partition = %(partition)s AND variant = %(variant)s AND eval_set = %(eval_set)s
