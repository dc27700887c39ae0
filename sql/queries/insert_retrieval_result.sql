INSERT INTO ragline.retrieval_results
    (partition, variant, eval_set, question_id, recall, precision, mrr, ndcg, hit, latency_ms, retrieved,
     question_hash)
VALUES
    (%(partition)s, %(variant)s, %(eval_set)s, %(question_id)s, %(recall)s, %(precision)s, %(mrr)s,
     %(ndcg)s, %(hit)s, %(latency_ms)s, %(retrieved)s, %(question_hash)s)
