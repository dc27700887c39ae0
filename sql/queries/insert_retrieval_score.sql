INSERT INTO ragline.retrieval_scores
    (partition, variant, eval_set, questions, k, recall, precision, mrr, ndcg, hit_rate,
     latency_p50_ms, latency_p95_ms, config, gate_passed)
VALUES
    (%(partition)s, %(variant)s, %(eval_set)s, %(questions)s, %(k)s, %(recall)s, %(precision)s, %(mrr)s,
     %(ndcg)s, %(hit_rate)s, %(latency_p50_ms)s, %(latency_p95_ms)s, %(config)s, %(gate_passed)s)
